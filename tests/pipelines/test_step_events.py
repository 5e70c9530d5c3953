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
"""


def _succeeded(tmp_path: Path, name: str, mib: int) -> dict[str, object]:
    events = tmp_path / f"{name}.jsonl"
    context = RunContext("run", "key", "file:///nowhere", str(tmp_path), events=str(events))
    subprocess.run([sys.executable, "-c", _STEP, context.to_json(), str(mib)], check=True)
    records = [json.loads(line) for line in events.read_text().splitlines()]
    assert [r["state"] for r in records] == ["started", "succeeded"]
    return records[-1]


def test_a_step_reports_the_peak_memory_it_held(tmp_path: Path) -> None:
    small = _succeeded(tmp_path, "small", 1)
    # 2 GiB: well above the step's import peak (torch: about 1 GiB, freed again), which
    # ``small`` reports and ``large`` may reuse
    large = _succeeded(tmp_path, "large", 2048)
    assert isinstance(large["seconds"], float)
    assert large["peak_rss_mb"] >= 2048  # type: ignore[operator]
    assert large["peak_rss_mb"] - small["peak_rss_mb"] >= 1024  # type: ignore[operator]
