"""Administration: organisations, users, the pathways as diagrams, CSV import, failed messages."""

from __future__ import annotations

import dataclasses

import streamlit as st

from dashboard.charts import journey_map
from dashboard.common import (
    _,
    change,
    database,
    lang,
    read,
    remember_versions,
    require_actor,
    seen_versions,
    show_flash,
    step_title,
)
from tracker import queries, services
from tracker.enums import OrgKind, Role
from tracker.importer import ImportFailed, import_newcomers
from tracker.orchestration import request_advance
from tracker.passwords import MIN_LENGTH, hash_password
from tracker.pathway import get_registry
from tracker.services._base import utcnow
from tracker.services.delivery import failed_messages, retry_message

actor = require_actor("admin")
show_flash()
st.title(_("Administration"))
orgs_tab, users_tab, pathways_tab, import_tab, outbox_tab, privacy_tab = st.tabs(
    [
        _("Organisations"),
        _("Users"),
        _("Pathways"),
        _("CSV import"),
        _("Failed messages"),
        _("Data protection"),
    ]
)

with orgs_tab:
    seen_orgs = seen_versions("organisations")
    with database().read() as session:
        orgs = queries.organisations(session)
    st.dataframe(
        [
            {
                _("Key"): o.key,
                _("Name"): o.name,
                _("Kind"): _(o.kind),
                _("Own queue"): o.receives_handoffs,
                _("Active"): o.active,
            }
            for o in orgs
        ],
        hide_index=True,
        width="stretch",
        key="admin_orgs",
    )
    with st.form("org_add"):
        st.markdown("**" + _("Add an organisation") + "**")
        cols = st.columns([1, 2, 1, 1])
        key = cols[0].text_input(_("Key"), key="org_key")
        name = cols[1].text_input(_("Name"), key="org_name")
        kind = cols[2].selectbox(
            _("Kind"), [k.value for k in OrgKind], format_func=_, key="org_kind"
        )
        own = cols[3].checkbox(_("Own queue"), value=True, key="org_own")
        if st.form_submit_button(_("Add"), key="org_add_submit") and change(
            services.add_organisation, key=key, name=name, kind=OrgKind(kind), receives_handoffs=own
        ):
            st.session_state["flash"] = ("success", _("Organisation added."))
            st.rerun()
    with st.form("org_change"):
        st.markdown("**" + _("Rename or deactivate") + "**")
        target = st.selectbox(
            _("Organisation"),
            [o.key for o in orgs],
            format_func=lambda k: next(f"{o.key} – {o.name}" for o in orgs if o.key == k),
            key="org_target",
        )
        new_name = st.text_input(_("New name (empty: keep)"), key="org_new_name")
        active = st.checkbox(
            _("Active"), value=next(o.active for o in orgs if o.key == target), key="org_active"
        )
        if st.form_submit_button(_("Save"), key="org_change_submit") and change(
            services.update_organisation,
            key=target,
            name=new_name or None,
            active=active,
            # The version on the screen the admin edited, not the one re-read for this click.
            expected_version=seen_orgs.get(
                target, next(o.version for o in orgs if o.key == target)
            ),
        ):
            st.session_state["flash"] = ("success", _("Saved."))
            st.rerun()

    remember_versions("organisations", {o.key: o.version for o in orgs})

with users_tab:
    users = read(queries.users) or []
    st.dataframe(
        [
            {
                _("Username"): u.username,
                _("Name"): u.display_name,
                _("Role"): _(u.role),
                _("Organisation"): u.organisation or "",
                _("Active"): u.active,
            }
            for u in users
        ],
        hide_index=True,
        width="stretch",
        key="admin_users",
    )
    with st.form("user_add"):
        st.markdown("**" + _("Add a user") + "**")
        cols = st.columns(3)
        username = cols[0].text_input(_("Username"), key="user_name")
        display = cols[1].text_input(_("Full name"), key="user_display")
        role = cols[2].selectbox(_("Role"), [r.value for r in Role], format_func=_, key="user_role")
        cols = st.columns(2)
        org_key = cols[0].selectbox(_("Organisation"), ["", *[o.key for o in orgs]], key="user_org")
        password = cols[1].text_input(_("Initial password"), type="password", key="user_pw")
        if st.form_submit_button(_("Add"), key="user_add_submit"):
            if len(password) < MIN_LENGTH:
                st.error(
                    _("Choose an initial password of at least {n} characters.").format(n=MIN_LENGTH)
                )
            elif change(
                services.add_user,
                username=username,
                display_name=display,
                role=Role(role),
                organisation=org_key or None,
                password_hash=hash_password(password),
            ):
                st.session_state["flash"] = ("success", _("User added."))
                st.rerun()


