"""Write-then-rename helpers: a failure never leaves half a file or half a dataset."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary sibling path; on success it replaces ``target`` in one rename.

    Works for files and directories alike: whatever the caller creates at the
    yielded path becomes ``target``. On an exception the temporary is removed and
    ``target`` keeps its previous content.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    staged = tmp / target.name
    try:
        yield staged
        if target.is_dir() and not target.is_symlink():
            # A directory cannot be replaced while it holds files: move it aside,
            # and move it back should the final rename fail.
            backup = tmp / (target.name + ".old")
            os.replace(target, backup)
            try:
                os.replace(staged, target)
            except OSError:
                os.replace(backup, target)
                raise
        else:
            os.replace(staged, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
