"""One case: the journey as a map of steps with their clocks, actions, consents and timeline."""

from __future__ import annotations

import streamlit as st

from dashboard.charts import journey_map
from dashboard.common import (
    _,
    change,
    choose,
    database,
    date_format,
    draw_chart,
    due_text,
    error_text,
    follow_up,
    plain,
    remember_versions,
    require_actor,
    seen_versions,
    show_flash,
    state_text,
    step_title,
    watch_advance,
)
from dashboard.formatting import (
    date_text,
    datetime_text,
    fact_text,
    language_name,
    person_text,
    run_state_text,
)
from dashboard.lists import clear_selection, picked
from tracker.admin import queries as admin_queries
from tracker.clocks import local_today
from tracker.enums import ConsentMethod
from tracker.errors import NotFoundError, PermissionDenied
from tracker.journeys import consent, handoffs, queries, steps
from tracker.journeys.orchestration import case_runs, prefect_ui_url, uses_prefect
from tracker.journeys.transitions import available_actions
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
    st.info(
        _("Open a case from your queue by clicking its row, or enter its case reference.")
        if actor.is_partner
        else _("Open a case from My cases by clicking its row, or enter its case reference.")
    )
    st.stop()
st.session_state["case"] = reference

STEPS = "person_steps"
FORM = "person_form:"  # the prefix of every widget of the action form (one step's)
CASE_MANAGER_SERVICES = {
    "start": steps.start_step,
    "complete": steps.complete_step,
    "block": steps.block_step,
    "resume": steps.start_step,
    "skip": steps.skip_step,
    "offer": handoffs.offer_handoff,
    "withdraw": handoffs.withdraw_handoff,
}
PARTNER_SERVICES = {
    "accept": handoffs.accept_handoff,
    "decline": handoffs.decline_handoff,
    "complete": handoffs.complete_handoff,
    "return": handoffs.return_handoff,
}
# The actions that act on the step's handoff, so against the handoff's version: a partner's
# all, a case manager's withdrawal.
HANDOFF_ACTIONS = set(PARTNER_SERVICES) if actor.is_partner else {"withdraw"}

REASON_ACTIONS = {"block", "skip", "withdraw", "decline", "return"}


# The action form's inputs: the service's keyword for each, and what to say if it is empty
# where it must not be.
FIELD_KEYWORDS = {"outcome": "outcome", "on": "on", "reason": "reason", "partner": "organisation"}
REQUIRED = {"outcome": _("Choose the outcome first."), "partner": _("Choose the partner first.")}


def save_step(form: str, step_key: str, fields: tuple[str, ...]) -> None:
    """The Save button's callback: it runs before the page's script, so the page that follows
    is drawn once, with the change made and "Saved" (or why not) at its top.

    ``fields`` are the inputs the form showed for the chosen action, read as the person left
    them (their widgets' state); the change is made against the versions on the screen the
    person was looking at when they clicked, so someone else's change in between is refused,
    never overwritten."""
    state = st.session_state
    action = state.get(form + "action")
    kwargs: dict[str, object] = {"step_key": step_key}
    for field in fields:
        value = state.get(form + field)
        if field in REQUIRED and not value:
            state["flash"] = ("warning", REQUIRED[field])
            return
        kwargs[FIELD_KEYWORDS[field]] = value
    services = CASE_MANAGER_SERVICES if actor.manages_cases else PARTNER_SERVICES
    if action not in services:
        return
    # (for a handoff's action the version is the handoff's, also as seen on the screen)
    seen = seen_versions(
        f"handoffs:{reference}" if action in HANDOFF_ACTIONS else f"steps:{reference}"
    )
    if change(
        services[action],
        in_callback=True,
        reference=reference,
        expected_version=seen.get(step_key),
        **kwargs,
    ):
        # The page shows the new state with nothing chosen: the step table forgets its
        # selection and the form its values (they belonged to that step).
        clear_selection(STEPS)
        for key in [k for k in state if str(k).startswith(FORM)]:
            del state[key]
        follow_up(reference)


today = local_today()
try:
    with database().read() as session:
        view = queries.case_view(session, actor=actor, reference=reference)
        events = (
            queries.timeline(session, actor=actor, reference=reference)
            if actor.manages_cases
            else []
        )
