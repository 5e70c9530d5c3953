"""The loop every Ray Train worker runs: its data shard, DDP, validation, checkpoints.

The loop itself (set-up, epoch step, early stopping) is ``loop.py``'s, as in the
local backend and the Tune trials; what is a worker's own is DDP or local SGD,
averaging the loss over workers, and the checkpoint it reports every epoch.

Every worker validates the same synchronised weights on the same holdout, so all
of them reach the same early-stopping decision without extra communication.
Rank 0 alone writes checkpoints, which hold the latest state (to resume after a
worker failure) and the best weights so far (what early stopping returns).
"""

from __future__ import annotations

import contextlib
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import ray
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist

from kuberec.components.train.averaging import average_now, periodic_averaging, uses_local_sgd
from kuberec.components.train.loop import (
    EarlyStopping,
    epoch_record,
    monitored,
    set_up_training,
    timed_epoch,
)
from kuberec.components.train.settings import TrainSettings
from kuberec.components.train.validation import Holdout, validate

STATE_FILE = "state.pt"
#: The early-stopping fields a checkpoint keeps (EarlyStopping.state()).
STOPPING_KEYS = ("best", "best_epoch", "stale")


def train_loop_per_worker(config: dict[str, Any]) -> None:
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    data = ray.get(config["data_ref"])
    holdout: Holdout = ray.get(config["holdout_ref"])
    hparams: dict[str, Any] = config["hparams"]
    settings: TrainSettings = config["settings"]

    run = set_up_training(config["model_type"], data, hparams, settings,
                          device=ray.train.torch.get_device(), rank=rank,
                          world_size=world)  # fmt: skip
    model, optimizer, sampler, device = run.model, run.optimizer, run.sampler, run.device
    state = _restore(model, optimizer)
    stopping = EarlyStopping(settings.patience, **{k: state[k] for k in STOPPING_KEYS})
    local_sgd = uses_local_sgd(settings.averaging_period, world)
    if local_sgd:  # no DDP: the workers sync by averaging weights (averaging.py)
        wrapped = ray.train.torch.prepare_model(model, parallel_strategy=None)
        after_step = periodic_averaging(model, settings.averaging_period)
    else:
        # Buffers hold fixed data tables: broadcasting them every step would be wasted traffic.
        kwargs = {"forward_sync_buffers": False} if world > 1 else None
        wrapped = ray.train.torch.prepare_model(model, parallel_strategy_kwargs=kwargs)
        after_step = None

    for epoch in range(state["epoch"] + 1, settings.epochs):
        _chaos(settings, epoch, rank)
        if world > 1 and dist.is_initialized():
            # Start together: rank 0's checkpoint write of the previous epoch is not
            # the next epoch's training time (rank 1 would wait for it in step one).
            dist.barrier()
        loss, seconds = timed_epoch(
            wrapped, optimizer, sampler.batches(epoch), epoch=epoch, device=device,
            hparams=hparams, amp=run.amp, after_step=after_step,
        )  # fmt: skip
        if local_sgd:  # every worker validates and keeps the same weights
            started = time.perf_counter()
            average_now(model)
            seconds += time.perf_counter() - started  # part of the epoch's training cost
        scores = validate(model, data, holdout, settings.validation_k)
        # No holdout: the (negated) loss decides, averaged so every worker decides alike.
        loss = _mean_over_workers(loss, device, world)
        if stopping.observe(epoch, monitored(scores, settings.validation_metric, loss)):
            state["best_weights"] = {
                n: t.detach().cpu().clone() for n, t in model.state_dict().items()
            }
        state.update(stopping.state(), epoch=epoch)
        # examples per second over all workers: each trains on its 1/world shard
        throughput = _mean_over_workers(sampler.n_units / seconds, device, world)
        record = epoch_record(epoch, loss, seconds, throughput, scores, stopping.best_epoch)
        state["history"].append(record)
        _report(record, state, model, optimizer, rank)
        if rank == 0 and config.get("progress") is not None:
            config["progress"].put(record)
        if stopping.done:
            break


def _chaos(settings: TrainSettings, epoch: int, rank: int) -> None:
    """Fault injection for resilience tests: rank 0 dies once at the given epoch.

    ``extra.chaos_fail_at_epoch`` and ``extra.chaos_marker`` (a file that records
    the failure happened, so the restarted worker carries on).
    """
    extra = settings.extra or {}
    at, marker = extra.get("chaos_fail_at_epoch"), extra.get("chaos_marker")
    if at is None or marker is None or rank != 0 or epoch != int(at) or Path(marker).exists():
        return
    Path(marker).touch()
    raise RuntimeError(f"chaos: worker {rank} killed at epoch {epoch}")


def _restore(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The state to resume from after a failure, or a fresh one."""
    checkpoint = ray.train.get_checkpoint()
    fresh: dict[str, Any] = {
        "epoch": -1, "best": -math.inf, "best_epoch": -1, "stale": 0, "history": [],
        "best_weights": None,
    }  # fmt: skip
    if checkpoint is None:
        return fresh
    with checkpoint.as_directory() as folder:
        saved = torch.load(Path(folder) / STATE_FILE, map_location="cpu", weights_only=False)
    model.load_state_dict(saved.pop("model"))
    optimizer.load_state_dict(saved.pop("optimizer"))
    return {**fresh, **saved}


def _report(
    record: dict[str, Any],
    state: dict[str, Any],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    rank: int,
) -> None:
    metrics = dict(record)  # the full history travels in the checkpoint, not in every report
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = None
        if rank == 0:
            payload = {
                **state,
                "model": {n: t.detach().cpu() for n, t in model.state_dict().items()},
                "optimizer": optimizer.state_dict(),
            }
            torch.save(payload, Path(folder) / STATE_FILE)
            checkpoint = ray.train.Checkpoint.from_directory(folder)
        ray.train.report(metrics, checkpoint=checkpoint)


def _mean_over_workers(value: float, device: torch.device, world: int) -> float:
    if world == 1 or not dist.is_initialized():
        return float(value)
    tensor = torch.tensor([float(value)], device=device)
    with contextlib.suppress(RuntimeError):
        dist.all_reduce(tensor)
    return float(tensor.item()) / world
