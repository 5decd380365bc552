"""Load generation with wrk: a Lua script that POSTs a JSON body, and a parser for its report.

wrk (Debian package `wrk`; `scripts/install_wrk.sh`) runs a closed loop of `concurrency`
connections for a fixed time. `--latency` adds the latency distribution (50/75/90/99%), which
`parse_wrk_output` reads together with requests/s, socket errors and non-2xx responses.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

# The body is read from the file named by the first script argument (`wrk ... -- FILE`), so
# any body (a 2,000-token prompt included) needs no quoting. wrk formats the request after
# init(), once per thread.
POST_SCRIPT = """\
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

function init(args)
  local file = assert(io.open(args[1], "rb"))
  wrk.body = file:read("*a")
  file:close()
end
"""

# The same, but each request's body is made unique: UNIQUE_MARKER in the file is replaced by
# the thread's number and a per-thread counter (so no cache can answer it from an earlier one).
UNIQUE_MARKER = "__UNIQUE__"
UNIQUE_POST_SCRIPT = """\
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

local head, tail
local counter = 0
function init(args)
  local file = assert(io.open(args[1], "rb"))
  local body = file:read("*a")
  file:close()
  local at = assert(string.find(body, "__UNIQUE__", 1, true), "no __UNIQUE__ in the body")
  head, tail = string.sub(body, 1, at - 1), string.sub(body, at + 10)
end

function request()
  counter = counter + 1
  return wrk.format(nil, nil, nil, head .. tid .. "-" .. counter .. tail)
end
"""

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_TIME = r"([\d.]+)(us|ms|s|m|h)"


class WrkError(RuntimeError):
    """wrk is missing, failed, or printed something that is not a wrk report."""


def _ms(value: str, unit: str) -> float:
    return float(value) * _UNITS_MS[unit]


@dataclass(frozen=True, slots=True)
class WrkResult:
    """One wrk run. Latencies in milliseconds; percentiles keyed "50", "75", "90", "99"."""

    requests: int
    duration_s: float
    requests_per_s: float
    percentiles_ms: dict[str, float]
    mean_ms: float
    max_ms: float
    socket_errors: dict[str, int] = field(default_factory=dict)
    non_2xx: int = 0

    @property
    def p50_ms(self) -> float:
        return self.percentiles_ms["50"]

    @property
    def p99_ms(self) -> float:
        return self.percentiles_ms["99"]

    @property
    def ok(self) -> bool:
        """Every request answered 2xx, none failed at the socket level, and some completed."""
        return self.requests > 0 and self.non_2xx == 0 and not any(self.socket_errors.values())

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "ok": self.ok}


def parse_wrk_output(text: str) -> WrkResult:
    """Read wrk's text report (run with --latency). Raises WrkError if it is not one."""
    summary = re.search(rf"(\d+) requests in {_TIME}", text)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if summary is None or rate is None:
        raise WrkError(f"not a wrk report: {text.strip()[-300:]!r}")
    latency = re.search(rf"^\s*Latency\s+{_TIME}\s+{_TIME}\s+{_TIME}", text, re.MULTILINE)
    mean_ms = _ms(*latency.group(1, 2)) if latency else 0.0
    max_ms = _ms(*latency.group(5, 6)) if latency else 0.0
    percentiles: dict[str, float] = {}
    distribution = text.split("Latency Distribution", 1)
    if len(distribution) == 2:
        for pct, value, unit in re.findall(rf"^\s*(\d+)%\s+{_TIME}", distribution[1], re.MULTILINE):
            percentiles[pct] = round(_ms(value, unit), 4)
    if "50" not in percentiles or "99" not in percentiles:
        raise WrkError("wrk report has no latency distribution (run wrk with --latency)")
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    socket_errors = (
        dict(zip(("connect", "read", "write", "timeout"), map(int, errors.groups()), strict=True))
        if errors
        else {}
    )
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return WrkResult(
        requests=int(summary.group(1)),
        duration_s=round(_ms(summary.group(2), summary.group(3)) / 1000, 3),
        requests_per_s=float(rate.group(1)),
        percentiles_ms=percentiles,
        mean_ms=round(mean_ms, 4),
        max_ms=round(max_ms, 4),
        socket_errors=socket_errors,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
    )


def wrk_binary() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise WrkError("wrk not found: run scripts/install_wrk.sh (apt-get install wrk)")
    return path


def wrk_version() -> str:
    """wrk's version line (wrk prints it with its usage, and exits 1)."""
    done = subprocess.run([wrk_binary(), "--version"], capture_output=True, text=True, timeout=10)
    return done.stdout.split("Copyright", 1)[0].strip()


def wrk_command(
    url: str,
    script: Path,
    body: Path,
    concurrency: int,
    duration_s: float,
    threads: int = 2,
    timeout_s: float = 30.0,
) -> list[str]:
    """The wrk command line for one run (threads never exceed connections)."""
    return [
        wrk_binary(),
        f"-t{max(1, min(threads, concurrency))}",
        f"-c{concurrency}",
        f"-d{max(1, round(duration_s))}s",
        f"--timeout={max(1, round(timeout_s))}s",
        "--latency",
        "-s",
        str(script),
        url,
        "--",
        str(body),
    ]


def run_wrk(
    url: str,
    script: Path,
    body: Path,
    concurrency: int,
    duration_s: float,
    threads: int = 2,
    timeout_s: float = 30.0,
) -> WrkResult:
    """Run wrk once against url with the POST script and body file; the parsed report."""
    command = wrk_command(url, script, body, concurrency, duration_s, threads, timeout_s)
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=duration_s + timeout_s + 30
        )
    except subprocess.TimeoutExpired as exc:
        raise WrkError(f"wrk did not finish: {' '.join(command)}") from exc
    if done.returncode != 0:
        raise WrkError(f"wrk exited {done.returncode}: {done.stderr.strip()[-300:]}")
    return parse_wrk_output(done.stdout)


def write_post_script(folder: Path, unique: bool = False) -> Path:
    """The POST script in folder; `unique`: the one that makes every request's body unique."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ("post-unique.lua" if unique else "post.lua")
    path.write_text(UNIQUE_POST_SCRIPT if unique else POST_SCRIPT, encoding="utf-8")
    return path
