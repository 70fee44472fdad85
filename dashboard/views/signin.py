"""Sign in with a local account, or through the city's identity provider when configured."""

from __future__ import annotations

import threading

import streamlit as st

from dashboard.common import _, database, error_text, plain, session_ended_text, sign_in_as
from tracker.admin.auth import SignInFailed, actor_for_email, sign_in, stamp_for


def _load_drawing_libraries() -> None:
    import altair  # noqa: F401  (every chart)
    import pandas  # noqa: F401  (every table's and chart's data on its way to the browser)


@st.cache_resource(show_spinner=False)
def _preload() -> threading.Thread:
    """Once per server process, while the first person types their password: load what the
    pages draw with. Otherwise the first page after signing in waits about a second for it
    (Outcomes' charts most)."""
    thread = threading.Thread(target=_load_drawing_libraries, name="preload", daemon=True)
    thread.start()
    return thread


_preload()
st.title("Welcome Office Bochum")
st.caption(_("Onboarding tracker for newcomers and their partners"))

ended = st.session_state.pop("session_ended", None)
if ended:
    st.info(session_ended_text(ended))

with st.form("signin"):
    username = st.text_input(_("Username"), key="signin_user")
    password = st.text_input(_("Password"), type="password", key="signin_password")
    submitted = st.form_submit_button(_("Sign in"), key="signin_submit")

if submitted:
    with database().transaction() as session:
        result = sign_in(session, username=username, password=password)
    if result.actor is None:
        st.error(plain(error_text(result.error)) if result.error else _("Sign-in failed."))
    else:
        sign_in_as(result.actor, result.stamp)
        st.rerun()


def _oidc_configured() -> bool:
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets file at all
        return False


if _oidc_configured():
    st.divider()
    user = getattr(st, "user", None)
    logged_in = user is not None and getattr(user, "is_logged_in", False)
    if logged_in and ended:
        # The identity provider's cookie would sign the person straight back in: an expired
        # or idle session (or a changed account) ends there too, and the reason stays shown.
        st.session_state["session_ended"] = ended
        st.logout()
    elif logged_in:
        assert user is not None
        try:
            with database().read() as session:
                actor = actor_for_email(session, str(user.get("email", "")))
                stamp = stamp_for(session, actor.username)
            sign_in_as(actor, stamp)
            st.rerun()
        except SignInFailed as exc:
            st.error(plain(error_text(exc)))
    elif st.button(_("Sign in with the city account"), key="signin_oidc"):
        st.login()
