"""The report folder: verdict table first, CI cells, one self-contained HTML page, the
Markdown linking PNGs, findings of the old and the new form, and ``tgd report``."""

import json
import re

import pytest

from tgd.cli import main
from tgd.repro.report.markdown import to_html
from tgd.repro.report.summary import effect_text, normalise, slug, summary_table
from tgd.repro.report.tables import cell, fmt, md_table, replicates_note

from .conftest import make_results


def test_summary_table_comes_first_with_effects_cis_and_links(written):
    md = (written / "report.md").read_text()
    first_section = md.split("\n## ")[1]
    assert first_section.startswith("Summary")
    table = [ln for ln in first_section.splitlines() if ln.startswith("|")]
    assert table[0] == "| family | finding | paper | ours: effect [95 % CI] | test | verdict |"
    assert "[TGD-net's lesion bias is closer to zero than FT-net's](#tgd-vs-ft-bias)" in table[2]
    assert "+1.20 points [+0.40, +2.00]" in table[2] and "✓ holds" in table[2]
    assert "? inconclusive" in table[3] and "✗ does not hold" in table[4]
    assert "| — | — | ✗ does not hold |" in table[4]  # no effect size nor test: dashes
    # every link of the summary has its anchor in the page
    html = (written / "report.html").read_text()
    for anchor in re.findall(r"\]\(#([\w\-]+)\)", md):
        assert f'id="{anchor}"' in html, anchor


def test_html_is_self_contained_colour_coded_and_has_ci_cells(written):
    html = (written / "report.html").read_text()
    srcs = re.findall(r'src="([^"]*)"', html)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert not re.search(r'<link[^>]+href=|src="(?!data:)', html)
    assert 'class="v v-holds"' in html and 'class="v v-inc"' in html
    assert 'class="v v-not"' in html
    assert '<b class="v v-holds">✓ holds</b>' in html  # the verdict of each finding's block
    assert '30.00<span class="ci">[29.00, 31.00]</span>' in html
    md = (written / "report.md").read_text()
    for name in re.findall(r"\]\((figures/[^)]+\.png)\)", md):
        assert (written / name).is_file()
    assert "figures/finetuning_v2_low_bmi_grid.png" in md
    assert "figures/finetuning_v2_low_bmi_profiles.png" in md
    assert "figures/tradeoff.png" in md and "figures/threshold_grid.png" in md
    assert "Cells read mean [95 % CI] over 3 independent replicates." in md
    assert "-20.00 [-21.00, -19.00]" in md


def test_results_json_round_trip_through_tgd_report(tmp_path, written, capsys):
    res = json.loads((written / "results.json").read_text())
    assert res["findings"][0]["verdict"] == "holds"
    assert "examples" not in res["finetuning"]
    out = tmp_path / "again"
    assert main(["report", str(written / "results.json"), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert "+1.20 points [+0.40, +2.00]" in md
    assert "grid.png" not in md  # no images in results.json: no image grids
    assert (out / "figures" / "threshold.png").is_file()
    assert "inf" in (out / "threshold.csv").read_text()  # "inf" read back as a number
    # never replaced silently, never into the folder of its own input
    assert main(["report", str(written / "results.json"), "--out", str(out)]) == 1
    assert "exists" in capsys.readouterr().err
    assert main(["report", str(written / "results.json"), "--out", str(written),
                 "--overwrite"]) == 1
    assert "image figures" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "nope.json"), "--out", str(tmp_path / "x")]) == 1
    bad = tmp_path / "bad.json"
    bad.write_text('{"a": 1}')
    assert main(["report", str(bad), "--out", str(tmp_path / "x")]) == 1
    assert "not a tgd results.json" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_old_findings_render_with_dashes(tmp_path):
    from tgd.repro.report import write_report

    res = make_results(images=False)
    res["findings"] = [{"claim": "TGD-net (parameter): lesion bias closer to zero",
                        "reproduced": True, "conditions": {"a": True}, "evidence": "x"},
                       {"claim": "kernel dropping", "reproduced": False,
                        "conditions": {"b": False}, "evidence": "y"}]
    md = (write_report(res, tmp_path / "r") / "report.md").read_text()
    assert "| — | [kernel dropping](#kernel-dropping) | — | — | — | ✗ does not hold |" in md
    assert "**1 of 2** findings hold" in md


def test_normalise_and_formatting():
    f = normalise([{"claim": "A b", "reproduced": True}, {"claim": "A b", "verdict": "holds"}])
    assert [x["id"] for x in f] == ["a-b", "a-b-1"] and f[0]["effect"] is None
    with pytest.raises(ValueError, match="verdict"):
        normalise([{"claim": "x", "verdict": "maybe"}])
    with pytest.raises(ValueError, match="neither"):
        normalise([{"claim": "x"}])
    assert effect_text({"effect": -1.234, "ci": [-2, -0.5], "unit": "%"}) == \
        "-1.23 % [-2.00, -0.50]"
    assert effect_text({"effect": None}) == "—"
    assert slug("Fine-tuning v1 -> v2 (paper Table 1, Fig. 5)") == \
        "fine-tuning-v1---v2-paper-table-1-fig-5"  # GitHub's anchor for that heading
    assert cell({"a": 0.123, "a_ci": [0.1, 0.2]}, "a", scale=100) == "12.30 [10.00, 20.00]"
    assert cell({}, "a") == "—" and fmt(float("inf")) == "inf" and fmt(3) == "3"
    assert replicates_note([{"n_replicates": 5}]).endswith("over 5 independent replicates.")
    assert replicates_note([{}]).startswith("One run")
    assert md_table(["a"], [["x|y"]])[2] == "| x\\|y |"
    assert len(summary_table(normalise([{"claim": "c", "reproduced": False}]))) == 3


def test_to_html_embeds_or_refuses_missing_images(tmp_path):
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    h = to_html("# T\n\n![cap](figures/a.png)\n\n| x | verdict |\n|---|---|\n"
                "| 1 [0, 2] | ✓ holds |\n", base=tmp_path)
    assert 'src="data:image/png;base64,iVBORw0KGgo="' in h
    assert "<figcaption>cap</figcaption>" in h and '<table class="summary">' in h
    assert '<td>1<span class="ci">[0, 2]</span></td>' in h
    with pytest.raises(ValueError, match="cannot be read"):
        to_html("![x](figures/missing.png)", base=tmp_path)
    linked = to_html("![x](figures/missing.png)")  # no base: left as a link
    assert 'src="figures/missing.png"' in linked


def test_report_folder_is_written_all_or_nothing(tmp_path, monkeypatch):
    from tgd.repro.report import write_report_folder, writer

    out = write_report_folder(make_results(images=False), tmp_path / "rep")
    before = (out / "report.md").read_text()
    res = make_results(images=False)
    res["preset"]["name"] = "changed"
    with pytest.raises(FileExistsError, match="--overwrite"):
        write_report_folder(res, out)

    def crash(*a, **k):
        raise RuntimeError("killed while writing")

    monkeypatch.setattr(writer, "definitions_section", crash)
    with pytest.raises(RuntimeError, match="killed"):
        write_report_folder(res, out, overwrite=True)
    assert (out / "report.md").read_text() == before  # the old report is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]  # no partial folder left
    monkeypatch.undo()
    write_report_folder(res, out, overwrite=True)
    assert "changed" in (out / "report.md").read_text()
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not a tgd report folder"):
        write_report_folder(res, other, overwrite=True)
    assert (other / "keep.txt").read_text() == "x"