except (NotFoundError, PermissionDenied) as exc:
    st.warning(plain(error_text(exc)))
    st.stop()

catalogue = get_registry().catalogue


name = " ".join(str(view.newcomer.get(k, "")) for k in ("given_name", "family_name")).strip()
# Names and other typed text go through plain(): Streamlit renders titles, captions and
# st.table cells as Markdown, and a name may be written in it (an image, a link).
st.title(plain(f"{view.reference} · {name}"))
st.caption(
    f"{_(view.pathway)} · v{view.pathway_version} · {_('status')}: {_(view.status)} · "
    f"{_('case manager')}: {plain(person_text(view.case_manager) or '–')}"
)

with st.expander(_("Facts"), expanded=False):
    st.table(
        [{_("Field"): _(k), _("Value"): plain(fact_text(k, v))} for k, v in view.newcomer.items()]
    )

if actor.manages_cases:
    # The welcome letter, rendered when a button is clicked (a PDF takes a second or two).
    def _letter(fmt: str, language: str) -> bytes:
        from tracker.messages.letters import welcome_letter
        from tracker.messages.pdf import html_to_pdf

        with database().read() as session:
            html = welcome_letter(session, actor=actor, reference=reference, language=language)
        return html.encode("utf-8") if fmt == "html" else html_to_pdf(html)

    with st.expander(_("Welcome letter"), expanded=False):
        from tracker.messages.letters import letter_language, letter_languages

        preferred = letter_language(view.newcomer.get("preferred_language"))
        letter_lang = st.selectbox(
            _("Language"),
            letter_languages(),
            index=letter_languages().index(preferred),
            format_func=language_name,
            key=f"letter_lang_{reference}",
            placeholder=choose(),
        )
        letter_cols = st.columns(2)
        for column, fmt in zip(letter_cols, ("pdf", "html"), strict=True):
            column.download_button(
                _("Welcome letter as {format}").format(format=fmt.upper()),
                data=lambda fmt=fmt, language=letter_lang: _letter(fmt, language),
                file_name=f"willkommen-{reference}-{letter_lang}.{fmt}",
                mime="application/pdf" if fmt == "pdf" else "text/html",
                on_click="ignore",
                key=f"letter_{fmt}_{reference}",
            )

st.subheader(_("Journey"))
watch_advance(reference)  # after a save: the steps it opens appear without a reload
journey_steps = [
    {
        "key": s.key,
        "title": step_title(s.key),
        "state": s.state,
        "owner": s.owner_name,
        "due": date_text(s.due_date),
        "due_status": s.due_status,
        "needs": s.needs,
    }
    for s in view.steps
]
state_labels = {
    k: state_text(k) for k in ("pending", "open", "in_progress", "blocked", "done", "skipped")
}
state_labels["overdue"] = _("overdue")
draw_chart(
    ("journey", journey_steps, state_labels, _("State")),
    lambda: journey_map(journey_steps, state_label=state_labels, legend_title=_("State")),
    name=_("Journey"),
)


def waits_for(step: queries.StepView) -> str:
    """What a step that is not open yet waits for: the steps it needs that are not finished
    (all a partner learns of other organisations' steps)."""
    missing = [step_title(k) for k, done in step.prerequisites.items() if not done]
    return _("waits for: {steps}").format(steps=", ".join(missing)) if missing else ""


