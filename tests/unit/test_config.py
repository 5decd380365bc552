from __future__ import annotations

from pathlib import Path

import pytest
from tests.conftest import minimal_config

from semrouter.config import ConfigError, load_config, parse_config
from semrouter.decide.selector import load_selector

REPO = Path(__file__).resolve().parents[2]


def errors_of(data: object, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, env=env or {})
    return info.value.errors


def test_shipped_configs_validate() -> None:
    for name in ("default.yaml",):
        config = load_config(REPO / "config" / name, env={})
        assert config.model("reasoner") is not None


def test_env_interpolation_with_default_and_override() -> None:
    data = minimal_config()
    data["models"][0]["endpoints"][0]["url"] = "${FAST_URL:-http://127.0.0.1:1/v1}"
    assert parse_config(data, env={}).models[0].endpoints[0].url == "http://127.0.0.1:1/v1"
    config = parse_config(data, env={"FAST_URL": "http://backend:8000/v1/"})
    assert config.models[0].endpoints[0].url == "http://backend:8000/v1"


def test_missing_env_var_without_default_is_reported_with_path() -> None:
    data = minimal_config()
    data["models"][1]["endpoints"][0]["url"] = "${NOPE}"
    assert errors_of(data) == ["models[1].endpoints[0].url: environment variable 'NOPE' is not set"]


def test_unknown_signal_in_nested_rule_names_its_path() -> None:
    data = minimal_config()
    data["decisions"] = [
        {"name": "a", "rules": {"conditions": [{"name": "math_words"}]}, "model": "fast"},
        {
            "name": "b",
            "rules": {
                "operator": "or",
                "conditions": [
                    {"name": "math_words"},
                    {"operator": "not", "conditions": [{"name": "mth"}]},
                ],
            },
            "model": "fast",
        },
    ]
    assert errors_of(data) == [
        "decisions[1].rules.conditions[1].conditions[0].name: unknown signal 'mth'"
    ]


def test_all_errors_reported_at_once() -> None:
    data = minimal_config()
    data["default"] = {"model": "nobody"}
    data["decisions"][0]["model"] = "ghost"
    data["models"][1]["reasoning_family"] = "qwen9"
    errors = errors_of(data)
    assert "decisions[0].models[0]: unknown model 'ghost'" in errors
    assert "default.model: unknown model 'nobody'" in errors
    assert any(
        e.startswith("models[1].reasoning_family: unknown reasoning family 'qwen9'") for e in errors
    )


def test_field_errors_carry_paths() -> None:
    data = minimal_config()
    data["models"][0]["endpoints"][0]["url"] = "ftp://x"
    data["models"][0]["timeout_s"] = -1
    data["signals"]["keywords"][0]["regex"] = True
    data["signals"]["keywords"][0]["patterns"] = ["(unclosed"]
    errors = errors_of(data)
    assert any(e.startswith("models[0].endpoints[0].url: must be an http(s) URL") for e in errors)
    assert any(e.startswith("models[0].timeout_s:") for e in errors)
    assert any(e.startswith("signals.keywords[0].patterns[0]: invalid regex") for e in errors)


def test_unknown_keys_are_rejected() -> None:
    data = minimal_config()
    data["decisions"][0]["use_reasonig"] = True
    assert errors_of(data) == ["decisions[0].use_reasonig: Extra inputs are not permitted"]


def test_reasoning_on_a_model_without_family_is_an_error() -> None:
    data = minimal_config()
    data["decisions"][0]["model"] = "fast"
    assert errors_of(data) == [
        "decisions[0].use_reasoning: model 'fast' has no reasoning_family, "
        "so reasoning cannot be turned on for it"
    ]


def test_effort_on_a_family_without_effort_is_an_error() -> None:
    data = minimal_config()
    data["decisions"][0]["reasoning_effort"] = "high"
    errors = errors_of(data)
    assert errors == [
        "decisions[0].reasoning_effort: model 'reasoner' (family 'qwen3') has no effort "
        "control; remove reasoning_effort"
    ]


def test_not_needs_exactly_one_condition() -> None:
    data = minimal_config()
    data["decisions"][0]["rules"] = {
        "operator": "NOT",
        "conditions": [{"name": "math_words"}, {"name": "math_words"}],
    }
    assert errors_of(data) == ["decisions[0].rules: NOT takes exactly one condition"]


def test_signal_names_must_be_unique_and_not_builtin() -> None:
    data = minimal_config()
    data["signals"]["keywords"].append({"name": "math_words", "patterns": ["x"]})
    data["signals"]["similarity"] = [{"name": "math", "examples": ["x"]}]
    errors = errors_of(data)
    assert errors == [
        "signals.similarity[0].name: 'math' is reserved for a built-in signal"
    ] or errors == ["signals.keywords[1].name: duplicate signal name 'math_words'"]


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("models:\n  - name: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.errors[0].startswith("line ")
    assert "invalid YAML" in info.value.errors[0]


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")


def selector_config(models: list[str], artifact: str = "reference_pool") -> dict[str, object]:
    data = minimal_config()
    data["models"] = [{"name": m, "endpoints": [{"url": "http://127.0.0.1:9/v1"}]} for m in models]
    data["decisions"] = [
        {"name": "pick", "models": models, "selector": {"artifact": artifact, "cost_weight": 0.1}}
    ]
    data["default"] = {"model": models[0]}
    return data


def test_pool_config_names_the_shipped_selector_s_models() -> None:
    config = load_config(REPO / "config" / "mmlu_pro_pool.yaml", env={})
    [decision] = config.decisions
    assert decision.selector is not None
    assert decision.models == list(load_selector(decision.selector.artifact).models)
    assert [m.name for m in config.models] == decision.models


def test_selector_problems_are_reported_at_load_with_their_path(tmp_path: Path) -> None:
    assert errors_of(selector_config(["DeepSeek-Coder-V2", "gpt-9"])) == [
        "decisions[0].selector.artifact: 'reference_pool' cannot choose ['gpt-9']; it covers "
        "['Phi-3-mini-4k-instruct', 'mathstral-7B', 'Meta-Llama-3_1-8B-Instruct', "
        "'Mixtral-8x7B-Instruct-v0.1', 'DeepSeek-Coder-V2', 'Meta-Llama-3_1-70B-Instruct', "
        "'Qwen1.5-72B-Chat', 'Qwen1.5-110B']"
    ]
    [missing] = errors_of(selector_config(["DeepSeek-Coder-V2"], artifact="no_pool"))
    assert missing.startswith("decisions[0].selector.artifact: no shipped selector 'no_pool'")
    assert missing.endswith("run 'semrouter train selector --pool no_pool'")
    absent = tmp_path / "selector_x.npz"
    assert errors_of(selector_config(["DeepSeek-Coder-V2"], artifact=str(absent))) == [
        f"decisions[0].selector.artifact: selector artifact not found: {absent}"
    ]
    # A subset of the pool is fine: the selector then chooses among those models.
    parse_config(selector_config(["Phi-3-mini-4k-instruct", "DeepSeek-Coder-V2"]), env={})


def test_missing_head_files_are_reported_at_load(tmp_path: Path) -> None:
    data = minimal_config()
    data["signals"]["domain"] = {"head": str(tmp_path / "mine.npz")}
    data["signals"]["reasoning"] = {"head": "nosuch"}
    errors = errors_of(data)
    assert f"signals.domain.head: head artifact not found: {tmp_path / 'mine.npz'}" in errors
    assert any(e.startswith("signals.reasoning.head: no shipped head 'nosuch'") for e in errors)
