"""Kill a real ``tgd`` run with SIGKILL once it has written its first resume checkpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tgd.training.loop import RESUME_DIR


def sigkill_after_first_checkpoint(args: list[str], out: Path, timeout: float = 180) -> None:
    """Run ``python -m tgd.cli *args`` (writing to ``out``), SIGKILL it as soon as a resume
    checkpoint exists, and check that it left no finished model behind."""
    proc = subprocess.Popen([sys.executable, "-m", "tgd.cli", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + timeout
    try:
        while not list((out / RESUME_DIR).glob("step-*.json")):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.time() < deadline, "no resume checkpoint before the deadline"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert not (out / "model.json").exists()
