"""``kuberec evaluate RUN_DIR --protocol NAME``: the run's recipe under a published protocol.

A run's model has seen all of its data, so it cannot be scored on it. Evaluating
a run re-trains the same recipe (model type, hyperparameters, training settings)
on the protocol's train split and scores it on the test split; the result is
added to the run's ``metrics.json`` under ``evaluations``. The lists go through
the serving re-ranking stage (the served default unless ``ranking`` says
otherwise); several ``diversities`` add the accuracy-diversity curve and its plot.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kuberec.api.spec import DataSpec, RankingSpec
from kuberec.components.datasets.sources import load_source
from kuberec.components.evaluation import split
from kuberec.components.models.ranking import Ranker, model_signals, resolve
from kuberec.components.train.cold_eval import evaluate_cold, new_item_content, training_dataset
from kuberec.components.train.offline_eval import evaluate_split
from kuberec.components.train.ranking_curve import diversity_curve, plot_curves
from kuberec.components.train.run_dir import CONFIG, METRICS, read_json, write_json
from kuberec.components.train.settings import TrainSettings
from kuberec.components.train.trainer import train


def evaluate_run(
    run_dir: Path,
    protocol: str,
    *,
    k: int = 10,
    seed: int = 42,
    data_dir: Path | None = None,
    options: dict[str, Any] | None = None,
    ranking: RankingSpec | None = None,
    diversities: Sequence[float] | None = None,
    png: Path | None = None,
) -> dict[str, Any]:
    config = read_json(run_dir, CONFIG)
    dataset = load_source(DataSpec.model_validate(config["data"]["spec"]), data_dir=data_dir)
    parts = split(protocol, dataset.interactions, seed=seed, **(options or {}))
    settings = TrainSettings(**_settings_fields(config["training"]))
    # cold-items: the withheld items leave the catalogue too, and come back from their text
    train_set = (
        training_dataset(dataset, parts)
        if parts.withheld_items
        else dataset.with_interactions(parts.train)
    )
    embeddings = None
    if config.get("text_embeddings"):
        from kuberec.components.features.embeddings import embed_items

        embeddings = embed_items(train_set.items)
    outcome = train(
        config["model_type"], train_set, config["hparams"], settings,
        storage_path=Path(run_dir) / "ray-eval" / protocol, run_name=f"eval-{protocol}",
        text_embeddings=embeddings,
    )  # fmt: skip
    if parts.withheld_items:
        content = new_item_content(dataset, parts, outcome.data)
        cold = {
            c: evaluate_cold(
                outcome.model,
                outcome.data,
                parts,
                content,
                k,
                model_type=config["model_type"],
                hparams=config["hparams"],
                candidates=c,
                seed=seed,
            )
            for c in ("cold", "all")
        }
        return _record(
            run_dir,
            protocol,
            {
                **cold["cold"],
                **{
                    f"{key}_all": v
                    for key, v in cold["all"].items()
                    if key in ("hit_rate", "ndcg", "recall")
                },
                "train_seconds": round(outcome.seconds, 2),
            },
        )
    ranking = ranking or RankingSpec()
    data = outcome.data
    signals = model_signals(outcome.model, data.history, data.item_genres, data.item_first_seen())
    select = Ranker(resolve(ranking, data.item_index, signals, what="--ranking"), signals)
    result = evaluate_split(outcome.model, data, parts, dataset, k, select=select)
    result["ranking"] = ranking.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    result["train_seconds"] = round(outcome.seconds, 2)
    if diversities:
        curve = diversity_curve(outcome.model, data, parts, dataset, diversities, k=k, base=ranking)
        path = plot_curves(
            {f"{config['model_type']}, {protocol}": curve},
            png or Path(run_dir) / "ranking-curve.png",
            k=k,
        )
        result["ranking_curve"] = curve.to_dict(orient="records")
        result["ranking_curve_png"] = str(path)
    return _record(run_dir, protocol, result)


def _record(run_dir: Path, protocol: str, result: dict[str, Any]) -> dict[str, Any]:
    """``result`` added to the run's ``metrics.json`` under ``evaluations``."""
    metrics = read_json(run_dir, METRICS)
    metrics.setdefault("evaluations", {})[protocol] = result
    write_json(Path(run_dir) / METRICS, metrics)
    return result


def _settings_fields(values: dict[str, Any]) -> dict[str, Any]:
    fields = dict(values)
    if fields.get("storage_path"):
        fields["storage_path"] = Path(fields["storage_path"])
    return fields
