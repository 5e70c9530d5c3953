"""The ``kuberec`` command as users run it: real processes, real files."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from .conftest import ROOT, SHARED_DATASETS


def kuberec(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kuberec.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_the_main_job_ends_serving_and_a_rerun_trains_nothing(tmp_path: Path) -> None:
    """The README's main command, end to end: pipeline, gate, server; then idempotent; stop."""
    job = ROOT / "examples" / "movielens-100k.yaml"
    try:
        result = kuberec("run", str(job), "--data-dir", str(SHARED_DATASETS), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        workdir = tmp_path / ".kuberec" / "movielens-100k"
        status = json.loads((workdir / "status.json").read_text())["status"]
        assert status["phase"] == "Serving" and status["gate"]["accepted"]
        assert "RecommenderJob movielens-100k: Serving" in result.stdout
        request = urllib.request.Request(
            status["url"] + "/recommend", data=json.dumps({"user_id": 1, "k": 3}).encode(),
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.load(response)
        assert answer["model_version"] == status["champion"]["version"]
        assert answer["items"][0]["explanation"].startswith("because you liked ")
        assert "item " not in answer["items"][0]["explanation"]  # titles, not ids

        again = kuberec("run", str(job), "--data-dir", str(SHARED_DATASETS), cwd=tmp_path)
        assert again.returncode == 0, again.stderr
        assert len(list((workdir / "runs").iterdir())) == 1
    finally:
        kuberec("stop", "movielens-100k", cwd=tmp_path)
    stopped = json.loads((workdir / "status.json").read_text())["status"]["url"]
    with pytest.raises(OSError):
        urllib.request.urlopen(stopped + "/healthz", timeout=5)


def test_an_invalid_job_names_the_field_and_exits_non_zero(tmp_path: Path) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(
        "apiVersion: kuberec.io/v1alpha1\nkind: RecommenderJob\nmetadata: {name: demo}\n"
        "spec:\n  data: {movielens: ml-7k}\n"
    )
    result = kuberec("run", str(job), cwd=tmp_path)
    assert result.returncode == 2
    assert "spec.data.movielens" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_missing_dataset_copy_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    result = kuberec(
        "data", "summary", "--dataset", "ml-1m", "--data-dir", str(tmp_path), cwd=tmp_path
    )
    assert result.returncode == 2
    assert "ratings.dat not found" in result.stderr and "Traceback" not in result.stderr


def test_features_commands_work_on_generic_files(tmp_path: Path) -> None:
    interactions = tmp_path / "events.csv"
    interactions.write_text(
        "customer,sku,ts\n"
        "alice,boots,2024-01-01T10:00:00Z\nalice,socks,2024-01-02T10:00:00Z\n"
        "bob,boots,2024-01-03T10:00:00Z\n"
    )
    store = ["--store", str(tmp_path / "data")]
    columns = [
        *("--column", "user_id=customer"),
        *("--column", "item_id=sku"),
        *("--column", "timestamp=ts"),
    ]
    steps = [
        ["features", "ingest", "--interactions", str(interactions), *columns, *store,
         "--no-text-embeddings"],
        ["features", "apply", *store],
        ["features", "materialize", *store],
    ]  # fmt: skip
    for step in steps:
        result = kuberec(*step, cwd=tmp_path)
        assert result.returncode == 0, (step, result.stderr)
    online = kuberec("features", "online", *store, "alice", "carol", cwd=tmp_path)
    assert online.returncode == 0, online.stderr
    assert "socks" in online.stdout

    labels = tmp_path / "labels.csv"
    labels.write_text("user_id,item_id,timestamp\nalice,socks,2024-01-02T10:00:00Z\n")
    out = tmp_path / "frame.parquet"
    frame = kuberec(
        "features", "training-frame", *store, "--labels", str(labels), "--out", str(out),
        cwd=tmp_path,
    )  # fmt: skip
    assert frame.returncode == 0, frame.stderr
    row = pd.read_parquet(out).iloc[0]
    assert row["user_profile__interaction_count"] == 1  # only the boots, before the label
    assert row["item_profile__popularity"] == 0


def test_synthetic_data_is_written_and_summarised(tmp_path: Path) -> None:
    out = tmp_path / "synthetic"
    made = kuberec(
        "data", "synthetic", "--users", "200", "--items", "100", "--interactions", "3000",
        "--out", str(out), cwd=tmp_path,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    summary = kuberec("data", "summary", "--synthetic", str(out), cwd=tmp_path)
    assert summary.returncode == 0, summary.stderr
    assert '"interactions": 3000' in summary.stdout


@pytest.mark.parametrize("flag", ["--column", "--column=user_id"])
def test_a_malformed_column_mapping_is_explained(tmp_path: Path, flag: str) -> None:
    interactions = tmp_path / "i.csv"
    interactions.write_text("user_id,item_id\n1,2\n")
    args = ["data", "summary", "--interactions", str(interactions)]
    args += [flag, "user_id"] if flag == "--column" else [flag]
    result = kuberec(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert "expected KEY=VALUE" in result.stderr
