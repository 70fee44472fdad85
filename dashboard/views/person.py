"""One case: the journey as a map of steps with their clocks, actions, consents and timeline."""

from __future__ import annotations

from datetime import date

import streamlit as st

from dashboard.charts import journey_map
from dashboard.common import (
    _,
    change,
    database,
    due_text,
    follow_up,
    remember_versions,
    require_actor,
    seen_versions,
    show_flash,
    state_text,
    step_title,
)
from tracker import queries, services
from tracker.enums import ConsentMethod
from tracker.errors import NotFoundError, PermissionDenied
from tracker.orchestration import case_runs, prefect_ui_url
from tracker.pathway import get_registry

actor = require_actor("case_manager", "admin", "partner_agent")
show_flash()

reference = (
    st.text_input(
        _("Case reference"),
        value=st.session_state.get("case", st.query_params.get("case", "")),
        key="person_ref",
    )
    .strip()
    .upper()
)
if not reference:
    st.info(_("Enter a case reference, or open a case from the list."))
    st.stop()
st.session_state["case"] = reference

# The versions on the screen the person was looking at when they clicked: a change is made
# against those, so someone else's change in between is refused, never overwritten.
prev_versions = seen_versions(f"steps:{reference}")
prev_handoffs = seen_versions(f"handoffs:{reference}")

# A submitted action runs first, then the page shows the new state.
pending_action = st.session_state.pop("person_pending", None)
if pending_action and actor.manages_cases:
    kind, kwargs, version = pending_action
    fn = {
        "start": services.start_step,
        "complete": services.complete_step,
        "block": services.block_step,
        "resume": services.start_step,
        "skip": services.skip_step,
        "offer": services.offer_handoff,
        "withdraw": services.withdraw_handoff,
    }[kind]
    # (for "withdraw" the pending version is the handoff's, also as seen on the screen)
    if change(fn, reference=reference, expected_version=version, **kwargs) is not None:
        follow_up(reference)
        st.rerun()

today = date.today()
try:
    with database().read() as session:
        view = queries.case_view(session, actor=actor, reference=reference)
        events = (
            queries.timeline(session, actor=actor, reference=reference)
            if actor.manages_cases
            else []
        )
except (NotFoundError, PermissionDenied) as exc:
    st.warning(str(exc))
    st.stop()

catalogue = get_registry().catalogue


name = " ".join(str(view.newcomer.get(k, "")) for k in ("given_name", "family_name")).strip()
st.title(f"{view.reference} · {name}")
st.caption(
    f"{_(view.pathway)} · v{view.pathway_version} · {_('status')}: {_(view.status)} · "
    f"{_('case manager')}: {view.case_manager or '–'}"
)

with st.expander(_("Facts"), expanded=False):
    st.table(
        [
            {_("Field"): _(k), _("Value"): "" if v is None else str(v)}
            for k, v in view.newcomer.items()
        ]
    )

if actor.manages_cases:
    # The welcome letter, rendered when a button is clicked (a PDF takes a second or two).
    def _letter(fmt: str, language: str) -> bytes:
        from tracker.letters import welcome_letter
        from tracker.pdf import html_to_pdf

        with database().read() as session:
            html = welcome_letter(session, actor=actor, reference=reference, language=language)
        return html.encode("utf-8") if fmt == "html" else html_to_pdf(html)

    with st.expander(_("Welcome letter"), expanded=False):
        from tracker.letters import letter_language, letter_languages

        preferred = letter_language(view.newcomer.get("preferred_language"))
        letter_lang = st.selectbox(
            _("Language"),
            letter_languages(),
            index=letter_languages().index(preferred),
            key=f"letter_lang_{reference}",
        )
        letter_cols = st.columns(2)
        for column, fmt in zip(letter_cols, ("pdf", "html"), strict=True):
            column.download_button(
                _("Download {format}").format(format=fmt.upper()),
                data=lambda fmt=fmt, language=letter_lang: _letter(fmt, language),
                file_name=f"willkommen-{reference}-{letter_lang}.{fmt}",
                mime="application/pdf" if fmt == "pdf" else "text/html",
                on_click="ignore",
                key=f"letter_{fmt}_{reference}",
            )

