"""The policy cookbook (docs/cookbook.md): every recipe's config validates, and every example
written in its header routes as documented, through the real encoder and the shipped heads.

An example line reads `# example: "<query>" [+tools:N] -> <decision> <model|*> <off|on[:effort]>`
(`*`: any model of the decision; `{long}` in a query stands for a text of about 3,000 tokens).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from semrouter.config import load_config
from semrouter.pipeline.artifacts import require_artifacts
from semrouter.pipeline.flow import Pipeline
from semrouter.pipeline.router import Router

DOCS = Path(__file__).resolve().parents[2] / "docs"
RECIPES = sorted((DOCS / "cookbook").glob("*.yaml"))
EXAMPLE = re.compile(
    r'^# example: "(?P<query>.+)"(?: \+tools:(?P<tools>\d+))? -> '
    r"(?P<decision>\S+) (?P<model>\S+) (?P<reasoning>off|on(?::\w+)?)$"
)
LONG = " ".join(["The quarterly report covers revenue, costs, hiring and risks."] * 300)
RECIPE_ENV = {"ACME_KEY": "acme-secret-key-0123", "GLOBEX_KEY": "globex-secret-key-0123"}


@dataclass(frozen=True)
class Example:
    query: str
    tools: int
    decision: str
    model: str
    reasoning: str


def examples(path: Path) -> list[Example]:
    found = []
    for line in path.read_text().splitlines():
        if line.startswith("# example:"):
            match = EXAMPLE.match(line)
            assert match, f"{path.name}: malformed example line {line!r}"
            found.append(
                Example(
                    match["query"].replace("{long}", LONG),
                    int(match["tools"] or 0),
                    match["decision"],
                    match["model"],
                    match["reasoning"],
                )
            )
    return found


def catalog(size: int) -> list[dict[str, object]]:
    names = ["book_flight", "get_weather", "send_email"]
    names += [f"inventory_report_{i}" for i in range(size - len(names))]
    return [
        {"type": "function", "function": {"name": n, "description": n.replace("_", " ")}}
        for n in names[:size]
    ]


def test_the_cookbook_lists_every_recipe_and_has_ten() -> None:
    text = (DOCS / "cookbook.md").read_text()
    listed = set(re.findall(r"cookbook/(\d\d-[\w-]+\.yaml)", text))
    assert listed == {p.name for p in RECIPES}
    assert len(RECIPES) >= 10


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
async def test_each_recipe_validates_and_routes_its_examples(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in RECIPE_ENV.items():
        monkeypatch.setenv(name, value)
    config = require_artifacts(load_config(path), str(path))
    cases = examples(path)
    assert cases, f"{path.name} has no example"
    pipeline = Pipeline(Router.from_config(config))
    await pipeline.start()
    try:
        for case in cases:
            body: dict[str, object] = {"text": case.query}
            if case.tools:
                body["tools"] = catalog(case.tools)
            summary, _ = await pipeline.classify(json.dumps(body).encode())
            reasoning = "off"
            if summary["reasoning"]:
                effort = summary["reasoning_effort"]
                reasoning = f"on:{effort}" if effort and ":" in case.reasoning else "on"
            got = (summary["decision"], summary["model"], reasoning)
            model = summary["model"] if case.model == "*" else case.model
            assert got == (case.decision, model, case.reasoning), f"{path.name}: {case.query!r}"
    finally:
        await pipeline.close()
