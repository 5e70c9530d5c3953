"""The ``kuberec`` command as users run it: real processes, real files."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from tests.support.cli import kuberec
from tests.support.jobs import job_yaml
from tests.support.paths import ROOT, SHARED_DATASETS


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
    job.write_text(job_yaml("demo", "spec:\n  data: {movielens: ml-7k}\n"))
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


# --- bad input: one line on stderr, exit 2, the message printed as given ------------------------

EXAMPLE = ROOT / "examples" / "movielens-100k.yaml"


def _main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    from kuberec.cli import main

    code = main(list(args))
    return code, capsys.readouterr().err


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_a_binary_job_file_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = tmp_path / "job.yaml"
    job.write_bytes(bytes(range(256)) * 4)
    code, err = _main(capsys, "run", str(job))
    assert code == 2
    assert "not a text file" in _one_error_line(err)


def test_a_directory_as_the_job_file_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _main(capsys, "run", str(tmp_path))
    assert code == 2
    assert "is a directory" in _one_error_line(err)


def test_brackets_in_a_path_are_printed_as_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "a[/]b[bold]"  # the folders `a[` and `]b[bold]`
    folder.mkdir(parents=True)
    code, err = _main(capsys, "run", str(folder / "job.yaml"))
    assert code == 2
    assert f"{folder / 'job.yaml'}: no such job file" in _one_error_line(err)


def test_the_job_name_pattern_is_printed_with_its_brackets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(EXAMPLE.read_text().replace("name: movielens-100k", "name: Bad_Name", 1))
    code, err = _main(capsys, "run", str(job))
    assert code == 2
    assert "'^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$'" in _one_error_line(err)


def test_a_multi_line_yaml_error_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = tmp_path / "job.yaml"
    job.write_text("spec: [unclosed\n")
    code, err = _main(capsys, "run", str(job))
    assert code == 2
    assert "not valid YAML" in _one_error_line(err)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('{"status": {"phase": "Serv', "not valid JSON"),
        ("[]", "a JSON list, expected an object"),
        ('{"status": {"phase": 3}}', "status.phase: Input should be"),
        ('{"status": [], "generations": {}}', "'status' is a list"),
        ('{"status": {}, "generations": {"abc": "one"}}', "'generations' must map"),
    ],
    ids=["truncated", "a-list", "wrong-phase", "status-a-list", "generations-text"],
)
@pytest.mark.parametrize("command", ["run", "status"])
def test_a_corrupt_status_file_is_reported_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, problem: str, command: str
) -> None:
    (tmp_path / "status.json").write_text(content)
    job = str(EXAMPLE) if command == "run" else "movielens-100k"
    options = ["--no-serve"] if command == "run" else []
    code, err = _main(capsys, command, job, "--workdir", str(tmp_path), *options)
    assert code == 2
    line = _one_error_line(err)
    assert f"{tmp_path / 'status.json'} is not a kuberec status file" in line and problem in line
    assert (tmp_path / "status.json").read_text() == content, "nothing stored is rewritten"


def test_a_run_into_another_jobs_directory_is_refused_with_its_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from kuberec.api.spec import load_job
    from kuberec.api.status import JobStatus
    from kuberec.operator.local.store import save_status

    other = load_job(EXAMPLE)
    race = tmp_path / "race.yaml"
    race.write_text(EXAMPLE.read_text().replace("name: movielens-100k", "name: race", 1))
    save_status(tmp_path / "wd", other, JobStatus(phase="Serving", url="http://127.0.0.1:1"))
    before = (tmp_path / "wd" / "status.json").read_text()
    code, err = _main(capsys, "run", str(race), "--workdir", str(tmp_path / "wd"), "--no-serve")
    assert code == 2
    line = _one_error_line(err)
    assert "holds the job 'movielens-100k', not 'race'" in line and "another --workdir" in line
    assert (tmp_path / "wd" / "status.json").read_text() == before
    code, err = _main(capsys, "stop", "race", "--workdir", str(tmp_path / "wd"))
    assert code == 2 and "holds the job 'movielens-100k'" in _one_error_line(err)


def test_a_second_run_on_a_held_directory_exits_2_naming_the_holder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import os

    from kuberec.api.spec import load_job
    from kuberec.operator.local.job_dir import claim

    with claim(tmp_path, load_job(EXAMPLE)):
        code, err = _main(capsys, "run", str(EXAMPLE), "--workdir", str(tmp_path), "--no-serve")
    assert code == 2
    line = _one_error_line(err)
    assert f"in use by kuberec run pid {os.getpid()} (job movielens-100k)" in line
    assert "--wait" in line
    assert not (tmp_path / "status.json").exists(), "the second run changed nothing"


def test_a_damaged_status_can_be_restored_from_the_previous_good_copy(tmp_path: Path) -> None:
    from kuberec.api.spec import load_job
    from kuberec.api.status import JobStatus
    from kuberec.errors import ConfigError
    from kuberec.operator.local.store import load_status, save_status

    job = load_job(EXAMPLE)
    save_status(tmp_path, job, JobStatus(phase="Training"))
    save_status(tmp_path, job, JobStatus(phase="Serving"))
    (tmp_path / "status.json").write_text('{"status": {"pha')  # a crash of the disk, or a hand
    with pytest.raises(ConfigError, match=r"restore the previous copy with `mv .*status.json.bak"):
        load_status(tmp_path)
    (tmp_path / "status.json.bak").replace(tmp_path / "status.json")
    assert load_status(tmp_path) == JobStatus(phase="Training")


def test_wait_queues_behind_the_holder_of_the_directory(tmp_path: Path) -> None:
    import threading

    from kuberec.api.spec import load_job
    from kuberec.operator.local.job_dir import claim

    job = load_job(EXAMPLE)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with claim(tmp_path, job):
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(10)
    threading.Timer(1.0, release.set).start()
    with claim(tmp_path, job, wait_s=30):
        assert release.is_set(), "the lock was taken while the first holder still had it"
    holder.join()


def test_a_synthetic_job_too_big_for_this_machine_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(
        job_yaml("huge")
        + "spec:\n  data: {synthetic: {users: 1000000000000, items: 100, interactions: 1000}}\n"
    )
    code, err = _main(capsys, "run", str(job), "--workdir", str(tmp_path / "wd"), "--no-serve")
    assert code == 2
    assert "needs about 476,837.2 GiB of memory" in _one_error_line(err)
    code, err = _main(capsys, "data", "synthetic", "--users", "1000000000000", "--items", "10",
                      "--interactions", "10", "--out", str(tmp_path / "out"))  # fmt: skip
    assert code == 2 and "lower users, items or interactions" in _one_error_line(err)
