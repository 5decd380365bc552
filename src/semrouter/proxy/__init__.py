"""The HTTP transport (`semrouter serve`): the OpenAI-compatible ASGI app and its forwarding.

Owns the app (app.py), the pooled connections to the model backends (upstream.py) and the
Prometheus metrics (metrics.py).
"""
