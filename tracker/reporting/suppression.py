"""Small-cell suppression and the statistics a figure may publish: pure rules, no database.

* Suppression: a count of 1 to 4 people is returned as ``None`` and its row flagged
  ``suppressed=True``. 0 is shown (it reveals nobody), except inside the breakdown of a group
  of 1 to 4. Where the parts of a row add up to a total that is shown, a single hidden part
  could be recovered by subtraction, so the next smallest part is hidden too (secondary
  suppression). Shares, means and percentiles are withheld whenever a count they derive from
  is withheld (a histogram too, when its total is). Suppression works within a row; totals
  across rows (e.g. all pathways) are not published, so nothing is subtracted across rows.
* Percentiles are "inclusive" linear interpolation between order statistics: exactly
  ``statistics.quantiles(values, n=4 or 10, method="inclusive")``, which is also numpy's
  default and PostgreSQL's ``percentile_cont``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

MIN_CELL = 5
# Percentiles and the mean of a handful of values give the values themselves away (five people:
# the quartiles are three of them, p90 and the mean the other two); they need more people.
MIN_FOR_STATISTICS = 20
ROUNDING_BASE = 5


def suppress(
    values: Mapping[str, int], equations: Iterable[Sequence[str]] = ()
) -> dict[str, int | None]:
    """Hide counts of 1-4, then hide more so that no hidden count follows from one equation.

    Each equation names a total first, then the parts that add up to it. When the total is a
    small cell its parts are hidden too, zeros included: "0 of these 3 found a job" says
    something about each of the three. Names starting with "_" are complements that are not
    returned (e.g. "not overdue"): the reader does not see them, but can work one out by
    subtraction once every other member of its equation is shown, so a complement of 1-4 also
    forces a shown member to be hidden.
    """
    hidden = {k for k, v in values.items() if 0 < v < MIN_CELL}
    eqs = [list(e) for e in equations]
    for eq in eqs:
        if eq[0] in hidden:
            hidden.update(eq)
    changed = True
    while changed:
        changed = False
        for eq in eqs:
            unknown = [k for k in eq if k in hidden or k[0] == "_"]
            if len(unknown) != 1 or unknown[0] not in hidden:
                continue
            candidates = [k for k in eq if k not in hidden and values[k] > 0 and k[0] != "_"]
            if candidates:
                hidden.add(min(candidates, key=lambda k: (values[k], k)))
                changed = True
    return {k: None if k in hidden else v for k, v in values.items() if k[0] != "_"}


def round_to_base(value: int) -> int | None:
    """A count rounded to the nearest multiple of 5 (halves up); 1-4 hidden like any cell."""
    if 0 < value < MIN_CELL:
        return None
    return ROUNDING_BASE * ((value + ROUNDING_BASE // 2) // ROUNDING_BASE)


def share_of(part: int | None, whole: int | None) -> float | None:
    """``part / whole`` to four places; withheld when the part is (or there is no whole)."""
    if part is None or not whole:
        return None
    return round(part / whole, 4)


def any_hidden(values: Mapping[str, int | None]) -> bool:
    """Whether a row has a withheld count: its ``suppressed`` flag."""
    return any(v is None for v in values.values())


# --- Distributions from frequency tables ------------------------------------------------------


def _order_stat(freq: Sequence[tuple[int, int]], index: int) -> int:
    """The value at position ``index`` (0-based) of the sorted data a frequency table describes."""
    seen = 0
    for value, n in freq:
        seen += n
        if index < seen:
            return value
    raise IndexError(index)


def quantile(freq: Sequence[tuple[int, int]], i: int, n: int) -> float:
    """The i-th of the n-quantiles, as ``statistics.quantiles(method="inclusive")`` computes it.

    ``freq`` is (value, count) sorted by value. Integer arithmetic as in the standard library,
    so the result is identical to it, not merely close.
    """
    total = sum(c for _, c in freq)
    m = total - 1
    j = i * m // n
    delta = i * m - j * n
    lo = _order_stat(freq, j)
    hi = _order_stat(freq, j + 1) if delta else lo
    return (lo * (n - delta) + hi * delta) / n
