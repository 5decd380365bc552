"""`semrouter bench tools` on a small BFCL-shaped folder: loading, the split, the catalogs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from semrouter.bench.common import BenchError
from semrouter.bench.tools import (
    ANSWERED,
    BFCL_INSTALL,
    IRRELEVANT,
    bfcl_data,
    catalog,
    distinct_tools,
    load_entries,
    recall,
    split_of,
)
from semrouter.tools.text import tool_name


def function(name: str) -> dict[str, Any]:
    return {"name": name, "description": f"does {name}", "parameters": {"type": "dict"}}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "possible_answer").mkdir()
    for c, category in enumerate((*ANSWERED, *IRRELEVANT)):
        lines, answers = [], []
        for i in range(3):
            entry_id = f"{category}_{i}"
            own = [function(f"f{c}_{i}_a"), function(f"f{c}_{i}_b")]
            question = [[{"role": "user", "content": f"please run f{c}_{i}_a"}]]
            lines.append({"id": entry_id, "question": question, "function": own})
            answers.append({"id": entry_id, "ground_truth": [{f"f{c}_{i}_a": {"x": [1]}}]})
        write = lambda path, rows: path.write_text("\n".join(json.dumps(r) for r in rows))  # noqa: E731
        write(tmp_path / f"BFCL_v4_{category}.json", lines)
        if category in ANSWERED:
            write(tmp_path / "possible_answer" / f"BFCL_v4_{category}.json", answers)
    return tmp_path


def test_entries_answers_and_the_stable_split(folder: Path) -> None:
    entries = load_entries(bfcl_data(str(folder)))
    assert len(entries) == 3 * (len(ANSWERED) + len(IRRELEVANT))
    answered = [e for e in entries if e.answers]
    assert len(answered) == 3 * len(ANSWERED)
    assert answered[0].answers == {"f0_0_a"}
    assert answered[0].tools[0] == {"type": "function", "function": function("f0_0_a")}
    assert all(not e.answers for e in entries if e.category in IRRELEVANT)
    assert {split_of(e.id) for e in entries} == {"tune", "test"}
    assert [split_of(e.id) for e in entries] == [split_of(e.id) for e in entries]
    assert len(distinct_tools(entries)) == 2 * len(entries)


def test_catalogs_mix_own_tools_with_distinct_distractors(folder: Path) -> None:
    entries = load_entries(bfcl_data(str(folder)))
    pool = distinct_tools(entries)
    entry = entries[0]
    tools = catalog(entry, pool, 20, seed=0)
    names = [tool_name(t) for t in tools]
    assert len(tools) == 20 and len(set(names)) == 20
    assert {"f0_0_a", "f0_0_b"} <= set(names)
    assert catalog(entry, pool, 20, seed=0) == tools
    assert catalog(entry, pool, 20, seed=1) != tools
    assert len(catalog(entry, pool, 1, seed=0)) == 2  # never fewer than its own tools
    assert recall([names.index("f0_0_a")], names, entry.answers) == 1.0
    assert recall([names.index("f0_0_b")], names, entry.answers) == 0.0


def test_missing_data_names_the_install(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="no BFCL v4 data") as caught:
        bfcl_data(str(tmp_path))
    assert BFCL_INSTALL in str(caught.value)
