"""The screenshot tour: every page of every role, in German and in English, in a real Chromium.

Signs in as a case manager, three partner agents (one of them THGA's, with the FIT@THGA page),
leadership and the admin; on each page it opens every expander and every tab, saves the view as
a PNG (under the test's tmp dir, copied to /tmp/dashboard-tour) and looks for what ux.md
forbids: a string of the other language, a raw value (an enum key, True/False, a user name), a
date in year-first order on a German page, a traceback, an axe-core violation (serious or
critical, WCAG 2.1 AA), a table without a name or a download, identical download labels. It
reports every finding (role, language, page, what) in one failure, so one run shows them all.
"""

from __future__ import annotations

import contextlib
import enum
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from babel.messages.pofile import read_po
from playwright.sync_api import Browser, Page, Route, expect
from playwright.sync_api import Error as PlaywrightError
from sqlalchemy import select

from tests.e2e import test_dashboard_browser as base
from tests.e2e._axe import axe_source, axe_violations
from tests.e2e._servers import inherited_environ, wait_for
from tests.e2e.test_dashboard_browser import (
    LOCAL_HOSTS,
    PASSWORD,
    _free_port,
    _onboarding,
    served_dashboard,
    settle,
)
from tracker import enums
from tracker.access import actor_for
from tracker.db import Database
from tracker.demo.people import DEMO_USERS
from tracker.enums import CaseStatus
from tracker.journeys.queries import partner_queue
from tracker.models import Case, User
from tracker.pathway import get_registry

browser = base.browser

ROOT = Path(__file__).resolve().parents[2]
SHARED_TOUR = Path("/tmp/dashboard-tour")
WIDTH = 1366  # ux.md: no table needs sideways scrolling at 1366 px
TALLEST = 12_000  # a screenshot's height at most (px)

# Who takes the tour: each role, and partners with different pages (THGA runs FIT@THGA).
TOURISTS = ["cm.mueller", "vbw.schulz", "thga.nowak", "ihk.hoffmann", "lead.schmidt", "admin"]

# Streamlit's own words and the tracker's English messages, as they leak onto a German page.
ENGLISH = [
    "Choose an option",
    "Choose options",
    "No options to select",
    "No results",
    "yyyy/mm/dd",
    "Drag and drop file here",
    "Browse files",
    # Not "Upload": the file uploader's button says it and Streamlit offers no label for it,
    # but it is a German word too (Duden: der Upload); docs/accessibility.md lists it.
    "Upload directories",
    "Limit 200MB per file",
    "Press Enter to apply",
    "Press Enter to submit form",
    "Running...",
    "empty",  # an empty st.dataframe's placeholder row
    "No case with reference",
    "You may only",
    "a reason is required",
]
# German words as they leak onto an English page.
GERMAN = ["Fallnummer", "Abschließen", "Aktenzeichen", "Speichern", "Bitte", "Keine", "Fälle"]
# Streamlit's skip link ("Skip to main content", visible on keyboard focus) is English on every
# page and cannot be set from the app: see docs/accessibility.md.
STREAMLIT_FIXED = ["Skip to main content"]

YEAR_FIRST = re.compile(r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2})?)?\b")
STREAMLIT_DATE = re.compile(r"\b\d{4}/\d{2}/\d{2}\b")
BOOLEAN = re.compile(r"\b(?:True|False)\b")


@dataclass(frozen=True)
class Finding:
    who: str
    lang: str
    page: str
    kind: str
    what: str

    def __str__(self) -> str:
        return f"[{self.lang}] {self.who} · {self.page} · {self.kind}: {self.what}"


@dataclass
class Tour:
    """What the tour saw: the pictures it saved and what it found wrong."""

    screens: Path
    pictures: list[Path] = field(default_factory=list)
    views: set[tuple[str, str, str]] = field(default_factory=set)  # (who, lang, page path)
    findings: list[Finding] = field(default_factory=list)


# -- what counts as wrong ----------------------------------------------------------------------


def _literal_parts(text: str) -> list[str]:
    """The fixed text of a message, without its {placeholders}."""
    return [p.strip(" .:·,–-") for p in re.split(r"\{[^}]*\}", text)]


def _distinctive(text: str) -> bool:
    # A phrase: single words occur in both languages ("Status") or in typed data (an offer
    # titled "Bewerbungstraining: …" on an English page); the known lists name single words.
    return " " in text and len(text) >= 8


