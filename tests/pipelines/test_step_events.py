"""A step's ``succeeded`` event says how long it took and the most memory its process held,
so a run's events show which step decides whether a job fits the machine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from kuberec.pipelines.context import RunContext

_STEP = """
import sys
import numpy as np
from kuberec.pipelines.context import RunContext
from kuberec.pipelines.steps import recorded

context = RunContext.from_json(sys.argv[1])
with recorded("train", context):
    block = np.ones(int(sys.argv[2]) * 2**20 // 8)  # touched: resident, not just reserved
    del block  # gone before the step ends: only a peak still counts it
"""


def _succeeded(tmp_path: Path, name: str, mib: int) -> dict[str, object]:
    events = tmp_path / f"{name}.jsonl"
    context = RunContext("run", "key", "file:///nowhere", str(tmp_path), events=str(events))
    subprocess.run([sys.executable, "-c", _STEP, context.to_json(), str(mib)], check=True)
    records = [json.loads(line) for line in events.read_text().splitlines()]
    assert [r["state"] for r in records] == ["started", "succeeded"]
    return records[-1]


def test_a_step_reports_the_peak_memory_it_held(tmp_path: Path) -> None:
    # 4 GiB, freed inside the step: above any import peak (torch: 1-1.7 GiB, varying by
    # install), so only the step's peak, not its memory at the end, reaches it
    small = _succeeded(tmp_path, "small", 1)
    large = _succeeded(tmp_path, "large", 4096)
    assert isinstance(large["seconds"], float)
    assert large["peak_rss_mb"] >= 4096  # type: ignore[operator]
    assert small["peak_rss_mb"] < 4096  # type: ignore[operator]