st.subheader(_("Journey"))
steps = [
    {
        "key": s.key,
        "title": step_title(s.key),
        "state": s.state,
        "owner": s.owner_name,
        "due": str(s.due_date or ""),
        "needs": s.needs,
    }
    for s in view.steps
]
state_labels = {
    k: state_text(k) for k in ("pending", "open", "in_progress", "blocked", "done", "skipped")
}
st.altair_chart(journey_map(steps, state_label=state_labels), width="stretch")
st.dataframe(
    [
        {
            _("Step"): step_title(s.key),
            _("State"): state_text(s.state),
            _("Owner"): s.owner_name,
            _("Handoff"): state_text(s.handoff.state) if s.handoff else "",
            _("Due"): due_text(s.due_status, s.due_date),
            _("Legal deadline"): f"{s.legal_due or ''} {s.legal_reference or ''}".strip(),
            _("Note"): s.blocked_reason or s.skip_reason or (_(s.outcome) if s.outcome else ""),
            _("Needs"): ", ".join(
                f"{step_title(need)} {'✓' if done else '…'}"
                for need, done in s.prerequisites.items()
            ),
        }
        for s in view.steps
    ],
    hide_index=True,
    width="stretch",
    key="person_steps",
)

with database().read() as session:
    partners = [
        o for o in queries.organisations(session, include_inactive=False) if o.receives_handoffs
    ]

if actor.manages_cases and view.status == "open":
    st.subheader(_("Act on a step"))
    workable = [s for s in view.steps if s.state in ("open", "in_progress", "blocked")]
    if not workable:
        st.caption(_("No step is open right now."))
    else:
        with st.form("person_action_form"):
            step_key = st.selectbox(
                _("Step"), [s.key for s in workable], format_func=step_title, key="person_step"
            )
            action = st.radio(
                _("Action"),
                ["complete", "start", "block", "resume", "skip", "offer", "withdraw"],
                format_func=lambda a: {
                    "complete": _("record as done"),
                    "start": _("start"),
                    "block": _("block (with reason)"),
                    "resume": _("resume"),
                    "skip": _("skip (with reason)"),
                    "offer": _("hand off to a partner"),
                    "withdraw": _("withdraw the handoff"),
                }[a],
                horizontal=True,
                key="person_action",
            )
            chosen = next(s for s in workable if s.key == step_key)
            outcomes = catalogue[step_key].outcomes if step_key in catalogue else []
            outcome = st.selectbox(
                _("Outcome"),
                ["", *outcomes],
                format_func=lambda o: _(o) if o else "–",
                key="person_outcome",
            )
            on = st.date_input(_("Happened on"), value=today, max_value=today, key="person_on")
            org = st.selectbox(
                _("Partner"),
                [o.key for o in partners],
                index=next((i for i, o in enumerate(partners) if o.key == chosen.owner), 0),
                format_func=lambda k: next(o.name for o in partners if o.key == k),
                key="person_org",
            )
            reason = st.text_input(_("Reason"), key="person_reason")
            if st.form_submit_button(_("Save"), key="person_submit"):
                kwargs: dict[str, object] = {"step_key": step_key}
                if action == "complete":
                    kwargs.update(outcome=outcome or None, on=on)
                elif action in ("block", "skip", "withdraw"):
                    kwargs["reason"] = reason
                elif action == "offer":
                    kwargs["organisation"] = org
                seen = prev_handoffs if action == "withdraw" else prev_versions
                st.session_state["person_pending"] = (action, kwargs, seen.get(step_key))
                st.rerun()

remember_versions(f"steps:{reference}", {s.key: s.version for s in view.steps})
remember_versions(
    f"handoffs:{reference}", {s.key: s.handoff.version for s in view.steps if s.handoff}
)

