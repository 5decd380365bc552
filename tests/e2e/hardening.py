"""Processes for the hardening tests: the stand-in backend, and the router under a memory cap.

The router runs the shipped config (real local encoder, spelling normaliser, tool scoring)
pointed at the stand-in, with short client timeouts, under `prlimit --as` so that a memory
blow-up fails the test (a MemoryError, or the process dies) instead of taking the machine.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.conftest import (
    REPO,
    start_envoy,
    start_extproc,
    start_semrouter,
    wait_http,
)
from tests.servers import free_port

AS_LIMIT_MB = 1536
"""Address-space cap of the router process. With MALLOC_ARENA_MAX=2 (else glibc reserves a
64 MiB arena per thread that allocates) `semrouter serve` starts and answers the whole hostile
catalogue within 620 MiB of virtual memory, `semrouter extproc` within 545 MiB; the lowest caps
they still do it under are 560 and 520 MiB (below, onnxruntime's session or a gRPC thread
fails to start). A full encoder batch of long prompts (32 x 256 tokens) takes 1.1 GiB: its
attention tensors, about 100 MB each, stay in onnxruntime's arena. 1.5 GiB leaves headroom
for that, and a blow-up (issue 12's was 24 GB) still fails at once."""
ROUTER_ENV = {"MALLOC_ARENA_MAX": "2"}
UNDER_LIMIT = ("prlimit", f"--as={AS_LIMIT_MB * 1024 * 1024}")


def start_standin(log: Path, *flags: str) -> tuple[subprocess.Popen[bytes], str]:
    """The stand-in backend (semrouter.bench.standin) on a free port; its /v1 base URL."""
    port = free_port()
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "semrouter.bench.standin", "--port", str(port), *flags],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    wait_http(f"http://127.0.0.1:{port}/v1/models", process, timeout=30)
    return process, f"http://127.0.0.1:{port}/v1"


def write_config(path: Path, backend: str, **limits: Any) -> Path:
    """config/default.yaml with both models on backend and router.limits updated."""
    config = yaml.safe_load((REPO / "config" / "default.yaml").read_text())
    for model in config["models"]:
        model["endpoints"] = [{"url": backend}]
    config["router"]["limits"] = {**config["router"].get("limits", {}), **limits}
    path.write_text(yaml.safe_dump(config))
    return path


@dataclass
class Target:
    """A router to send requests to: `port` takes the HTTP requests, `router` is the semrouter
    process (serve, or extproc behind `envoy`)."""

    transport: str
    port: int
    router: subprocess.Popen[bytes]
    envoy: subprocess.Popen[bytes] | None = None
    startup_rss_mb: float = 0.0
    """The router's resident memory once started and warmed up (set by the fixture)."""

    def alive(self) -> bool:
        return all(p.poll() is None for p in (self.router, self.envoy) if p is not None)

    def stop(self) -> None:
        for process in (self.envoy, self.router):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(15)


def start_target(transport: str, config: Path, log_dir: Path) -> Target:
    """`semrouter serve`, or Envoy + `semrouter extproc`, on config, the router under the cap."""
    if transport == "serve":
        port = free_port()
        process = start_semrouter(
            ["serve", "--config", str(config), "--port", str(port), "--log-level", "warning"],
            ROUTER_ENV,
            log_dir / f"serve-{port}.log",
            f"http://127.0.0.1:{port}/ready",
            prefix=UNDER_LIMIT,
        )
        return Target(transport, port, process)
    extproc, extproc_port = start_extproc(
        config,
        log_dir / f"extproc-{free_port()}.log",
        "--log-level",
        "warning",
        env=ROUTER_ENV,
        prefix=UNDER_LIMIT,
    )
    envoy, url = start_envoy(config, extproc_port, log_dir / f"envoy-{extproc_port}.log")
    return Target(transport, int(url.rsplit(":", 1)[1]), extproc, envoy)
