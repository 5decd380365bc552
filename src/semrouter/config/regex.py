"""Linear-time regular expressions for keyword signals (RE2), checked once at config load.

Python's `re` backtracks: a pattern like `(a+)+b` takes exponential time on `aaaa…c`, so one
request could stall the router. Regex signals are compiled with RE2 instead, whose matching time
is linear in the text; a pattern RE2 cannot run (backreferences, lookarounds) is a config error
that names the pattern, never a slow request.
"""

from __future__ import annotations

import re2


class UnsafePatternError(ValueError):
    """A pattern RE2 cannot compile: not guaranteed to run in linear time, or invalid."""


def compile_linear(pattern: str, case_sensitive: bool) -> re2._Regexp[str]:
    options = re2.Options()
    options.case_sensitive = case_sensitive
    options.log_errors = False
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        detail = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
        raise UnsafePatternError(
            f"{pattern!r} is not a linear-time (RE2) pattern: {detail}; backreferences and "
            "lookarounds are not supported"
        ) from None