if actor.manages_cases:
    st.subheader(_("Consent to share"))
    if view.consents:
        st.dataframe(
            [
                {
                    _("Organisation"): c.organisation_name,
                    _("Given"): str(c.given_at.date()),
                    _("How"): _(c.method),
                    _("Notice language"): c.notice_language,
                    _("Revoked"): str(c.revoked_at.date()) if c.revoked_at else "",
                }
                for c in view.consents
            ],
            hide_index=True,
            key="person_consents",
        )
    else:
        st.caption(_("No consent recorded yet: partners do not see this case."))
    with st.form("consent_form"):
        cols = st.columns(3)
        consent_org = cols[0].selectbox(
            _("Organisation"),
            [o.key for o in partners],
            format_func=lambda k: next(o.name for o in partners if o.key == k),
            key="consent_org",
        )
        method = cols[1].selectbox(
            _("How"), [m.value for m in ConsentMethod], format_func=_, key="consent_method"
        )
        notice = cols[2].selectbox(
            _("Notice language"), ["de", "en", "ar", "uk", "tr", "ru", "fa"], key="consent_lang"
        )
        give = st.form_submit_button(_("Record consent"), key="consent_give")
        revoke = st.form_submit_button(_("Record revocation"), key="consent_revoke")
    if give and change(
        services.give_consent,
        reference=reference,
        organisation=consent_org,
        method=ConsentMethod(method),
        notice_language=notice,
    ):
        follow_up(reference)
        st.rerun()
    if revoke and change(services.revoke_consent, reference=reference, organisation=consent_org):
        follow_up(reference)
        st.rerun()

    st.subheader(_("Timeline"))
    st.dataframe(
        [
            {
                _("When"): e.occurred_at.strftime("%Y-%m-%d %H:%M"),
                _("Who"): e.actor,
                _("What"): _(e.action),
                _("Step"): step_title(e.step) if e.step else "",
                _("Why"): e.reason or "",
            }
            for e in reversed(events)
        ],
        hide_index=True,
        width="stretch",
        key="person_timeline",
    )

    st.subheader(_("Runs in Prefect"))
    runs = case_runs(reference)
    if runs:
        for run in runs[:10]:
            st.markdown(f"- [{run['name']}]({run['url']}) · {run['state']} · {run['start'][:19]}")
    else:
        st.caption(
            _("No runs found, or Prefect is not reachable.")
            + f" [{_('Open the Prefect UI')}]({prefect_ui_url()}/runs)"
        )

if actor.manages_cases:
    # Rights of the person: what is held (Art. 15), who looked, and (admins) erasure (Art. 17).
    from tracker.privacy import (
        MEDIA_TYPES,
        access_history,
        export_file_name,
        export_languages,
        render_export,
    )
    from tracker.services.privacy import erase_person, export_person

    def _export(fmt: str, language: str) -> bytes:
        with database().transaction() as session:
            data = export_person(session, actor=actor, reference=reference)
        return render_export(data, fmt=fmt, language=language).content

    st.subheader(_("Data protection"))
    with st.expander(_("Export everything held about this person (Art. 15 GDPR)")):
        st.caption(
            _(
                "The export holds the person's details, every case and step, consents, "
                "messages, FIT@THGA records, the history and who viewed the data. "
                "Each export is recorded."
            )
        )
        export_lang = st.selectbox(
            _("Language"), export_languages(), key=f"export_lang_{reference}"
        )
        export_cols = st.columns(3)
        for column, fmt in zip(export_cols, ("pdf", "html", "json"), strict=True):
            column.download_button(
                _("Download {format}").format(format=fmt.upper()),
                data=lambda fmt=fmt, language=export_lang: _export(fmt, language),
                file_name=export_file_name(reference, fmt),
                mime=MEDIA_TYPES[fmt],
                on_click="ignore",
                key=f"export_{fmt}_{reference}",
            )
    with st.expander(_("Who viewed this person")):
        with database().read() as session:
            views = access_history(session, actor=actor, reference=reference, limit=200)
        st.dataframe(
            [
                {
                    _("When"): v.occurred_at.strftime("%Y-%m-%d %H:%M"),
                    _("Who"): v.actor,
                    _("Organisation"): v.organisation or "–",
                    _("What"): _(f"access_{v.purpose}"),
                }
                for v in views
            ],
            hide_index=True,
            width="stretch",
            key="person_access_log",
        )
    if actor.role == "admin":
        with st.expander(_("Erase this person's data (Art. 17 GDPR)")):
            st.warning(
                _(
                    "Erasure removes the person, all their cases, messages, FIT@THGA records, "
                    "the access log and the history. It cannot be undone; only a tombstone "
                    "without personal data stays."
                )
            )
            with st.form(f"erase_{reference}"):
                typed = st.text_input(
                    _("Type the case reference again to confirm"), key="erase_confirm"
                )
                if st.form_submit_button(_("Erase for good"), key="erase_submit", type="primary"):
                    removal = change(erase_person, reference=reference, confirm=typed)
                    if removal is not None:
                        from tracker.orchestration import forget_case_runs

                        forget_case_runs(reference)  # best effort: Prefect may be away
                        st.session_state["flash"] = (
                            "success",
                            _("{reference} was erased. Tombstone {ids}.").format(
                                reference=reference, ids=removal.erasure_ids
                            ),
                        )
                        st.rerun()
