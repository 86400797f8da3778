"""Every Python snippet of docs/integrations.md runs as written (in a scratch folder)."""

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "integrations.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def test_the_doc_has_the_three_snippets():
    assert len(BLOCKS) == 3
    assert "save_adaptation" in BLOCKS[0]
    assert "TGDCallback" in BLOCKS[1] and "TGDHandler" in BLOCKS[2]


@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=["adaptation", "lightning", "monai"])
def test_snippet_runs(index, tmp_path, monkeypatch):
    code = BLOCKS[index]
    if "lightning" in code:
        pytest.importorskip("lightning.pytorch")
    if "monai" in code:
        pytest.importorskip("monai.engines")
        pytest.importorskip("ignite")
    monkeypatch.chdir(tmp_path)  # the snippets write under ./tgd-runs
    exec(compile(code, f"{DOC}:block{index}", "exec"), {"__name__": "doc_snippet"})
