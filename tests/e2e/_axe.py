"""axe-core in a Playwright page: the browser tests' accessibility check (BITV 2.0, WCAG 2.1 AA).

axe-core is the npm package pinned in package.json (`make axe`, part of `make test`, installs it
into node_modules/). Missing, it fails the run under CI=true and skips elsewhere, like Chromium.
Only serious and critical violations count, of the WCAG 2.0/2.1 level A and AA rules. Those
that Streamlit's own markup causes, whatever a page puts in it, are listed in STREAMLIT_OWN and
in docs/accessibility.md with what the project does about each; every other one is the
project's to fix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
from playwright.sync_api import Page

from tests.ci import IN_CI

ROOT = Path(__file__).resolve().parents[2]
AXE_JS = ROOT / "node_modules" / "axe-core" / "axe.min.js"
WCAG_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
COUNTED = ("serious", "critical")

# (rule, a pattern the offending element's HTML matches, why it is Streamlit's): see
# docs/accessibility.md. Empty while axe finds nothing of Streamlit's own on the project's pages.
STREAMLIT_OWN: list[tuple[str, re.Pattern[str], str]] = []

_RUN = """async (tags) => {
  const result = await axe.run(document, {
    runOnly: {type: 'tag', values: tags},
    resultTypes: ['violations'],
  });
  return result.violations.flatMap(v => v.nodes.map(n => ({
    rule: v.id,
    impact: n.impact || v.impact || '',
    help: v.help,
    target: n.target.map(String).join(' '),
    html: n.html,
    summary: n.failureSummary || '',
  })));
}"""


@dataclass(frozen=True)
class Violation:
    rule: str
    impact: str
    help: str
    target: str
    html: str
    summary: str

    def __str__(self) -> str:
        summary = " ".join(self.summary.split())
        return f"{self.rule} ({self.impact}): {self.help} · {self.html[:160]} · {summary[:240]}"


@cache
def axe_source() -> str:
    """axe.min.js from node_modules; missing: a failure under CI=true, a skip elsewhere."""
    if not AXE_JS.is_file():
        reason = f"{AXE_JS} is missing (make axe, or npm ci)"
        if IN_CI:
            raise RuntimeError(f"CI=true and {reason}")
        pytest.skip(reason)
    return AXE_JS.read_text(encoding="utf-8")


def streamlit_own(violation: Violation) -> str | None:
    """Why a violation is Streamlit's own markup (as documented), or None: it is ours."""
    for rule, html, why in STREAMLIT_OWN:
        if violation.rule == rule and html.search(violation.html):
            return why
    return None


def axe_violations(page: Page) -> list[Violation]:
    """The serious and critical WCAG 2.1 A/AA violations on the page as it is now, those that
    Streamlit itself causes left out. Injects axe-core once per document."""
    source = axe_source()
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.add_script_tag(content=source)
    found = [Violation(**v) for v in page.evaluate(_RUN, WCAG_AA)]
    return [v for v in found if v.impact in COUNTED and streamlit_own(v) is None]
