"""Administration: organisations, users, the pathways as diagrams, CSV import, failed messages."""

from __future__ import annotations

import dataclasses

import streamlit as st

from dashboard.charts import journey_map
from dashboard.common import (
    _,
    change,
    choose,
    database,
    draw_chart,
    lang,
    plain,
    read,
    remember_versions,
    require_actor,
    seen_versions,
    show_flash,
    step_title,
)
from dashboard.formatting import date_text, datetime_text, person_text, yes_no
from tracker.admin import organisations, users
from tracker.admin import queries as admin_queries
from tracker.admin.passwords import MIN_LENGTH, hash_password
from tracker.clocks import utcnow
from tracker.enums import OrgKind, Role
from tracker.journeys.csv_file import COLUMNS, REQUIRED_COLUMNS
from tracker.journeys.importer import ImportFailed, import_newcomers
from tracker.journeys.orchestration import request_advance
from tracker.messages.delivery import retry_message
from tracker.messages.queries import failed_messages
from tracker.pathway import LegalClock, get_registry

# The largest CSV file the import takes, in MB (Streamlit's own default, said on the page).
IMPORT_MAX_MB = 200

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
        orgs = admin_queries.organisations(session)
    st.dataframe(
        [
            {
                _("Key"): o.key,
                _("Name"): o.name,
                _("Kind"): _(o.kind),
                _("Own queue"): yes_no(o.receives_handoffs),
                _("Active"): yes_no(o.active),
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
            _("Kind"),
            [k.value for k in OrgKind],
            format_func=_,
            key="org_kind",
            placeholder=choose(),
        )
        own = cols[3].checkbox(_("Own queue"), value=True, key="org_own")
        if st.form_submit_button(_("Add"), key="org_add_submit") and change(
            organisations.add_organisation,
            key=key,
            name=name,
            kind=OrgKind(kind),
            receives_handoffs=own,
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
            placeholder=choose(),
        )
        new_name = st.text_input(_("New name (empty: keep)"), key="org_new_name")
        active = st.checkbox(
            _("Active"), value=next(o.active for o in orgs if o.key == target), key="org_active"
        )
        if st.form_submit_button(_("Save"), key="org_change_submit") and change(
            organisations.update_organisation,
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
    users = read(admin_queries.users) or []
    org_names = {o.key: o.name for o in orgs}
    st.dataframe(
        [
            {
                _("Name"): u.display_name,  # how screens name the person; then the sign-in
                _("Username"): u.username,
                _("Role"): _(u.role),
                _("Organisation"): org_names.get(u.organisation or "", u.organisation or ""),
                _("Active"): yes_no(u.active),
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
        role = cols[2].selectbox(
            _("Role"), [r.value for r in Role], format_func=_, key="user_role", placeholder=choose()
        )
        cols = st.columns(2)
        org_key = cols[0].selectbox(
            _("Organisation"),
            ["", *[o.key for o in orgs]],
            format_func=lambda k: org_names.get(k, "–"),
            key="user_org",
            placeholder=choose(),
        )
        password = cols[1].text_input(_("Initial password"), type="password", key="user_pw")
        if st.form_submit_button(_("Add"), key="user_add_submit"):
            if len(password) < MIN_LENGTH:
                st.error(
                    _("Choose an initial password of at least {n} characters.").format(n=MIN_LENGTH)
                )
            elif change(
                users.add_user,
                username=username,
                display_name=display,
                role=Role(role),
                organisation=org_key or None,
                password_hash=hash_password(password),
            ):
                st.session_state["flash"] = ("success", _("User added."))
                st.rerun()


def _clock_text(clock: LegalClock | None) -> str:
    if clock is None:
        return ""
    if clock.days is not None:
        return f"{clock.days} {_('days')} · {clock.reference}"
    return f"{clock.months} {_('months')} · {clock.reference}"


with pathways_tab:
    registry = get_registry()
    for pathway in registry.latest():
        title = pathway.title.de if lang() == "de" else pathway.title.en
        # A pathway file's title is text someone wrote, not Markdown.
        st.markdown(f"**{plain(title)}** · v{pathway.version}")
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
        # A pathway's steps have no state: drawn alike, in order, with their titles.
        draw_chart(("pathway", steps), lambda steps=steps: journey_map(steps), name=title)

with import_tab:
    st.caption(
        _(
            "The file's first row names its columns, as listed below; dates are written "
            "as 07.12.2026. All rows are imported or none."
        )
    )
    # (in a keyed container: its class st-key-import_columns lets the screenshot tour tell the
    # file's column names, which are the content here, from raw values shown by mistake)
    with st.expander(_("Columns of the file")), st.container(key="import_columns"):
        st.dataframe(
            [
                {
                    _("Meaning"): _(column),
                    _("Column in the file"): column,
                    _("Required"): yes_no(column in REQUIRED_COLUMNS),
                }
                for column in COLUMNS
            ],
            hide_index=True,
        )
    # Streamlit writes the uploader's limits in English ("200MB per file • CSV, TXT"): that line
    # is hidden, and the caption below the uploader says them in the screen's language.
    st.html(
        "<style>.st-key-import_file [data-testid='stFileUploaderDropzoneInstructions']"
        "{display: none}</style>"
    )
    upload = st.file_uploader(
        _("CSV file"),
        type=["csv", "txt"],
        key="import_file",
        max_upload_size=IMPORT_MAX_MB,
        help=_("Choose the file on your computer or drag it here."),
    )
    st.caption(_("A CSV or TXT file of at most {mb} MB.").format(mb=IMPORT_MAX_MB))
    encoding = st.selectbox(
        _("Encoding"),
        ["", "latin-1", "cp1252"],
        format_func=lambda e: e or "UTF-8",
        key="import_encoding",
        placeholder=choose(),
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


def recipient_text(recipient: str) -> str:
    """Where a message goes ("organisation:ihk-mr", "user:cm.mueller", "newcomer:42") in
    words: the organisation's or person's name, or the newcomer."""
    kind, _sep, who = recipient.partition(":")
    if kind == "organisation":
        return next((o.name for o in orgs if o.key == who), who)
    if kind == "user":
        return person_text(who)
    if kind == "newcomer":
        return _("the newcomer")
    return recipient


with outbox_tab:
    failed = read(failed_messages) or []
    if not failed:
        st.success(_("No failed messages."))
    else:
        st.dataframe(
            [
                {
                    _("Message"): m.id,
                    _("Kind"): _(f"message_{m.kind}"),
                    _("Case reference"): m.reference or "",
                    _("Recipient"): recipient_text(m.recipient),
                    _("Attempts"): m.attempts,
                    _("Last error"): m.last_error or "",
                    _("Created"): datetime_text(m.created_at),
                }
                for m in failed
            ],
            hide_index=True,
            key="outbox_failed",
        )
        message_id = st.selectbox(
            _("Message"), [m.id for m in failed], key="outbox_pick", placeholder=choose()
        )
        if st.button(_("Send again"), key="outbox_retry"):
            before = len(failed)
            change(retry_message, message_id=message_id, now=utcnow())
            if len(read(failed_messages) or []) < before:
                st.session_state["flash"] = ("success", _("The message is queued again."))
                st.rerun()

with privacy_tab:
    from tracker.config import get_settings
    from tracker.privacy.queries import erasures_for, recent_erasures
    from tracker.privacy.retention import count_expired

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
                    basis=_(found[-1].basis), day=date_text(found[-1].erased_at)
                )
            )
        else:
            st.info(_("No erasure is recorded for this reference."))
    tombstones = read(recent_erasures, limit=50) or []
    st.dataframe(
        [
            {
                _("When"): datetime_text(t.erased_at),
                _("Who"): person_text(t.erased_by),
                _("Why"): _(t.basis),
                _("Rows removed"): sum(t.removed.values()),
            }
            for t in tombstones
        ],
        hide_index=True,
        width="stretch",
        key="admin_erasures",
    )