def _catalogue(language: str) -> dict[str, str]:
    path = ROOT / "dashboard" / "locales" / language / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as fh:
        return {
            str(m.id): str(m.string)
            for m in read_po(fh, locale=language)
            if m.id and isinstance(m.id, str) and m.string
        }


def foreign_strings() -> dict[str, list[str]]:
    """Per page language, the strings that would show the other language leaking in: the
    known lists, the dashboard's catalogues (a message whose translations differ) and the
    pathway titles; a string that also occurs in the page language's own texts is left out."""
    de, en = _catalogue("de"), _catalogue("en")
    own = {"de": list(de.values()), "en": list(en.values())}
    other = {"de": list(ENGLISH), "en": list(GERMAN)}
    for msgid, german in de.items():
        english = en.get(msgid, msgid)
        if german == english:
            continue
        other["de"] += _literal_parts(english)
        other["en"] += _literal_parts(german)
    for entry in get_registry().catalogue.values():
        other["de"].append(entry.title.en)
        other["en"].append(entry.title.de)
        own["de"].append(entry.title.de)
        own["en"].append(entry.title.en)
    for pathway in get_registry().latest():
        other["de"].append(pathway.title.en)
        other["en"].append(pathway.title.de)
        own["de"].append(pathway.title.de)
        own["en"].append(pathway.title.en)
    result = {}
    for lang in ("de", "en"):
        mine = "\n".join(own[lang]).casefold()
        known = set(ENGLISH if lang == "de" else GERMAN)
        result[lang] = sorted(
            {
                s
                for s in other[lang]
                if s in known or (_distinctive(s) and s.casefold() not in mine)
            },
            key=len,
            reverse=True,
        )
    return result


def raw_values() -> re.Pattern[str]:
    """Enum keys, step and outcome keys and pathway keys as stored (with an underscore)."""
    values: set[str] = set()
    for name in dir(enums):
        kind = getattr(enums, name)
        if isinstance(kind, type) and issubclass(kind, enum.Enum):
            values |= {m.value for m in kind if isinstance(m.value, str)}
    registry = get_registry()
    for key, entry in registry.catalogue.items():
        values |= {key, *entry.outcomes}
    values |= {p.key for p in registry.latest()}
    raw = sorted((v for v in values if "_" in v), key=len, reverse=True)
    return re.compile(r"(?<![\w.-])(?:system:\w+|" + "|".join(map(re.escape, raw)) + r")(?![\w-])")


USER_NAMES = re.compile(
    r"(?<![\w.])(?:" + "|".join(re.escape(u) for u, *_ in DEMO_USERS if "." in u) + r")(?![\w.])"
)


# -- reading a page ----------------------------------------------------------------------------


# Streamlit fades what a rerun may replace and fades it back in when the run ends: checked in
# between, a caption's colour is a blend (axe measured #777 for #707070, 4.47:1). Finite
# animations only: a spinner turns for ever.
_STILL = """() => !document.querySelector('[data-stale="true"]') && document.getAnimations()
  .every(a => a.playState !== 'running'
    || a.effect?.getComputedTiming().endTime === Infinity)"""


def still(page: Page) -> None:
    """Wait until no element is faded as stale and no transition is under way."""
    page.wait_for_function(_STILL, timeout=15_000)


def in_context(pattern: re.Pattern[str], text: str) -> str:
    """The first match with up to 40 characters either side, on one line."""
    match = pattern.search(text)
    assert match
    before = " ".join(text[max(0, match.start() - 40) : match.start()].split())
    after = " ".join(text[match.end() : match.end() + 40].split())
    return f"{match.group(0)!r} in «…{before} {match.group(0)} {after}…»"


