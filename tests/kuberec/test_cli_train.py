"""``kuberec train``, ``recommend`` and ``evaluate`` as users run them (real processes)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from kuberec.components.datasets.synthetic import SyntheticSpec, generate
from tests.support.cli import kuberec
from tests.support.jobs import job_yaml


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A product team's files: string ids, renamed columns, an items table."""
    folder = tmp_path_factory.mktemp("files")
    data = generate(SyntheticSpec(200, 120, 5000, seed=3))
    inter = data.interactions.assign(
        customer=lambda f: "c" + f["user_id"].astype(str),
        sku=lambda f: "sku-" + f["item_id"].astype(str),
    )[["customer", "sku", "rating", "timestamp"]]
    inter.to_parquet(folder / "events.parquet")
    items = data.items.assign(item_id=lambda f: "sku-" + f["item_id"].astype(str))
    items.assign(genres=items["genres"].map("|".join))[["item_id", "title", "genres"]].to_csv(
        folder / "items.csv", index=False
    )
    pd.DataFrame({"user_id": ["c1", "c2", "nobody"]}).to_csv(folder / "who.csv", index=False)
    return {"events": folder / "events.parquet", "items": folder / "items.csv",
            "who": folder / "who.csv"}  # fmt: skip


@pytest.fixture(scope="module")
def run_dir(files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "run"
    result = kuberec(
        "train", "--interactions", str(files["events"]), "--items", str(files["items"]),
        "--column", "user_id=customer", "--column", "item_id=sku",
        "--model", "mf", "--set", "dim=16", "--set", "epochs=3", "--set", "backend=local",
        "--no-text-embeddings", "--out", str(out), cwd=out.parent,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return out


def test_train_writes_the_run_with_the_exact_config(run_dir: Path) -> None:
    config = json.loads((run_dir / "config.json").read_text())
    assert config["model_type"] == "mf" and config["hparams"]["dim"] == 16
    assert config["training"]["epochs"] == 3 and config["training"]["backend"] == "local"
    assert config["data"]["spec"]["interactions"]["columns"] == {
        "user_id": "customer", "item_id": "sku"
    }  # fmt: skip
    ids = json.loads((run_dir / "model" / "user_index.json").read_text())
    assert ids["kind"] == "str" and "c1" in ids["ids"], "ids kept as given"


def test_recommend_excludes_training_items_and_reports_unknown_users(
    run_dir: Path, files: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "recs.parquet"
    result = kuberec(
        "recommend", str(run_dir), "--users", str(files["who"]), "--k", "7", "--out", str(out),
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "1 user(s) unknown" in result.stderr and "nobody" in result.stderr
    recs = pd.read_parquet(out)
    assert list(recs.columns) == ["user_id", "item_id", "rank", "score"]
    assert set(recs["user_id"]) == {"c1", "c2"}
    assert recs.groupby("user_id")["rank"].apply(list).map(lambda r: r == list(range(1, 8))).all()
    seen = pd.read_parquet(files["events"])
    seen = set(zip(seen["customer"], seen["sku"], strict=True))
    assert not any((u, i) in seen for u, i in zip(recs["user_id"], recs["item_id"], strict=True))


def test_evaluate_adds_the_protocol_to_the_run_metrics(run_dir: Path, tmp_path: Path) -> None:
    result = kuberec("evaluate", str(run_dir), "--protocol", "stratified", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    stratified = metrics["evaluations"]["stratified"]
    assert 0 < stratified["ndcg"] <= 1 and stratified["test_users"] > 0
    assert {s["slice"] for s in stratified["slices"]} >= {"all"}


def test_recommend_applies_the_ranking_given(
    run_dir: Path, files: dict[str, Path], tmp_path: Path
) -> None:
    plain, ranked = tmp_path / "plain.csv", tmp_path / "ranked.csv"
    common = ["recommend", str(run_dir), "--users", str(files["who"]), "--k", "5"]
    assert kuberec(*common, "--out", str(plain), cwd=tmp_path).returncode == 0
    before = pd.read_csv(plain)
    first = before[before["user_id"] == "c1"]["item_id"].tolist()
    result = kuberec(*common, "--out", str(ranked), "--ranking", f"pinned={first[4]}",
                     "--ranking", f"excluded={first[0]}", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    after = pd.read_csv(ranked)
    assert after[after["user_id"] == "c1"]["item_id"].iloc[0] == first[4]
    assert first[0] not in after["item_id"].tolist()


def test_a_bad_ranking_weight_is_a_one_line_error(run_dir: Path, tmp_path: Path) -> None:
    result = kuberec("recommend", str(run_dir), "--out", str(tmp_path / "r.csv"),
                     "--ranking", "diversity=2", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: --ranking.diversity: Input should be less than or equal to 1"
    ]


@pytest.mark.slow
def test_evaluate_sweeps_diversity_and_plots_the_curve(run_dir: Path, tmp_path: Path) -> None:
    png = tmp_path / "curve.png"
    result = kuberec(
        "evaluate",
        str(run_dir),
        "--protocol",
        "stratified",
        "--ranking",
        "diversity=0,1",
        "--png",
        str(png),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert png.stat().st_size > 0
    curve = json.loads((run_dir / "metrics.json").read_text())["evaluations"]["stratified"][
        "ranking_curve"
    ]
    assert [point["diversity"] for point in curve] == [0.0, 1.0]
    assert curve[1]["ild_similarity"] > curve[0]["ild_similarity"]


def test_train_from_a_job_file_uses_its_model_and_training(
    tmp_path: Path, files: dict[str, Path]
) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(
        job_yaml("shop") + "spec:\n  data:\n    interactions:\n"
        f"      uri: {files['events']}\n      columns: {{user_id: customer, item_id: sku}}\n"
        "  model: {type: popularity}\n  training: {backend: local}\n"
    )
    result = kuberec("train", "-f", str(job), "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "run" / "config.json").read_text())["model_type"] == "popularity"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "deepfm"], "unknown model type 'deepfm'; valid: ["),
        (["--model", "mf", "--set", "dim=0"], "mf hyperparameter 'dim': must be >= 1"),
        (["--model", "mf", "--set", "colour=blue"], "unknown hyperparameter(s) ['colour']"),
        (["--set", "workers=0"], "workers: must be >= 1"),
    ],
)
def test_bad_training_input_is_explained(
    args: list[str], message: str, files: dict[str, Path], tmp_path: Path
) -> None:
    result = kuberec(
        "train", "--interactions", str(files["events"]), "--column", "user_id=customer",
        "--column", "item_id=sku", *args, "--out", str(tmp_path / "run"), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2, result.stdout
    assert message in result.stderr and "Traceback" not in result.stderr


def test_evaluate_reports_empty_data_after_filtering(tmp_path: Path) -> None:
    events = tmp_path / "low.csv"
    events.write_text("user_id,item_id,rating\n1,1,1\n1,2,2\n2,1,1\n2,3,2\n")
    trained = kuberec("train", "--interactions", str(events), "--model", "popularity",
                      "--out", str(tmp_path / "run"), cwd=tmp_path)  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    result = kuberec("evaluate", str(tmp_path / "run"), "--protocol", "random-811", cwd=tmp_path)
    assert result.returncode == 2
    assert "no interactions have a rating >= 3.0" in result.stderr


def test_an_existing_run_is_never_overwritten(run_dir: Path, files: dict[str, Path]) -> None:
    result = kuberec("train", "--interactions", str(files["events"]), "--column",
                     "user_id=customer", "--column", "item_id=sku", "--model", "popularity",
                     "--out", str(run_dir), cwd=run_dir.parent)  # fmt: skip
    assert result.returncode == 2 and "already holds a run" in result.stderr
