"""The generated config reference: docs/config-reference.md is what the schema says, every
key of every nested section is in it, and types and bounds read as written in the schema."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, Field

from semrouter.cli.main import main
from semrouter.config.reference import reference, type_name
from semrouter.config.schema import EmbeddingSettings, LimitsConfig, RouterConfig

DOC = Path(__file__).resolve().parents[2] / "docs" / "config-reference.md"


def test_the_committed_reference_is_the_schemas() -> None:
    assert DOC.read_text() == reference(), (
        "docs/config-reference.md is stale: run "
        "`.venv/bin/semrouter config reference > docs/config-reference.md`"
    )


def test_every_section_and_key_is_listed() -> None:
    text = reference()
    sections = [line[3:] for line in text.splitlines() if line.startswith("## ")]
    assert sections[0] == "RouterConfig"
    assert len(sections) == len(set(sections))  # each class once
    for model in (RouterConfig, LimitsConfig, EmbeddingSettings):
        assert model.__name__ in sections
        for name in model.model_fields:
            assert f"| `{name}` |" in text


def test_types_defaults_and_bounds_read_as_the_schema_says() -> None:
    class Sample(BaseModel):
        mode: Literal["a", "b"] = "a"
        size: Annotated[int, Field(ge=1, le=9)] | None = None

    assert type_name(Sample.model_fields["mode"].annotation) == "`'a'` | `'b'`"
    assert type_name(Sample.model_fields["size"].annotation) == "int | null"
    row = next(line for line in reference().splitlines() if line.startswith("| `max_tokens` | int"))
    assert "`256`" in row and "≥ 8, ≤ 512" in row and "window size" in row


def test_the_cli_prints_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "reference"]) == 0
    assert capsys.readouterr().out == reference()
