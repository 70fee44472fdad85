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
    page,
    refuse_unsafe_production,
    sign_out,
)
from dashboard.i18n import LANGUAGES  # noqa: E402
from tracker.services.fit import PROGRAMME_ORG  # noqa: E402

st.set_page_config(page_title="Welcome Office Bochum", layout="wide")
# Production without a proper secret, or with demo sign-ins: say why, render nothing else.
refuse_unsafe_production()

with st.sidebar:
    st.radio(
        "Sprache / Language",
        options=list(LANGUAGES),
        format_func=LANGUAGES.get,
        key="lang",
        horizontal=True,
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
        ],
        "partner_agent": [("queue", _("Our queue")), ("person", _("Case"))],
        "leadership": [("outcomes", _("Outcomes")), ("reports", _("Reports"))],
        "admin": [
            ("my_cases", _("Cases")),
            ("person", _("Case")),
            ("queue", _("Partner queues")),
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
        st.caption(f"{actor.username} · {_(actor.role)}")
        if st.button(_("Sign out"), key="signout"):
            sign_out()
            if getattr(getattr(st, "user", None), "is_logged_in", False):
                st.logout()  # also end the identity provider's sign-in, or it signs back in
            st.rerun()

st.navigation(pages).run()
