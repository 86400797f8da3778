"""Plain statements comparing TGD's two gradient-masking modes (the paper's findings themselves
are decided on replicates in :mod:`tgd.repro.experiments.findings`)."""

from __future__ import annotations


def _row(rows, net, test):
    for r in rows:
        if r["net"] == net and r.get("test", test) == test:
            return r
    return None


def mode_comparison(ft: dict) -> list[str]:
    """Plain statements comparing TGD's two gradient-masking modes, from the numbers."""
    out = []
    info = {t["name"]: t for t in ft["training"]}
    a, p = info.get("TGD-net (activation)"), info.get("TGD-net (parameter)")
    if a and p and a["train_loss_last"] is not None and p["train_loss_last"] is not None:
        better = "parameter" if p["train_loss_last"] < a["train_loss_last"] else "activation"
        out.append(f"Final training loss: parameter mode {p['train_loss_last']:.4f}, activation "
                   f"mode {a['train_loss_last']:.4f} (lower in {better} mode).")
    for test in ("v2 low BMI", "v2 high BMI", "v1 low BMI"):
        rp, ra = _row(ft["rows"], "TGD-net (parameter)", test), _row(ft["rows"],
                                                                      "TGD-net (activation)",
                                                                      test)
        if rp and ra:
            hi = "parameter" if rp["psnr_db"] > ra["psnr_db"] else "activation"
            lo = "parameter" if rp["liver_cov_pct"] < ra["liver_cov_pct"] else "activation"
            out.append(f"{test}: PSNR {rp['psnr_db']:.2f} dB (parameter) vs {ra['psnr_db']:.2f}"
                       f" dB (activation), higher in {hi} mode; liver CoV "
                       f"{rp['liver_cov_pct']:.2f} % vs {ra['liver_cov_pct']:.2f} %, lower in "
                       f"{lo} mode.")
    return out