_TEXT = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  // Material icons are ligatures ("upload", "keyboard_arrow_down"): pictures, not words.
  // Tables are read cell by cell below: left out here, whether or not the grid has put its
  // hidden table of shown rows on the page yet (its text would come twice, or unexempted).
  const icons = [...app.querySelectorAll(
    '[data-testid="stIconMaterial"], [data-testid="stDataFrame"]')];
  icons.forEach(i => { i.dataset.tourDisplay = i.style.display; i.style.display = 'none'; });
  const parts = [app.innerText];
  icons.forEach(i => { i.style.display = i.dataset.tourDisplay; });
  for (const el of app.querySelectorAll('input, textarea')) {
    // (a date input shows its value in segments, as innerText has it; its input keeps ISO)
    if (!el.checkVisibility() || el.closest('[data-testid="stDateInput"]')) continue;
    if (el.placeholder) parts.push(el.placeholder);
    if (el.value && !['password', 'radio', 'checkbox'].includes(el.type)) parts.push(el.value);
  }
  // st.dataframe draws on a canvas; the grid keeps its shown rows in a hidden table too.
  const grids = '[data-testid="stDataFrame"] th, [data-testid="stDataFrame"] td';
  for (const cell of app.querySelectorAll(grids)) {
    // The import help lists the file's column names as the file must spell them
    // (eu_citizen, birth_date): there they are the content, not raw values.
    if (cell.closest('.st-key-import_columns') && /^[a-z][a-z_]*$/.test(cell.textContent)) continue;
    parts.push(cell.textContent);
  }
  return parts.join('\\n');
}"""

# For each shown st.dataframe: the text that names it (the nearest heading, caption, label or
# bold line before it, no other table in between, else the expander or tab it sits in) and
# whether its toolbar offers the CSV download (Streamlit's own, on every st.dataframe).
_TABLES = """() => [...document.querySelectorAll('[data-testid="stDataFrame"]')]
  .filter(t => t.checkVisibility())
  .map(t => {
    const named = el => el.querySelector('h1, h2, h3, h4, h5, h6, strong, label, '
      + '[data-testid="stCaptionContainer"], [data-testid="stWidgetLabel"]');
    let name = '';
    let box = t.closest('[data-testid="stElementContainer"]');
    while (box && !name) {
      let prev = box.previousElementSibling;
      while (prev && !name) {
        if (prev.querySelector('[data-testid="stDataFrame"]')) break;
        const found = named(prev);
        if (found) name = found.innerText.trim();
        prev = prev.previousElementSibling;
      }
      if (name || (prev && prev.querySelector('[data-testid="stDataFrame"]'))) break;
      box = box.parentElement && box.parentElement.closest('[data-testid="stVerticalBlock"] > *');
    }
    if (!name) {
      const expander = t.closest('details');
      if (expander) name = expander.querySelector('summary').innerText.trim();
    }
    if (!name) {
      const panel = t.closest('[role="tabpanel"]');
      const tab = panel && document.getElementById(panel.getAttribute('aria-labelledby'));
      if (tab) name = tab.innerText.trim();
    }
    const download = !!t.querySelector('button[aria-label="Download as CSV"]');
    const columns = [...t.querySelectorAll('th')].map(th => th.textContent).slice(0, 4).join(', ');
    const cells = [...t.querySelectorAll('tbody td')].map(td => td.textContent.trim());
    const rows = cells.some(c => c && c !== 'empty');
    return {name, download, columns, rows};
  })"""

_HEIGHT = """() => Math.max(...[...document.querySelectorAll(
  '[data-testid="stMain"], [data-testid="stMain"] *, [data-testid="stSidebar"]')]
  .map(e => e.scrollHeight))"""


def charts_drawn(page: Page) -> None:
    """Wait until Vega has drawn every chart on the page (its marks canvas or svg)."""
    charts = page.locator(".vega-embed")
    drawn = charts.locator("canvas.marks, svg.marks")
    wait_for(lambda: drawn.count() >= charts.count(), 30, "the charts to be drawn", interval=0.2)


def open_expanders(page: Page) -> None:
    closed = page.locator("[data-testid='stExpander'] details:not([open]) > summary")
    for _attempt in range(50):
        shown = [s for s in closed.all() if s.is_visible()]
        if not shown:
            return
        with contextlib.suppress(PlaywrightError):  # drawn again meanwhile: look again
            shown[0].click(timeout=5_000)
        settle(page)
    raise AssertionError("expanders kept closing again")


@dataclass
class Walker:
    page: Page
    tour: Tour
    who: str
    lang: str
    foreign: list[str]
    raw: re.Pattern[str]

    def found(self, where: str, kind: str, what: str) -> None:
        self.tour.findings.append(Finding(self.who, self.lang, where, kind, what))

    def matches(self, where: str, kind: str, pattern: re.Pattern[str], text: str) -> None:
        """One finding per distinct match, with the words around its first occurrence."""
        seen: set[str] = set()
        for match in pattern.finditer(text):
            if match.group(0) not in seen:
                seen.add(match.group(0))
                self.found(where, kind, in_context(re.compile(re.escape(match.group(0))), text))

    def look(self, where: str, name: str) -> None:
        """Check the view as it is now and save its picture."""
        page = self.page
        settle(page)
        charts_drawn(page)
        still(page)
        for crash in page.get_by_test_id("stException").all():
            self.found(where, "traceback", " ".join(crash.inner_text().split())[:300])
        text: str = page.evaluate(_TEXT)
        for fixed in STREAMLIT_FIXED:
            text = text.replace(fixed, "")
        if "Traceback (most recent call last)" in text:
            self.found(where, "traceback", "Traceback (most recent call last)")
        for marker in self.foreign:
            pattern = re.compile(r"(?<!\w)" + re.escape(marker) + r"(?!\w)", re.IGNORECASE)
            if pattern.search(text):
                self.found(where, "other language", in_context(pattern, text))
                text = pattern.sub("", text)  # a longer marker hides the shorter ones in it
        self.matches(where, "raw value", self.raw, text)
        self.matches(where, "raw value", BOOLEAN, text)
        if not where.endswith("/admin"):  # accounts are managed by user name there
            self.matches(where, "user name", USER_NAMES, text)
        if self.lang == "de":
            self.matches(where, "ISO date", YEAR_FIRST, text)
        self.matches(where, "date format", STREAMLIT_DATE, text)
        declared = page.evaluate("document.documentElement.lang")
        if declared != self.lang:
            self.found(where, "page language", f"<html lang={declared!r}>")
        for table in page.evaluate(_TABLES):
            if not table["name"]:
                self.found(where, "table without a name", table["columns"])
            if not table["download"] and table["rows"]:
                self.found(where, "table without a download", table["name"] or table["columns"])
        labels = [
            " ".join(b.inner_text().split())
            for b in page.get_by_test_id("stDownloadButton").locator("button").all()
            if b.is_visible()
        ]
        for label in sorted({x for x in labels if labels.count(x) > 1}):
            self.found(where, "same download label", f"{label!r} × {labels.count(label)}")
        for violation in axe_violations(page):
            self.found(where, "axe", str(violation))
        self.shoot(name)

    def shoot(self, name: str) -> None:
        page = self.page
        height = min(int(page.evaluate(_HEIGHT)) + 40, TALLEST)
        page.set_viewport_size({"width": WIDTH, "height": max(height, 900)})
        settle(page)
        charts_drawn(page)
        path = self.tour.screens / f"{name}.png"
        page.screenshot(path=str(path))
        page.set_viewport_size({"width": WIDTH, "height": 900})
        SHARED_TOUR.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, SHARED_TOUR / path.name)
        self.tour.pictures.append(path)


def local_only(route: Route) -> None:
    """Nothing leaves this machine (no fonts, no CDN): the tour sees what the office sees."""
    target = urlsplit(route.request.url)
    if target.scheme in ("data", "blob") or target.hostname in LOCAL_HOSTS:
        route.continue_()
    else:
        route.abort()


def walk(browser: Browser, url: str, tour: Tour, who: str, reference: str | None) -> None:
    """Sign in as ``who`` and look at every page in German, then in English."""
    foreign = foreign_strings()
    raw = raw_values()
    context = browser.new_context(
        viewport={"width": WIDTH, "height": 900}, locale="de-DE", timezone_id="Europe/Berlin"
    )
    context.set_default_timeout(30_000)
    context.route("**/*", local_only)
    page = context.new_page()
    try:
        page.goto(url)
        page.locator(".st-key-signin_user input").fill(who)
        page.locator(".st-key-signin_password input").fill(PASSWORD)
        page.locator(".st-key-signin_submit button").click()
        nav = page.get_by_test_id("stSidebarNav")
        expect(nav).to_be_visible()
        settle(page)
        for lang in ("de", "en"):
            language = {"de": "Deutsch", "en": "English"}[lang]
            page.locator(".st-key-lang").get_by_text(language, exact=True).click()
            expect(
                page.locator(".st-key-lang input[type=radio]").nth(0 if lang == "de" else 1)
            ).to_be_checked()
            settle(page)
            walker = Walker(page, tour, who, lang, foreign[lang], raw)
            for index in range(nav.get_by_role("link").count()):
                link = nav.get_by_role("link").nth(index)
                title = link.inner_text().strip()
                href = urlsplit(str(link.get_attribute("href"))).path.strip("/")
                link.click()
                path = href or "start"
                where = f"{title} (/{path})"
                try:
                    wait_for(
                        # (asked of the page: the sync API updates page.url only while it
                        # waits on the browser)
                        lambda href=href: page.evaluate("location.pathname").strip("/") == href,
                        20,
                        f"the page /{href}",
                        interval=0.1,
                    )
                except AssertionError:
                    walker.found(where, "did not open", page.evaluate("location.href"))
                    continue
                settle(page)
                tour.views.add((who, lang, path))
                reference_box = page.locator(".st-key-person_ref input")
                if reference and reference_box.count() and not reference_box.input_value():
                    reference_box.fill(reference)
                    reference_box.press("Enter")
                    settle(page)
                open_expanders(page)
                name = f"{who}-{lang}-{index + 1}-{path}"
                walker.look(where, name)
                tabs = page.locator("[data-testid='stTabs'] [role='tab']")
                for k in range(1, tabs.count()):
                    tab = tabs.nth(k)
                    if not tab.is_visible():
                        continue
                    label = tab.inner_text().strip()
                    tab.click()
                    settle(page)
                    open_expanders(page)
                    walker.look(f"{where} › {label}", f"{name}-tab{k + 1}")
                if tabs.count():
                    tabs.first.click()
                    settle(page)
    finally:
        context.close()


# -- the fixture and the test ------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """The demo database served by `streamlit run`, and a case each tourist may open."""
    root = tmp_path_factory.mktemp("tour")
    data = root / "data"
    env = {
        **inherited_environ(),
        "ONBOARDING_DATA_DIR": str(data),
        "ONBOARDING_ORCHESTRATION": "inline",
        "ONBOARDING_PREFECT_API_URL": f"http://127.0.0.1:{_free_port()}/api",
    }
    for name in ("ONBOARDING_DATABASE_URL", "PREFECT_API_URL", "ONBOARDING_TIMEZONE"):
        env.pop(name, None)
    _onboarding(env, "db", "upgrade")
    _onboarding(env, "demo", "--people", "300", "--seed", "3")

    db = Database(f"sqlite:///{data / 'onboarding.db'}")
    references: dict[str, str] = {}
    try:
        with db.read() as session:
            # A skilled worker's open case, well under way: the longest journey map.
            managed = session.scalars(
                select(Case.reference)
                .join(User, Case.case_manager_id == User.id)
                .where(
                    User.username == "cm.mueller",
                    Case.status == CaseStatus.open,
                    Case.pathway_key == "skilled_worker",
                )
                .order_by(Case.reference)
            ).first()
            assert managed, "the demo has no open skilled-worker case of cm.mueller"
            references["cm.mueller"] = references["admin"] = managed
            for who in TOURISTS:
                actor = actor_for(session, who)
                if actor.is_partner:
                    queue = partner_queue(session, actor=actor, limit=1)
                    assert queue, f"the demo hands {who} nothing"
                    references[who] = queue[0].reference
    finally:
        db.dispose()
    with served_dashboard(env, root) as url:
        yield url, references


def test_the_tour_of_every_page_in_both_languages_finds_nothing_wrong(browser, site, tmp_path):
    axe_source()  # missing axe-core: a failure under CI=true, a skip elsewhere
    url, references = site
    tour = Tour(screens=tmp_path / "screens")
    tour.screens.mkdir()
    shutil.rmtree(SHARED_TOUR, ignore_errors=True)
    for who in TOURISTS:
        walk(browser, url, tour, who, references.get(who))

    # The tour went everywhere: each role's pages in both languages, each saved as a picture.
    pages = {
        "cm.mueller": {"start", "person", "queue", "fit"},
        "vbw.schulz": {"start", "person"},
        "thga.nowak": {"start", "person", "fit"},
        "ihk.hoffmann": {"start", "person"},
        "lead.schmidt": {"start", "reports"},
        "admin": {"start", "person", "queue", "fit", "outcomes", "reports", "admin"},
    }
    expected = {
        (who, lang, p) for who, paths in pages.items() for lang in ("de", "en") for p in paths
    }
    assert expected <= tour.views, sorted(expected - tour.views)
    assert len(tour.pictures) >= len(expected)
    assert all(p.stat().st_size > 10_000 for p in tour.pictures)

    report = "\n".join(str(f) for f in tour.findings)
    (SHARED_TOUR / "findings.txt").write_text(report + "\n", encoding="utf-8")
    assert not tour.findings, (
        f"{len(tour.findings)} findings on {len(tour.pictures)} views "
        f"(pictures in {SHARED_TOUR}):\n{report}"
    )
