from __future__ import annotations

from pathlib import Path

import pytest

from semrouter.config import ConfigError, load_config, parse_config
from tests.conftest import minimal_config

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
    assert any(
        e.startswith("signals.keywords[0].patterns[0]: '(unclosed' is not a linear-time (RE2)")
        for e in errors
    )


@pytest.mark.parametrize("pattern", [r"(a)\1", r"foo(?=bar)", r"(?<!x)y"])
def test_backtracking_only_patterns_are_refused(pattern: str) -> None:
    """Backreferences and lookarounds need a backtracking engine: refused at load."""
    data = minimal_config()
    data["signals"]["keywords"][0].update(regex=True, patterns=[pattern])
    errors = errors_of(data)
    assert any(
        e.startswith("signals.keywords[0].patterns[0]:") and "backreferences and lookarounds" in e
        for e in errors
    ), errors


def test_fallback_decision_must_exist() -> None:
    data = minimal_config()
    data["router"] = {"fallback_decision": "nope"}
    assert "router.fallback_decision: unknown decision 'nope'" in errors_of(data)


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
