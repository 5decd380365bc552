"""The routing pipeline, independent of any transport: what both transports call.

Owns request parsing (request.py), the error catalogue (errors.py), the checks that a config's
artifacts exist and fit it (artifacts.py) and the Router that classifies, decides and rewrites
(router.py).
"""
