"""The findings as the report shows them: a one-glance summary table and one block per finding.

A finding is a dict with ``id`` (anchor slug), ``claim``, ``paper`` (the paper's statement or
number, text), ``effect`` (float or None), ``ci`` ([lo, hi] or None, 95 %), ``unit``,
``verdict`` ("holds" | "does not hold" | "inconclusive"), ``conditions`` ({name: bool}) and
``evidence`` (text). Findings of the older form (``reproduced`` bool, no effect, CI or
verdict) are read too: :func:`normalise` maps ``reproduced`` to "holds" / "does not hold"
and fills the missing fields with None, which prints as a dash.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from tgd.repro.report.tables import DASH, md_table

VERDICTS = ("holds", "does not hold", "inconclusive")
# the verdict as the Markdown prints it; markdown.to_html colours the cells holding these
VERDICT_TEXT = {"holds": "✓ holds", "does not hold": "✗ does not hold",
                "inconclusive": "? inconclusive"}


def slug(text: str) -> str:
    """GitHub's heading anchor: lower case, only letters, digits, '_', '-' and spaces kept,
    spaces made '-'."""
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def normalise(findings: Sequence[Mapping]) -> list[dict]:
    """Every finding in the current form, with a unique ``id``."""
    out, seen = [], set()
    for i, f in enumerate(findings):
        verdict = f.get("verdict")
        if verdict is None:
            if "reproduced" not in f:
                raise ValueError(f"finding {i} has neither 'verdict' nor 'reproduced': "
                                 f"{sorted(f)}")
            verdict = "holds" if f["reproduced"] else "does not hold"
        if verdict not in VERDICTS:
            raise ValueError(f"finding {i}: verdict must be one of {VERDICTS}, got {verdict!r}")
        ci = f.get("ci")
        if ci is not None and len(ci) != 2:
            raise ValueError(f"finding {i}: ci must be [lo, hi], got {ci!r}")
        base = f.get("id") or slug(f["claim"])[:60].strip("-") or f"finding-{i + 1}"
        fid, k = base, 1
        while fid in seen:
            fid, k = f"{base}-{k}", k + 1
        seen.add(fid)
        out.append({**f, "id": fid, "verdict": verdict, "paper": f.get("paper"),
                    "effect": f.get("effect"), "ci": ci, "unit": f.get("unit") or "",
                    "conditions": dict(f.get("conditions") or {}),
                    "evidence": f.get("evidence") or ""})
    return out


def effect_text(f: Mapping, nd: int = 2) -> str:
    """``+1.23 points [0.40, 2.10]``; a dash without an effect size."""
    if f.get("effect") is None:
        return DASH
    unit = f" {f['unit']}" if f.get("unit") else ""
    e = f"{float(f['effect']):+.{nd}f}{unit}"
    if f.get("ci") is not None:
        lo, hi = f["ci"]
        e += f" [{float(lo):+.{nd}f}, {float(hi):+.{nd}f}]"
    return e


def counts_line(findings: Sequence[Mapping]) -> str:
    n = {v: sum(f["verdict"] == v for f in findings) for v in VERDICTS}
    return (f"**{n['holds']} of {len(findings)}** findings hold, {n['does not hold']} do not "
            f"hold, {n['inconclusive']} inconclusive.")


def test_text(f: Mapping) -> str:
    """The test that decided a finding: name, margin, p (Holm-adjusted where it was)."""
    t = f.get("test")
    if not t:
        return DASH
    name = {"superiority": "superiority", "non_inferiority": "non-inferiority",
            "equivalence": "TOST"}.get(t.get("name"), t.get("name") or DASH)
    if t.get("name") in ("non_inferiority", "equivalence") and t.get("margin") is not None:
        name += f", margin {t['margin']:g}"
    p = t.get("p_holm") if t.get("p_holm") is not None else t.get("p")
    if p is not None:
        name += f", p{'(Holm)' if t.get('p_holm') is not None else ''} = {p:.2g}"
    return name


def summary_table(findings: Sequence[Mapping]) -> list[str]:
    """Markdown lines: family, finding (a link to its block), the paper's claim, our effect
    size with its 95 % CI, the test, verdict."""
    rows = [[f.get("family") or DASH, f"[{f['claim']}](#{f['id']})", f["paper"] or DASH,
             effect_text(f), test_text(f), VERDICT_TEXT[f["verdict"]]] for f in findings]
    return md_table(["family", "finding", "paper", "ours: effect [95 % CI]", "test", "verdict"],
                    rows)


def finding_blocks(findings: Sequence[Mapping]) -> list[str]:
    """One block per finding: anchor, heading, verdict line, conditions as a list, evidence."""
    md: list[str] = []
    for f in findings:
        md += [f'<a id="{f["id"]}"></a>', "", f"#### {f['claim']}", "",
               f"effect {effect_text(f)} · {test_text(f)} · **{VERDICT_TEXT[f['verdict']]}** · "
               f"paper: {f['paper'] or DASH}", ""]
        if f.get("reason"):
            md += [f"Margin: {f['reason']}.", ""]
        md += [f"- {'✓' if ok else '✗'} {name}" for name, ok in f["conditions"].items()]
        if f["conditions"]:
            md.append("")
        if f["evidence"]:
            md += [f["evidence"].rstrip(".") + ".", ""]
    return md