def _clock_text(clock) -> str:  # type: ignore[no-untyped-def]
    if clock is None:
        return ""
    if clock.days is not None:
        return f"{clock.days} {_('days')} · {clock.reference}"
    return f"{clock.months} {_('months')} · {clock.reference}"


with pathways_tab:
    registry = get_registry()
    for pathway in registry.latest():
        title = pathway.title.de if lang() == "de" else pathway.title.en
        st.markdown(f"**{title}** · `{pathway.key}` v{pathway.version}")
        steps = [
            {
                "key": s.id,
                "title": step_title(s.id),
                "state": "open",
                "owner": s.owner,
                "due": _clock_text(s.legal_clock),
                "needs": s.needs,
            }
            for s in pathway.steps
        ]
        st.altair_chart(journey_map(steps, state_label={"open": ""}), width="stretch")

with import_tab:
    st.caption(
        _(
            "Columns: given_name, family_name, birth_date, nationality, purpose, email, "
            "preferred_language, arrival_date, move_in_date, permit_expiry, case_manager. "
            "All rows are imported or none."
        )
    )
    upload = st.file_uploader(_("CSV file"), type=["csv", "txt"], key="import_file")
    encoding = st.selectbox(
        _("Encoding"),
        ["", "latin-1", "cp1252"],
        format_func=lambda e: e or "UTF-8",
        key="import_encoding",
    )
    cols = st.columns(2)
    dry = cols[0].button(_("Check only"), key="import_check")
    run = cols[1].button(_("Import"), key="import_run")
    if upload is not None and (dry or run):
        try:
            with database().transaction() as session:
                report = import_newcomers(
                    session,
                    actor=actor,
                    source=upload.getvalue(),
                    encoding=encoding or None,
                    dry_run=dry,
                    now=utcnow(),
                )
        except ImportFailed as exc:
            st.error(_("Nothing was imported. Fix these rows and try again:"))
            st.dataframe(
                [dataclasses.asdict(e) for e in exc.report.errors],
                hide_index=True,
                key="import_errors",
            )
        else:
            refs = [r for _line, r in report.imported if isinstance(r, str)]
            if dry:
                st.success(_("All {n} rows are fine.").format(n=report.rows_read))
            else:
                request_advance(refs, wait=0, db=database())
                st.success(_("{n} newcomers imported.").format(n=len(report.imported)))

with outbox_tab:
    failed = read(failed_messages) or []
    if not failed:
        st.success(_("No failed messages."))
    else:
        st.dataframe([dataclasses.asdict(m) for m in failed], hide_index=True, key="outbox_failed")
        message_id = st.selectbox(_("Message"), [m.id for m in failed], key="outbox_pick")
        if st.button(_("Send again"), key="outbox_retry"):
            before = len(failed)
            change(retry_message, message_id=message_id, now=utcnow())
            if len(read(failed_messages) or []) < before:
                st.session_state["flash"] = ("success", _("The message is queued again."))
                st.rerun()

with privacy_tab:
    from tracker.config import get_settings
    from tracker.services.privacy import count_expired, erasures_for, recent_erasures

    months = get_settings().retention_months
    with database().read() as session:
        due = count_expired(session, now=utcnow())
    st.metric(_("People due for anonymisation"), due)
    st.caption(
        _(
            "The retention run anonymises, every night, people whose cases all ended more than "
            "{months} months ago; the anonymous figures stay."
        ).format(months=months)
    )
    lookup = st.text_input(_("Was this case reference erased?"), key="erasure_lookup")
    if lookup.strip():
        found = read(erasures_for, reference=lookup.strip()) or []
        if found:
            st.success(
                _("Yes, erased: {basis}, {day}.").format(
                    basis=_(found[-1].basis), day=found[-1].erased_at.strftime("%Y-%m-%d")
                )
            )
        else:
            st.info(_("No erasure is recorded for this reference."))
    tombstones = read(recent_erasures, limit=50) or []
    st.dataframe(
        [
            {
                _("When"): t.erased_at.strftime("%Y-%m-%d %H:%M"),
                _("Who"): t.erased_by,
                _("Why"): _(t.basis),
                _("Rows removed"): sum(t.removed.values()),
            }
            for t in tombstones
        ],
        hide_index=True,
        width="stretch",
        key="admin_erasures",
    )
