"""Sign in with a local account, or through the city's identity provider when configured."""

from __future__ import annotations

import streamlit as st

from dashboard.common import _, database, session_ended_text, sign_in_as
from tracker.auth import SignInFailed, actor_for_email, sign_in, stamp_for

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
        st.error(result.error or _("Sign-in failed."))
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
            st.error(str(exc))
    elif st.button(_("Sign in with the city account"), key="signin_oidc"):
        st.login()