step_event = st.dataframe(
    [
        {
            _("Step"): step_title(s.key),
            _("State"): state_text(s.state),
            _("Handoff"): state_text(s.handoff.state) if s.handoff else "",
            _("Due"): due_text(s.due_status, s.due_date),
            _("Legal deadline"): f"{date_text(s.legal_due)} {s.legal_reference or ''}".strip(),
            _("Owner"): s.owner_name,
            _("Note"): s.blocked_reason
            or s.skip_reason
            or (_(s.outcome) if s.outcome else "")
            or waits_for(s),
        }
        for s in view.steps
    ],
    hide_index=True,
    width="stretch",
    column_config={
        # What fits 1366 px beside the sidebar without scrolling sideways (about 860 px); a
        # clicked step shows its owner, deadline and note in full below.
        _("Step"): st.column_config.TextColumn(width=180),
        _("State"): st.column_config.TextColumn(width=95),
        _("Handoff"): st.column_config.TextColumn(width=90),
        _("Due"): st.column_config.TextColumn(width=150),
        _("Legal deadline"): st.column_config.TextColumn(width=120),
        _("Owner"): st.column_config.TextColumn(width=120),
        _("Note"): st.column_config.TextColumn(width=105),
    },
    height=38 + 35 * len(view.steps),  # every step at once
    key=STEPS,
    on_select="rerun",
    selection_mode="single-row",
)
by_key = {s.key: s for s in view.steps}
chosen_keys = picked(STEPS, step_event, list(by_key))
chosen = by_key.get(chosen_keys[0]) if chosen_keys else None

with database().read() as session:
    partners = [
        o
        for o in admin_queries.organisations(session, include_inactive=False)
        if o.receives_handoffs
    ]

