"""Train a model: in this process (``backend: local``) or with Ray Train, locally or on a cluster.

The driver validates everything before Ray starts (model type, hyperparameters,
settings), carves the early-stopping holdout, encodes the data once and puts it
in the object store; workers train their shard under DDP and report per-epoch
metrics with checkpoints. The best weights come back from the last checkpoint.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import ray
import torch
from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer
from ray.util.queue import Empty, Queue
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from kuberec.components.datasets.canonical import Dataset
from kuberec.components.models import EncodedData, Recommender, build_model, resolve_hparams
from kuberec.components.models.errors import TrainingError
from kuberec.components.models.registry import model_type as lookup_model_type
from kuberec.components.train.local_runner import fit_local
from kuberec.components.train.settings import TrainSettings
from kuberec.components.train.validation import carve_holdout, encode_holdout
from kuberec.components.train.worker import STATE_FILE, train_loop_per_worker

log = logging.getLogger(__name__)


@dataclass
class TrainOutcome:
    """A trained model, the data to save with it (all training interactions), and its run."""

    model: Recommender
    model_type: str
    hparams: dict[str, Any]
    data: EncodedData
    history: list[dict[str, Any]]
    best_epoch: int
    validation: dict[str, float]
    seconds: float
    checkpoint: str | None


def train(
    model_type: str,
    dataset: Dataset,
    hparams: dict[str, Any] | None,
    settings: TrainSettings,
    *,
    storage_path: Path,
    run_name: str = "kuberec-train",
    text_embeddings: np.ndarray | None = None,
) -> TrainOutcome:
    """Fit ``model_type`` on ``dataset``, stopping early on a holdout of it when trained.

    Models built in closed form (baselines, EASE) have nothing to stop, so they
    are fitted on all of ``dataset``, with no holdout and no Ray.
    """
    started = time.perf_counter()
    resolved = resolve_hparams(model_type, hparams)
    if not lookup_model_type(model_type).trainable:
        data = EncodedData.from_dataset(dataset, text_embeddings=text_embeddings)
        model = build_model(model_type, data, resolved).eval()
        return TrainOutcome(
            model, model_type, resolved, data, [], -1, {}, time.perf_counter() - started, None
        )
    sequence = lookup_model_type(model_type).cls.family == "sequence"
    fit_set, held_out = carve_holdout(
        dataset, settings.validation_fraction, settings.seed, last=sequence
    )
    data = EncodedData.from_dataset(fit_set, text_embeddings=text_embeddings)
    holdout = encode_holdout(data, held_out)
    served = _served_data(dataset, data, held_out, text_embeddings)

    if settings.backend == "local":
        model, history, best_epoch = fit_local(model_type, data, resolved, holdout, settings)
        scores = _validation_at(history, best_epoch)
        return TrainOutcome(
            model, model_type, resolved, served, history, best_epoch, scores,
            time.perf_counter() - started, None,
        )  # fmt: skip

    ensure_ray(settings)
    progress = Queue(actor_options={"num_cpus": 0})
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "model_type": model_type,
            "hparams": resolved,
            "settings": settings,
            "data_ref": ray.put(data),
            "holdout_ref": ray.put(holdout),
            "progress": progress,
        },
        scaling_config=ScalingConfig(
            num_workers=settings.workers,
            use_gpu=settings.use_gpu,
            resources_per_worker=_worker_resources(settings),
        ),
        run_config=RunConfig(
            # A unique name: Ray resumes a run whose name it finds in the storage path,
            # which would silently continue an unrelated earlier run.
            name=f"{run_name}-{uuid.uuid4().hex[:8]}",
            storage_path=str(Path(storage_path).resolve()),
            failure_config=FailureConfig(max_failures=settings.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            logging_config=LoggingConfig(log_level="WARNING"),
        ),
    )
    try:
        result = _fit_with_progress(trainer, progress, f"training {model_type}", settings.epochs)
    except Exception as exc:  # Ray wraps worker errors in its own types
        raise _training_error(exc, storage_path) from exc
    if result.error is not None:
        raise _training_error(result.error, storage_path)
    model, saved = _best_model(model_type, data, resolved, result.checkpoint)
    history = list(saved["history"])
    scores = _validation_at(history, int(saved["best_epoch"]))
    return TrainOutcome(
        model, model_type, resolved, served, history, int(saved["best_epoch"]), scores,
        time.perf_counter() - started, result.checkpoint.path if result.checkpoint else None,
    )  # fmt: skip


def _validation_at(history: list[dict[str, Any]], epoch: int) -> dict[str, float]:
    """The validation metrics recorded for ``epoch`` (the kept one), without their prefix."""
    record = next((r for r in history if r["epoch"] == epoch), {})
    return {k.removeprefix("val_"): v for k, v in record.items() if k.startswith("val_")}


def _served_data(
    dataset: Dataset, fit: EncodedData, held_out: Any, text_embeddings: np.ndarray | None
) -> EncodedData:
    """The encoding saved with the model: every training interaction, holdout included.

    The model learns from ``fit``; recommending must still exclude (and sequence
    models read) all of a user's history. Ids map identically: both encodings
    take their ids from the same user and item tables.
    """
    if len(held_out) == 0:
        return fit
    full = EncodedData.from_dataset(dataset, text_embeddings=text_embeddings)
    if list(full.user_index.ids) != list(fit.user_index.ids) or list(full.item_index.ids) != list(
        fit.item_index.ids
    ):
        raise TrainingError("the holdout changed the id mappings; report this as a bug")
    return full


def ensure_ray(settings: TrainSettings) -> None:
    """Connect to the cluster named in the settings, or start a quiet local instance."""
    if ray.is_initialized():
        return
    address = settings.ray_address or os.environ.get("RAY_ADDRESS")
    options: dict[str, Any] = {
        "include_dashboard": False,
        # Progress and errors come back through the trainer; worker chatter stays in Ray's logs.
        "log_to_driver": os.environ.get("KUBEREC_RAY_LOGS") == "1",
        "logging_level": logging.WARNING,
    }
    if address:
        ray.init(address=address, **options)
    else:
        needed = settings.workers * settings.cpus_per_worker
        ray.init(num_cpus=max(os.cpu_count() or 1, int(np.ceil(needed))), **options)


def _fit_with_progress(trainer: TorchTrainer, queue: Queue, label: str, epochs: int) -> Any:
    """Run ``trainer.fit()`` while showing the epochs rank 0 reports, with their metrics."""
    outcome: dict[str, Any] = {}

    def fit() -> None:
        try:
            outcome["result"] = trainer.fit()
        except Exception as exc:  # re-raised in the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=fit, daemon=True)
    thread.start()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("{task.fields[status]}"))  # fmt: skip
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task(label, total=epochs, status="starting Ray workers")
        while thread.is_alive() or not queue.empty():
            try:
                record = queue.get(timeout=0.5)
            except Empty:
                continue
            status = f"loss {record['loss']:.4f}" + "".join(
                f"  {k} {v:.4f}" for k, v in record.items() if k.startswith("val_ndcg")
            )
            bar.update(task, completed=record["epoch"] + 1, status=status)
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def _worker_resources(settings: TrainSettings) -> dict[str, float]:
    resources = {"CPU": settings.cpus_per_worker}
    if settings.use_gpu:
        resources["GPU"] = settings.gpus_per_worker
    return resources


def _best_model(
    model_type: str, data: EncodedData, hparams: dict[str, Any], checkpoint: Any
) -> tuple[Recommender, dict[str, Any]]:
    if checkpoint is None:
        raise TrainingError(f"{model_type}: training ended without a checkpoint")
    with checkpoint.as_directory() as folder:
        saved = torch.load(Path(folder) / STATE_FILE, map_location="cpu", weights_only=False)
    model = build_model(model_type, data, hparams)
    model.load_state_dict(saved["best_weights"] or saved["model"])
    return model.eval(), saved


def _training_error(error: BaseException, storage_path: Path) -> TrainingError:
    """The worker's own message (e.g. a diverged loss), not Ray's wrapper around it."""
    text = str(error)
    for line in text.splitlines():
        if "TrainingError:" in line or "training diverged" in line:
            message = line.split("TrainingError:", 1)[-1].strip()
            return TrainingError(f"{message} (checkpoints kept under {storage_path})")
    first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return TrainingError(f"training failed on Ray: {first} (checkpoints under {storage_path})")
