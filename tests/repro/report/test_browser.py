"""The report page in a real browser (headless Chromium): no broken image, no table wider
than the page, nothing loaded from outside; and the check itself catches those faults."""

import pytest

from tgd.repro.report.browser import find_chromium

pytestmark = pytest.mark.skipif(
    find_chromium() is None,
    reason="no Chromium on this machine (install the system package: apt-get install "
           "chromium); the browser check of the report page is skipped")


def test_report_page_passes_in_chromium(written, tmp_path):
    from tgd.repro.report.browser import check_page

    shot = tmp_path / "first.png"
    res = check_page(written / "report.html", width=1366, height=768, screenshot=shot)
    assert res["problems"] == []
    assert res["images"] >= 8 and res["tables"] >= 6
    assert shot.is_file() and shot.read_bytes()[:4] == b"\x89PNG"


def test_check_page_catches_broken_images_wide_tables_and_links(tmp_path):
    from tgd.repro.report.browser import check_page

    wide = "<table><tr>" + "".join(f"<td>cell_without_spaces_{i:03d}</td>"
                                   for i in range(60)) + "</tr></table>"
    page = tmp_path / "bad.html"
    page.write_text("<!DOCTYPE html><html><body><img alt='gone' src='missing.png'>"
                    f"<div style='overflow-x:auto'>{wide}</div></body></html>")
    res = check_page(page, width=800, height=600)
    text = "\n".join(res["problems"])
    assert "broken image: gone" in text
    assert "table 0" in text
    assert "asset not embedded: missing.png" in text