ACTION_LABELS = {
    "complete": _("record as done"),
    "start": _("start"),
    "block": _("block (with reason)"),
    "resume": _("resume"),
    "skip": _("skip (with reason)"),
    "offer": _("hand off to a partner"),
    "withdraw": _("withdraw the handoff"),
}
PARTNER_LABELS = {
    "accept": _("accept"),
    "decline": _("decline (with reason)"),
    "complete": _("complete"),
    "return": _("return to the case manager (with reason)"),
}
if view.status == "open":
    st.subheader(_("Act on a step"))
    if chosen is None:
        st.caption(_("Click a step in the table to act on it."))
    else:
        available = available_actions(
            actor,
            step_state=chosen.state,
            handoff_state=chosen.handoff.state if chosen.handoff else None,
        )
        version = (chosen.handoff.version if chosen.handoff else 0, chosen.version)
        # Each widget belongs to this step as it was shown: another step, or this one after a
        # change, gets fresh widgets, so no value chosen here carries over.
        form = f"{FORM}{reference}:{chosen.key}:{version[0]}:{version[1]}:"
        labels = ACTION_LABELS if actor.manages_cases else PARTNER_LABELS
        st.markdown(f"**{step_title(chosen.key)}** · {state_text(chosen.state)}")
        # In full what the table may cut: who has the step, its deadlines, its note.
        facts = [
            chosen.owner_name,
            state_text(chosen.handoff.state) if chosen.handoff else "",
            due_text(chosen.due_status, chosen.due_date),
            f"{date_text(chosen.legal_due)} {chosen.legal_reference or ''}".strip(),
            chosen.blocked_reason or chosen.skip_reason or waits_for(chosen),
        ]
        st.caption(plain(" · ".join(f for f in facts if f)))
        if not available:
            st.caption(_("Nothing to do on this step now."))
        else:
            action = st.radio(
                _("Action"),
                available,
                format_func=labels.get,
                horizontal=True,
                key=form + "action",
            )
            outcomes = catalogue[chosen.key].outcomes if chosen.key in catalogue else []
            fields: list[str] = []  # the inputs shown, which save_step reads
            if action == "complete" and outcomes:
                st.selectbox(
                    _("Outcome"),
                    outcomes,
                    index=None,
                    format_func=_,
                    placeholder=choose(),
                    key=form + "outcome",
                )
                fields.append("outcome")
            if action == "complete" and actor.manages_cases:
                st.date_input(
                    _("Happened on"),
                    value=today,
                    max_value=today,
                    format=date_format(),
                    key=form + "on",
                )
                fields.append("on")
            if action in REASON_ACTIONS:
                st.text_input(_("Reason"), key=form + "reason")
                fields.append("reason")
            if action == "offer":
                owner = next((i for i, o in enumerate(partners) if o.key == chosen.owner), None)
                st.selectbox(
                    _("Partner"),
                    [o.key for o in partners],
                    index=owner,
                    format_func=lambda k: next(o.name for o in partners if o.key == k),
                    placeholder=choose(),
                    key=form + "partner",
                    help=None
                    if owner is not None
                    else _("{owner} does not work a queue in the tracker.").format(
                        owner=chosen.owner_name
                    ),
                )
                fields.append("partner")
            st.button(
                _("Save"),
                key="person_submit",
                type="primary",
                on_click=save_step,
                args=(form, chosen.key, tuple(fields)),
            )

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
                    _("Given"): date_text(c.given_at),
                    _("How"): _(c.method),
                    _("Notice language"): language_name(c.notice_language),
                    _("Revoked"): date_text(c.revoked_at),
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
            placeholder=choose(),
        )
        method = cols[1].selectbox(
            _("How"),
            [m.value for m in ConsentMethod],
            format_func=_,
            key="consent_method",
            placeholder=choose(),
        )
        notice = cols[2].selectbox(
            _("Notice language"),
            ["de", "en", "ar", "uk", "tr", "ru", "fa"],
            format_func=language_name,
            key="consent_lang",
            placeholder=choose(),
        )
        give = st.form_submit_button(_("Record consent"), key="consent_give")
        revoke = st.form_submit_button(_("Record revocation"), key="consent_revoke")
    if give and change(
        consent.give_consent,
        reference=reference,
        organisation=consent_org,
        method=ConsentMethod(method),
        notice_language=notice,
    ):
        follow_up(reference)
        st.rerun()
    if revoke and change(consent.revoke_consent, reference=reference, organisation=consent_org):
        follow_up(reference)
        st.rerun()

    st.subheader(_("Timeline"))
    st.dataframe(
        [
            {
                _("When"): datetime_text(e.occurred_at),
                _("Who"): person_text(e.actor),
                _("What"): _(e.action),
                _("Step"): step_title(e.step) if e.step else "",
                _("Why"): e.reason or "",
            }
            for e in reversed(events)
        ],
        hide_index=True,
        width="stretch",
        column_config={  # fits 1366 px beside the sidebar (about 860 px)
            _("When"): st.column_config.TextColumn(width=135),
            _("Who"): st.column_config.TextColumn(width=230),
            _("What"): st.column_config.TextColumn(width=190),
            _("Step"): st.column_config.TextColumn(width=175),
            _("Why"): st.column_config.TextColumn(width=130),
        },
        key="person_timeline",
    )

    if uses_prefect():  # inline mode starts no runs: no section, no link to a Prefect UI
        st.subheader(_("Runs in Prefect"))
        # Asked for on request: two calls to Prefect on every run of the page would slow each
        # save by their time, and by seconds when Prefect is slow or away.
        if st.toggle(_("Ask Prefect for this case's runs"), key="person_runs"):
            runs = case_runs(reference)
            for run in runs[:10]:
                # The link is this office's Prefect; what Prefect says about the run is text.
                run_name, state, start = (
                    plain(run["name"]),
                    plain(run_state_text(run["state"])),
                    plain(datetime_text(run["start"])),
                )
                st.markdown(f"- [{run_name}]({run['url']}) · {state} · {start}")
            if not runs:
                st.caption(
                    _("No runs found, or Prefect is not reachable.")
                    + f" [{_('Open the Prefect UI')}]({prefect_ui_url()}/runs)"
                )

if actor.manages_cases:
    # Rights of the person: what is held (Art. 15), who looked, and (admins) erasure (Art. 17).
    from tracker.privacy.erasure import erase_person, export_person
    from tracker.privacy.export import (
        MEDIA_TYPES,
        export_file_name,
        export_languages,
        render_export,
    )
    from tracker.privacy.queries import access_history

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
            _("Language"),
            export_languages(),
            format_func=language_name,
            key=f"export_lang_{reference}",
            placeholder=choose(),
        )
        export_cols = st.columns(3)
        for column, fmt in zip(export_cols, ("pdf", "html", "json"), strict=True):
            column.download_button(
                _("Data export as {format}").format(format=fmt.upper()),
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
                    _("When"): datetime_text(v.occurred_at),
                    _("Who"): person_text(v.actor, organisation=False),
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
                        from tracker.journeys.orchestration import forget_case_runs

                        forget_case_runs(reference)  # best effort: Prefect may be away
                        st.session_state["flash"] = (
                            "success",
                            _("{reference} was erased. Tombstone {ids}.").format(
                                reference=reference, ids=removal.erasure_ids
                            ),
                        )
                        st.rerun()
