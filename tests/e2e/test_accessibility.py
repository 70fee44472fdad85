"""The accessibility check itself: axe-core, injected by Playwright, finds what it must.

The tour (test_tour.py) runs the check on every page of every role in both languages; these
tests show that the check can fail, so a tour without findings means something.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page

from tests.e2e import test_dashboard_browser as base
from tests.e2e._axe import AXE_JS, axe_source, axe_violations

browser = base.browser

LOW_CONTRAST = """<!doctype html><html lang="de"><head><title>Probe</title></head><body>
<main><h1>Probe</h1><p style="color:#8a8a8a;background:#ffffff">Hellgrau auf Weiß</p>
<input type="text"></main></body></html>"""
CLEAN = """<!doctype html><html lang="de"><head><title>Probe</title></head><body>
<main><h1>Probe</h1><p style="color:#111111;background:#ffffff">Fast schwarz auf Weiß</p>
<label>Name <input type="text"></label></main></body></html>"""


@pytest.fixture
def blank(browser) -> Iterator[Page]:
    context = browser.new_context()
    # Nothing but the content set below: no request leaves the page.
    context.route("**/*", lambda route: route.abort())
    try:
        yield context.new_page()
    finally:
        context.close()


def test_axe_core_is_the_pinned_npm_package():
    import json

    lock = json.loads((AXE_JS.parents[2] / "package-lock.json").read_text())
    pinned = lock["packages"]["node_modules/axe-core"]["version"]
    assert f"axe v{pinned}" in axe_source()[:400]


def test_axe_finds_low_contrast_text_and_an_input_without_a_label(blank):
    blank.set_content(LOW_CONTRAST)
    found = {v.rule for v in axe_violations(blank)}
    assert {"color-contrast", "label"} <= found, found


def test_axe_finds_nothing_on_a_page_that_meets_the_rules(blank):
    blank.set_content(CLEAN)
    assert axe_violations(blank) == []
