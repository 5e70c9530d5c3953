"""What every training loop shares: set-up from the settings, the epoch step, early stopping.

The local backend (:func:`~kuberec.components.train.local_runner.fit_local`),
each Ray Train worker (``worker.py``) and each Tune trial (``tune.py``) run the
same loop: :func:`set_up_training`, then per epoch :func:`timed_epoch`, validate
on the holdout, and :class:`EarlyStopping` decides, on :func:`monitored`, when
to stop. They differ only in what they do around it (DDP and checkpoints on a
worker, a report to Tune per epoch in a trial), so a change to the loop is made
here once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from kuberec.components.models import Batch, EncodedData, resolve_device, train_epoch
from kuberec.components.models.local_fit import TrainingSetup, set_up
from kuberec.components.train.settings import TrainSettings


def set_up_training(
    model_type: str,
    data: EncodedData,
    hparams: Mapping[str, Any],
    settings: TrainSettings,
    *,
    device: str | torch.device | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> TrainingSetup:
    """:func:`~kuberec.components.models.local_fit.set_up` with the run's seed, device and
    mixed precision (``device`` None: CUDA when ``settings.use_gpu``, else the CPU)."""
    target = resolve_device(device or ("cuda" if settings.use_gpu else "cpu"))
    return set_up(model_type, data, hparams, seed=settings.seed, device=target,
                  mixed_precision=settings.mixed_precision, rank=rank,
                  world_size=world_size)  # fmt: skip


def timed_epoch(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Iterable[Batch],
    *,
    epoch: int,
    device: torch.device,
    hparams: Mapping[str, Any],
    amp: bool,
    after_step: Callable[[], None] | None = None,
) -> tuple[float, float]:
    """(mean loss, seconds) of one epoch, under bf16 autocast when ``amp`` (GPU only)."""
    started = time.perf_counter()
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
        loss = train_epoch(
            model, optimizer, batches, epoch=epoch, device=device,
            max_grad_norm=float(hparams.get("max_grad_norm", 0.0)), after_step=after_step,
        )  # fmt: skip
    return loss, time.perf_counter() - started


def monitored(scores: Mapping[str, float], metric: str, loss: float) -> float:
    """The value early stopping watches: the validation metric, or the negated loss when
    there is no holdout to validate on."""
    return scores.get(metric, -loss)


@dataclass
class EarlyStopping:
    """Best value so far and stale epochs since: stop after ``patience`` without improvement."""

    patience: int
    best: float = -math.inf
    best_epoch: int = -1
    stale: int = 0

    def observe(self, epoch: int, value: float) -> bool:
        """Record ``epoch``'s value; True when it improved on the best (by more than 1e-6)."""
        if value > self.best + 1e-6:
            self.best, self.best_epoch, self.stale = value, epoch, 0
            return True
        self.stale += 1
        return False

    @property
    def done(self) -> bool:
        return self.stale >= self.patience

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps to resume (``best``, ``best_epoch``, ``stale``)."""
        return {"best": self.best, "best_epoch": self.best_epoch, "stale": self.stale}


def epoch_record(
    epoch: int,
    loss: float,
    seconds: float,
    samples_per_second: float,
    scores: Mapping[str, float],
    best_epoch: int,
) -> dict[str, Any]:
    """One entry of a run's ``history``: the same keys from the local loop and a Ray worker."""
    return {
        "epoch": epoch,
        "loss": loss,
        "seconds": seconds,
        "samples_per_second": samples_per_second,
        **{f"val_{k}": v for k, v in scores.items()},
        "best_epoch": best_epoch,
    }
