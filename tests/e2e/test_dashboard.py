"""The dashboard in a real headless browser: Playwright (PyPI) driving Debian's chromium against
`semrouter serve --config config/default.yaml` in front of the stand-in backend.

A real LLM adds nothing here (the dashboard reads the router's own metrics and routes without a
backend call). Screenshots are kept in out/test-artifacts/ and their paths printed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from semrouter.config import load_config
from semrouter.dashboard.policy import leaves
from tests.e2e.client import call, chat
from tests.e2e.conftest import REPO, start_semrouter
from tests.e2e.hardening import start_standin
from tests.servers import free_port

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = REPO / "out" / "test-artifacts"
ADMIN_KEY = "sk-e2e-dashboard-admin-3c9a7e1f5b2d4c6a8e0f1a2b3c4d5e6f"
DEFAULT_CONFIG = REPO / "config" / "default.yaml"
PROOF = "Prove that the square root of 2 is irrational, step by step."


@pytest.fixture(scope="module")
def backend_url(log_dir: Path) -> Iterator[str]:
    process, url = start_standin(log_dir / "dashboard-standin.log")
    yield url
    process.terminate()
    process.wait(10)


def serve(
    backend: str, log: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = start_semrouter(
        ["serve", "--config", str(DEFAULT_CONFIG), "--port", str(port)],
        {"SEMROUTER_FAST_URL": backend, "SEMROUTER_REASONER_URL": backend, **(env or {})},
        log,
        f"http://127.0.0.1:{port}/ready",
    )
    return process, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def router(backend_url: str, log_dir: Path) -> Iterator[str]:
    """No admin key: the dashboard answers this (loopback) client without a login."""
    process, url = serve(
        backend_url, log_dir / "dashboard-semrouter.log", {"SEMROUTER_ADMIN_KEY": ""}
    )
    yield url
    process.terminate()
    process.wait(10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert shutil.which("chromium") == CHROMIUM, (
        "Debian's chromium is missing: run scripts/setup.sh"
    )
    with sync_playwright() as playwright:
        yield launch(playwright)


def launch(playwright: Playwright) -> Browser:
    # --no-sandbox: the tests may run as root (CI containers), where chromium's sandbox refuses.
    return playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    yield opened
    context.close()
    assert errors == [], f"script errors on the page: {errors}"


def screenshot(page: Page, name: str, capsys: pytest.CaptureFixture[str]) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000
    with capsys.disabled():
        print(f"\nscreenshot: {path}")
    return path


def stat_number(page: Page, element: str) -> float:
    return float(page.locator(element).inner_text())


def test_live_numbers_change_after_requests(
    router: str, page: Page, capsys: pytest.CaptureFixture[str]
) -> None:
    page.goto(f"{router}/dashboard")
    expect(page.locator("#total-requests")).not_to_have_text("-")
    before = stat_number(page, "#total-requests")
    for text in ("hi there!", PROOF, "What is the capital of France?"):
        status, headers, _ = call(router, chat(text))
        assert status == 200, headers
    expect(page.locator("#total-requests")).to_have_text(str(int(before + 3)), timeout=10_000)
    rows = page.locator("#requests-table tbody tr")
    expect(rows.filter(has_text="small_talk")).to_have_count(1)
    expect(rows.filter(has_text="stem_reasoning")).to_have_count(1)
    expect(
        page.locator("#latency-table tbody tr").filter(has_text="semrouter_route_seconds")
    ).to_have_count(1)
    # Two polls apart, the window has a rate; the chart library drew the timeline.
    expect(page.locator("#requests-per-s")).not_to_have_text("–", timeout=10_000)
    expect(page.locator("#chart-requests canvas")).to_have_count(1, timeout=10_000)
    screenshot(page, "dashboard.png", capsys)

    page.goto(f"{router}/dashboard/recent")
    entries = page.locator("#recent-table tbody tr")
    expect(entries.first).to_contain_text("fast")  # newest first: the capital question
    expect(entries.filter(has_text="stem_reasoning")).to_have_count(1)
    assert PROOF not in page.content()  # no content kept by default


def test_playground_shows_the_decision(
    router: str, page: Page, capsys: pytest.CaptureFixture[str]
) -> None:
    stats = json.loads(call(router, path="/api/v1/stats", method="GET")[2])
    page.goto(f"{router}/dashboard/playground")
    page.fill("#playground-input", PROOF)
    page.click("#playground-run")
    expect(page.locator("#result-decision")).to_have_text("stem_reasoning")
    expect(page.locator("#result-model")).to_have_text("reasoner")
    expect(page.locator("#result-reasoning")).to_have_text("on")
    chosen = page.locator("#trace li.chosen")
    expect(chosen).to_have_attribute("data-decision", "stem_reasoning")
    expect(page.locator("#trace li[data-decision=small_talk]")).not_to_have_class(
        re.compile(r"\bmatched\b")
    )
    fired = page.locator("#signals-table td.fired")
    expect(fired).not_to_have_count(0)
    body = json.loads(page.locator("#result-body").inner_text())
    assert body["model"] == "smollm2-reasoner"
    assert body["chat_template_kwargs"]["enable_thinking"] is True
    assert body["messages"][0]["role"] == "system"  # stem_reasoning's inserted prompt
    screenshot(page, "dashboard-playground.png", capsys)
    after = json.loads(call(router, path="/api/v1/stats", method="GET")[2])
    assert after["totals"]["requests"] == stats["totals"]["requests"]  # nothing counted


def test_policy_graph_of_the_default_config(
    router: str, page: Page, capsys: pytest.CaptureFixture[str]
) -> None:
    config = load_config(DEFAULT_CONFIG)
    page.goto(f"{router}/dashboard/policy")
    graph = page.locator("svg#policy-graph")
    expect(graph).to_be_visible()
    for decision in config.decisions:
        expect(graph.locator(f'[data-node="decision:{decision.name}"]')).to_be_visible()
        assert decision.rules is not None
        for signal, negated in leaves(decision.rules):
            edge = graph.locator(
                f'path.edge[data-source="signal:{signal}"][data-target="decision:{decision.name}"]'
            )
            expect(edge).to_have_count(1)
            if negated:
                expect(edge).to_have_class(re.compile(r"\bnegated\b"))
            else:
                expect(edge).not_to_have_class(re.compile(r"\bnegated\b"))
    for model in config.models:
        expect(graph.locator(f'[data-node="model:{model.name}"]')).to_be_visible()
    expect(graph.locator('[data-node="decision:default"]')).to_be_visible()
    order = page.locator("#decisions-table tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.decision)"
    )
    by_priority = sorted(config.decisions, key=lambda d: -d.priority)
    assert order == [*(d.name for d in by_priority), "default"]
    screenshot(page, "dashboard-policy.png", capsys)
    page.hover('[data-node="decision:small_talk"]')
    expect(graph).to_have_class(re.compile(r"\bfocus\b"))
    lit = graph.locator(".node.lit").evaluate_all("nodes => nodes.map(n => n.dataset.node)")
    assert sorted(lit) == [
        "decision:small_talk",
        "model:fast",
        "signal:greeting",
        "signal:reasoning",
    ]
    yaml_text = page.goto(f"{router}/dashboard/config")
    assert yaml_text is not None and yaml_text.status == 200
    expect(page.locator("#file-status")).to_have_attribute("data-status", "unchanged")
    shown = yaml.safe_load(page.locator("#config-yaml").inner_text())
    assert [d["name"] for d in shown["decisions"]] == [d.name for d in config.decisions]


def test_admin_key_login(backend_url: str, log_dir: Path, browser: Browser) -> None:
    process, url = serve(
        backend_url, log_dir / "dashboard-keyed.log", {"SEMROUTER_ADMIN_KEY": ADMIN_KEY}
    )
    try:
        assert call(url, path="/api/v1/stats", method="GET")[0] == 401
        keyed = call(
            url,
            path="/api/v1/stats",
            method="GET",
            headers={"authorization": f"Bearer {ADMIN_KEY}"},
        )
        assert keyed[0] == 200
        context = browser.new_context()
        page = context.new_page()
        page.goto(f"{url}/dashboard")
        assert page.url.endswith("/dashboard/login")
        page.fill("#admin-key", "not-the-key-but-long-enough-000000")
        page.click("form.login button[type=submit]")
        expect(page.locator("#login-error")).to_be_visible()
        page.fill("#admin-key", ADMIN_KEY)
        page.click("form.login button[type=submit]")
        expect(page.locator("#total-requests")).not_to_have_text("-")
        cookie = next(c for c in context.cookies() if c["name"] == "semrouter_admin")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        page.click("form.logout button")
        page.goto(f"{url}/dashboard")
        assert page.url.endswith("/dashboard/login")
        context.close()
    finally:
        process.terminate()
        process.wait(10)
