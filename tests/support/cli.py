"""The ``kuberec`` command run as users run it: a real process, its output captured."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def kuberec(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kuberec.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
