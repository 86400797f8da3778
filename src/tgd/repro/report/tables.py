"""Numbers as the report prints them, and Markdown pipe tables.

A row of a results table holds metric means; when it also holds ``<metric>_ci`` = [lo, hi]
(95 % confidence interval over replicates) the cell reads ``mean [lo, hi]``. A missing or
``None`` value prints as :data:`DASH`. Values read back from ``results.json`` may be the
strings "inf", "-inf" or "nan" (JSON has no such numbers); they print as such.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

DASH = "—"


def fmt(v, nd: int = 2, *, scale: float = 1.0) -> str:
    """A number with ``nd`` decimals (after multiplying by ``scale``); text as it is."""
    if v is None:
        return DASH
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int) and scale == 1.0:
        return str(v)
    if isinstance(v, int | float):
        x = float(v) * scale
        return f"{x:.{nd}f}" if math.isfinite(x) else str(x)
    return str(v)


def fmt_ci(mean, ci, nd: int = 2, *, scale: float = 1.0) -> str:
    """``mean [lo, hi]``, or just the mean when ``ci`` is None."""
    if ci is None or mean is None:
        return fmt(mean, nd, scale=scale)
    lo, hi = ci
    return f"{fmt(mean, nd, scale=scale)} [{fmt(lo, nd, scale=scale)}, {fmt(hi, nd, scale=scale)}]"


def cell(row: Mapping, key: str, nd: int = 2, *, scale: float = 1.0) -> str:
    """``row[key]`` with its CI when the row has ``key + "_ci"``."""
    return fmt_ci(row.get(key), row.get(key + "_ci"), nd, scale=scale)


def replicates_note(rows: Sequence[Mapping]) -> str:
    """How the table's cells read: 'mean [95 % CI] over K replicates', or a single run."""
    ns = sorted({int(r["n_replicates"]) for r in rows if r.get("n_replicates") is not None})
    if not ns:
        return "One run: no confidence intervals over replicates."
    k = str(ns[0]) if len(ns) == 1 else f"{ns[0]}-{ns[-1]}"
    return f"Cells read mean [95 % CI] over {k} independent replicates."


def md_table(header: Sequence[str], rows: Sequence[Sequence]) -> list[str]:
    """A Markdown pipe table; cells that are not text go through :func:`fmt`."""
    def c(v) -> str:
        return (v if isinstance(v, str) else fmt(v)).replace("|", "\\|")

    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return out + ["| " + " | ".join(c(v) for v in r) + " |" for r in rows]
