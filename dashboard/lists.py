"""What every list shares: pages of 50 with "1–50 of 322" and previous/next, a row click that
opens its item, and a selection that is cleared once it has been acted on.

A list keeps its page in the session under ``<key>:page``, next to the table's own selection
state (``st.session_state[key]``, set by ``st.dataframe(..., key=key, on_select="rerun")``).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import streamlit as st

from dashboard.common import _, go
from dashboard.formatting import number_text

PAGE_SIZE = 50
T = TypeVar("T")
_NOTHING_SELECTED: dict[str, Any] = {"selection": {"rows": [], "columns": [], "cells": []}}


def _page(key: str, filters: Hashable) -> int:
    """The page of ``key``'s list asked for; other filters than last time start again on the
    first page, with nothing selected."""
    page_key, filters_key = f"{key}:page", f"{key}:filters"
    if st.session_state.get(filters_key) != filters:
        if filters_key in st.session_state:  # other rows now: nothing stays selected
            clear_selection(key)
        st.session_state[filters_key] = filters
        st.session_state[page_key] = 0
    return max(0, int(st.session_state.get(page_key, 0)))


def page_window(key: str, total: int, *, filters: Hashable = None) -> tuple[int, int]:
    """The (offset, limit) of the page of ``key``'s list to show now, when the total is known
    first; a page past the end (fewer items now) becomes the last."""
    page = min(_page(key, filters), max(0, (total - 1) // PAGE_SIZE))
    st.session_state[f"{key}:page"] = page
    return page * PAGE_SIZE, PAGE_SIZE


def paged(key: str, fetch: Callable[[int, int], T], total: Callable[[T], int], **kw: Any) -> T:
    """One page of ``key``'s list from a query that counts as it reads (``fetch(offset,
    limit)``, whose result says its ``total``): read once, again only when the page asked for
    lies past the end now."""
    page = _page(key, kw.get("filters"))
    found = fetch(page * PAGE_SIZE, PAGE_SIZE)
    last = max(0, (total(found) - 1) // PAGE_SIZE)
    if page > last:
        page = last
        found = fetch(page * PAGE_SIZE, PAGE_SIZE)
    st.session_state[f"{key}:page"] = page
    return found


def _turn(key: str, step: int) -> None:
    st.session_state[f"{key}:page"] = int(st.session_state.get(f"{key}:page", 0)) + step
    # Row positions mean other items on another page: nothing stays selected.
    st.session_state[key] = _NOTHING_SELECTED


def pager(key: str, total: int, shown: int) -> None:
    """Under a list: which of how many it shows ("1–50 of 322"), previous and next page."""
    if total <= 0:
        return
    offset = int(st.session_state.get(f"{key}:page", 0)) * PAGE_SIZE
    text = _("{first}–{last} of {total}").format(
        first=number_text(offset + 1 if shown else 0),
        last=number_text(offset + shown),
        total=number_text(total),
    )
    if total <= PAGE_SIZE:
        st.caption(text)
        return
    left, back, forward = st.columns([6, 1, 1], vertical_alignment="center")
    left.caption(text)
    back.button(
        _("Previous"),
        key=f"{key}_previous",
        disabled=offset == 0,
        on_click=_turn,
        args=(key, -1),
        width="stretch",
    )
    forward.button(
        _("Next"),
        key=f"{key}_next",
        disabled=offset + shown >= total,
        on_click=_turn,
        args=(key, 1),
        width="stretch",
    )


def clear_selection(key: str) -> None:
    """Forget what was selected in ``key``'s table. Call before the table is drawn in this run
    (e.g. where an action that was submitted is carried out), or from a callback."""
    st.session_state[key] = _NOTHING_SELECTED


def selected_rows(event: Any, count: int) -> list[int]:
    """The positions of the selected rows that exist on this page."""
    selection = event.get("selection") if isinstance(event, dict) else None
    if selection is None:
        selection = getattr(event, "selection", None)
    if isinstance(selection, dict):
        rows = selection.get("rows") or []
    else:
        rows = getattr(selection, "rows", None) or []
    return [int(r) for r in rows if 0 <= int(r) < count]


def picked(key: str, event: Any, ids: list[str]) -> list[str]:
    """The ids of the selected rows, as the table showed them when the person clicked: a row
    position means the item that was drawn there, even if someone else's change has moved the
    items since. ``ids`` are this run's rows, remembered for the next click."""
    shown = list(st.session_state.get(f"{key}:shown", ids))
    chosen = [shown[r] for r in selected_rows(event, len(shown))]
    st.session_state[f"{key}:shown"] = list(ids)
    return chosen


def open_case(reference: str, *, table: str | None = None) -> None:
    """Go to the case page with this case. The clicked table forgets its selection, so coming
    back to the list does not open the case again."""
    if table is not None:
        st.session_state.pop(table, None)
    st.session_state["case"] = reference
    go("person")
