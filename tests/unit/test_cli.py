"""The CLI's contracts: exit codes, precise messages, `route` output lines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from semrouter.cli.main import main
from tests.conftest import minimal_config

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def keyword_config(tmp_path: Path) -> Path:
    path = tmp_path / "router.yaml"
    path.write_text(yaml.safe_dump(minimal_config()))
    return path


def test_config_validate_ok_and_errors(
    keyword_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["config", "validate", str(keyword_config)]) == 0
    assert "OK (2 models, 1 decisions" in capsys.readouterr().out
    bad = minimal_config()
    bad["decisions"][0]["rules"]["conditions"][0]["name"] = "mth"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    assert main(["config", "validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "decisions[0].rules.conditions[0].name: unknown signal 'mth'" in err


def test_route_writes_one_line_per_input(keyword_config: Path, tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text(
        json.dumps({"id": 1, "text": "prove the integral converges"})
        + "\n\n"
        + json.dumps({"id": "b", "messages": [{"role": "user", "content": "hello"}]})
        + "\n"
    )
    out = tmp_path / "out.jsonl"
    assert (
        main(["route", "--config", str(keyword_config), "--input", str(src), "--output", str(out)])
        == 0
    )
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(x["id"], x["model"], x["decision"], x["reasoning"]) for x in lines] == [
        (1, "reasoner", "math", True),
        ("b", "fast", "default", False),
    ]
    for line in lines:
        assert {
            "id",
            "model",
            "decision",
            "domain",
            "reasoning",
            "reasoning_effort",
            "confidence",
        } <= set(line)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"id": 1, "text": "ok"}\n{broken\n', "in.jsonl:2: invalid JSON"),
        ("[1]\n", "in.jsonl:1: each line must be a JSON object"),
        ('{"id": 1}\n', "in.jsonl:1: needs 'text' (a string) or 'messages' (a list)"),
        ('{"id": 1, "messages": "hi"}\n', "in.jsonl:1: 'messages' must be a list"),
    ],
)
def test_route_rejects_bad_lines_without_writing(
    keyword_config: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: str,
    message: str,
) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text(content)
    out = tmp_path / "out.jsonl"
    out.write_text("previous results\n")
    assert (
        main(["route", "--config", str(keyword_config), "--input", str(src), "--output", str(out)])
        == 2
    )
    assert message in capsys.readouterr().err
    assert out.read_text() == "previous results\n"  # nothing lost


def test_missing_config_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["classify", "x", "--config", str(tmp_path / "none.yaml")]) == 2
    assert "none.yaml: 1 error(s)" in capsys.readouterr().err


def test_request_path_never_imports_torch() -> None:
    code = (
        "import sys; import semrouter.proxy.app, semrouter.pipeline.router, semrouter.embed.local;"
        "print('torch' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
