"""The committed reproduction report is what the main job gives at the commit it names: it must
not be older than the last commit that changed code that makes its numbers."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REPORTS = ["docs/reproduction"]
# every package the experiments import (they denoise their test studies with tgd.inference):
# the library's, and the reproduction's simulators, training data, ROIs, quality and statistics
NUMBER_CODE = ["src/tgd/data", "src/tgd/models", "src/tgd/targeting",
               "src/tgd/training", "src/tgd/evaluation", "src/tgd/losses", "src/tgd/inference",
               "src/tgd/workflows", "src/tgd/repro/sim", "src/tgd/repro/datasets.py",
               "src/tgd/repro/rois.py", "src/tgd/repro/quality.py",
               "src/tgd/repro/statistics.py", "src/tgd/repro/experiments"]


def test_the_code_behind_the_numbers_exists():
    """A path that moved away would silently drop out of the check below."""
    missing = [p for p in NUMBER_CODE if not (ROOT / p).exists()]
    assert not missing, f"NUMBER_CODE names paths that do not exist: {missing}"


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                          timeout=30)


@pytest.fixture(scope="module")
def git_history():
    if shutil.which("git") is None or _git("rev-parse", "HEAD").returncode != 0:
        pytest.skip("not a git checkout: the report's commit cannot be checked")
    if _git("rev-parse", "--is-shallow-repository").stdout.strip() == "true":
        pytest.skip("shallow clone: the history needed to compare commits is missing")


@pytest.mark.parametrize("folder", REPORTS)
def test_committed_report_is_not_older_than_the_code_behind_its_numbers(folder, git_history):
    res = json.loads((ROOT / folder / "results.json").read_text())
    commit = res["environment"]["git_commit"]
    assert commit and "modified" not in commit, (
        f"{folder} was generated from a working tree with uncommitted changes to src/ "
        f"({commit}): regenerate it from a clean commit")
    assert res["preset"]["name"] == "quick" and not res["preset"].get("notes", "").count(
        "changed:"), f"{folder} must be the unmodified quick preset (what ./scripts/main runs)"
    last = _git("log", "-1", "--format=%H", "--", *NUMBER_CODE).stdout.strip()
    assert last, "no commit touches the code behind the numbers"
    ok = _git("merge-base", "--is-ancestor", last, commit).returncode == 0
    assert ok, (f"{folder} was generated at {commit[:9]}, before {last[:9]} changed code that "
                f"makes its numbers: regenerate it with ./scripts/main --out {folder} "
                "--overwrite at the latest commit")
