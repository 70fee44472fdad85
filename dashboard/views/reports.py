"""Reports for leadership: generate the monthly or FIT@THGA report, or download an issued one."""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from dashboard.common import _, choose, database, lang, local_time, plain, read, require_actor
from dashboard.formatting import language_name, month_text
from tracker.access import Actor
from tracker.clocks import local_today
from tracker.reporting import reports

actor = require_actor("leadership", "admin")
st.title(_("Reports"))
st.caption(
    _(
        "Aggregates only, as in the outcome figures: groups of fewer than 5 people are not "
        "shown. Charts are part of the file, so reports open without a network."
    )
)

today = local_today()
KINDS = {"monthly": _("Monthly outcomes report"), "fit": _("FIT@THGA yearly report")}
LABELS = {"html": "HTML", "pdf": "PDF", "csv": "CSV", "json": "JSON"}


def months_back(n: int) -> list[str]:
    year, month = today.year, today.month
    out = []
    for _i in range(n):
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
        out.append(f"{year:04d}-{month:02d}")
    return out


def generator(who: Actor, kind: str, period: str, fmt: str, language: str) -> Callable[[], bytes]:
    """Rendering runs when the button is clicked, not on every rerun (a PDF takes seconds)."""

    def make() -> bytes:
        with database().read() as session:
            file = reports.generate(
                session, actor=who, kind=kind, period=period, fmt=fmt, language=language
            )
        return file.content

    return make


st.subheader(_("Create a report"))
cols = st.columns([2, 1, 1])
kind = cols[0].radio(
    _("Report"), list(KINDS), format_func=KINDS.get, horizontal=True, key="report_kind"
)
years = [str(y) for y in range(today.year, 2023, -1)]
periods = months_back(24) if kind == "monthly" else years
period = cols[1].selectbox(
    _("Period"), periods, format_func=month_text, key=f"report_period_{kind}", placeholder=choose()
)
languages = reports.report_languages(kind)
language = cols[2].selectbox(
    _("Language"),
    languages,
    index=languages.index(lang()) if lang() in languages else 0,
    format_func=language_name,
    key="report_language",
    placeholder=choose(),
)
buttons = st.columns(4)
for column, fmt in zip(buttons, reports.REPORT_FORMATS, strict=True):
    column.download_button(
        _("Download {format}").format(format=LABELS[fmt]),
        data=generator(actor, kind, period, fmt, language),
        file_name=reports.file_name(kind, period, language, fmt),
        mime=reports.MEDIA_TYPES[fmt],
        on_click="ignore",
        key=f"report_{fmt}",
        width="stretch",
    )

st.subheader(_("Issued reports"))
st.caption(
    _(
        "Kept as they were issued: last month's report on the 1st of each month, last year's "
        "FIT@THGA report in January."
    )
)
issued = read(reports.stored_reports) or []
if not issued:
    st.info(_("No report has been issued yet."))


def stored(who: Actor, report_id: int) -> Callable[[], bytes]:
    def load() -> bytes:
        with database().read() as session:
            return reports.stored_report(session, actor=who, report_id=report_id).content

    return load


for r in issued:
    row = st.columns([3, 2, 1, 2])
    row[0].write(plain(f"{KINDS.get(r.kind, r.kind)} · {month_text(r.period)}"))
    row[1].write(local_time(r.generated_at))
    row[2].write(plain(f"{LABELS.get(r.format, r.format.upper())} · {language_name(r.language)}"))
    row[3].download_button(
        _("Download"),
        data=stored(actor, r.id),
        file_name=r.file_name,
        mime=reports.MEDIA_TYPES[r.format],
        on_click="ignore",
        key=f"issued_{r.id}",
    )
