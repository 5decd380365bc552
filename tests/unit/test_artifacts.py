"""Artifact checks: a config's head files and selectors exist and fit it, or it is refused with
the path of each problem, through `check_artifacts`, `Router` and `semrouter config validate`."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from semrouter.cli.main import main
from semrouter.config import ConfigError, load_config, parse_config
from semrouter.decide.selector import load_selector
from semrouter.pipeline.artifacts import check_artifacts
from semrouter.pipeline.router import Router
from tests.conftest import minimal_config

REPO = Path(__file__).resolve().parents[2]
REFERENCE_POOL = [
    "Phi-3-mini-4k-instruct",
    "mathstral-7B",
    "Meta-Llama-3_1-8B-Instruct",
    "Mixtral-8x7B-Instruct-v0.1",
    "DeepSeek-Coder-V2",
    "Meta-Llama-3_1-70B-Instruct",
    "Qwen1.5-72B-Chat",
    "Qwen1.5-110B",
]


def artifact_errors(data: dict[str, object]) -> list[str]:
    return check_artifacts(parse_config(data, env={}))


def selector_config(models: list[str], artifact: str = "reference_pool") -> dict[str, object]:
    data = minimal_config()
    data["models"] = [{"name": m, "endpoints": [{"url": "http://127.0.0.1:9/v1"}]} for m in models]
    data["decisions"] = [
        {"name": "pick", "models": models, "selector": {"artifact": artifact, "cost_weight": 0.1}}
    ]
    data["default"] = {"model": models[0]}
    return data


@pytest.mark.parametrize("name", ["default.yaml", "mmlu_pro_pool.yaml"])
def test_shipped_configs_artifacts_are_there(name: str) -> None:
    assert check_artifacts(load_config(REPO / "config" / name, env={})) == []


def test_pool_config_names_the_shipped_selector_s_models() -> None:
    config = load_config(REPO / "config" / "mmlu_pro_pool.yaml", env={})
    [decision] = config.decisions
    assert decision.selector is not None
    assert decision.models == list(load_selector(decision.selector.artifact).models)
    assert [m.name for m in config.models] == decision.models


def test_selector_problems_are_reported_with_their_path(tmp_path: Path) -> None:
    assert artifact_errors(selector_config(["DeepSeek-Coder-V2", "gpt-9"])) == [
        f"decisions[0].selector.artifact: 'reference_pool' cannot choose ['gpt-9']; it covers "
        f"{REFERENCE_POOL}"
    ]
    [missing] = artifact_errors(selector_config(["DeepSeek-Coder-V2"], artifact="no_pool"))
    assert missing.startswith("decisions[0].selector.artifact: no shipped selector 'no_pool'")
    assert missing.endswith("run 'semrouter train selector --pool no_pool'")
    absent = tmp_path / "selector_x.npz"
    assert artifact_errors(selector_config(["DeepSeek-Coder-V2"], artifact=str(absent))) == [
        f"decisions[0].selector.artifact: selector artifact not found: {absent}"
    ]
    # A subset of the pool is fine: the selector then chooses among those models.
    assert artifact_errors(selector_config(["Phi-3-mini-4k-instruct", "DeepSeek-Coder-V2"])) == []


def test_missing_head_files_are_reported_with_their_path(tmp_path: Path) -> None:
    data = minimal_config()
    data["signals"]["domain"] = {"head": str(tmp_path / "mine.npz")}
    data["signals"]["reasoning"] = {"head": "nosuch"}
    errors = artifact_errors(data)
    assert errors[0] == f"signals.domain.head: head artifact not found: {tmp_path / 'mine.npz'}"
    assert errors[1].startswith("signals.reasoning.head: no shipped head 'nosuch'")
    assert len(errors) == 2


def test_router_refuses_a_config_whose_artifacts_do_not_fit() -> None:
    config = parse_config(selector_config(["DeepSeek-Coder-V2", "gpt-9"]), env={})
    with pytest.raises(ConfigError) as info:
        Router(config)
    assert info.value.errors == check_artifacts(config)


def test_config_validate_reports_artifact_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "pool.yaml"
    path.write_text(yaml.safe_dump(selector_config(["DeepSeek-Coder-V2", "gpt-9"])))
    assert main(["config", "validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"semrouter: error: {path}: 1 error(s)\n")
    assert "decisions[0].selector.artifact: 'reference_pool' cannot choose ['gpt-9']" in err
