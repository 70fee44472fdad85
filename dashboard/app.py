"""Entry point: sign-in, language, and the pages each role may use."""

from __future__ import annotations

import sys
from pathlib import Path

# `streamlit run dashboard/app.py` puts dashboard/ on the path, not the project root.
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from dashboard.common import (  # noqa: E402
    _,
    current_actor,
    keep_choices,
    lang,
    page,
    plain,
    refuse_unsafe_production,
    sign_out,
)
from dashboard.formatting import staff_names  # noqa: E402
from dashboard.i18n import LANGUAGES  # noqa: E402
from tracker.fit import PROGRAMME_ORG  # noqa: E402

st.set_page_config(page_title="Welcome Office Bochum", layout="wide")
# Production without a proper secret, or with demo sign-ins: say why, render nothing else.
refuse_unsafe_production()

# st.switch_page (a row that opens a case) drops the entry script's widget states, so the radio
# would fall back to German: the language is kept apart too and given back when it went missing.
if "lang" not in st.session_state and "kept_lang" in st.session_state:
    st.session_state["lang"] = st.session_state["kept_lang"]
with st.sidebar:
    st.radio(
        "Sprache / Language",
        options=list(LANGUAGES),
        format_func=LANGUAGES.get,
        key="lang",
        horizontal=True,
        on_change=keep_choices,
    )
    st.session_state["kept_lang"] = st.session_state["lang"]
    # Screen readers pick their voice by the page's declared language (WCAG 3.1.1), and
    # Streamlit's page says "en" whatever the screen shows: say the chosen one.
    st.html(
        f"<script>document.documentElement.lang = '{lang()}';</script>",
        unsafe_allow_javascript=True,
    )

actor = current_actor()


if actor is None:
    # The sign-in page says why a session ended (expired, idle, account changed).
    pages = [page("signin", _("Sign in"), default=True)]
else:
    # A page a role may not use is not offered; each page and the queries below refuse anyway.
    by_role = {
        "case_manager": [
            ("my_cases", _("My cases")),
            ("person", _("Case")),
            ("queue", _("Partner queues")),
            ("partners", _("Partners")),
        ],
        "partner_agent": [("queue", _("Our queue")), ("person", _("Case"))],
        "leadership": [
            ("outcomes", _("Outcomes")),
            ("partners", _("Partners")),
            ("reports", _("Reports")),
        ],
        "admin": [
            ("my_cases", _("Cases")),
            ("person", _("Case")),
            ("queue", _("Partner queues")),
            ("partners", _("Partners")),
            ("outcomes", _("Outcomes")),
            ("reports", _("Reports")),
            ("admin", _("Administration")),
        ],
    }
    # FIT@THGA is run by THGA's own staff (case managers and admins may help); other partners
    # and leadership do not get the page (leadership sees the programme on Outcomes/Reports).
    fit_page = ("fit", _("FIT@THGA"))
    if actor.organisation_key == PROGRAMME_ORG:
        by_role["partner_agent"].append(fit_page)
    by_role["case_manager"].append(fit_page)
    by_role["admin"].insert(3, fit_page)
    pages = [
        page(name, title, default=i == 0) for i, (name, title) in enumerate(by_role[actor.role])
    ]
    with st.sidebar:
        # The person by name and role, and their organisation (not the sign-in name).
        name, organisation = staff_names().get(actor.username, (actor.username, None))
        st.caption(f"{plain(name)} · {_(actor.role)}")
        if organisation:
            st.caption(plain(organisation))
        if st.button(_("Sign out"), key="signout"):
            sign_out()
            if getattr(getattr(st, "user", None), "is_logged_in", False):
                st.logout()  # also end the identity provider's sign-in, or it signs back in
            st.rerun()

st.navigation(pages).run()
