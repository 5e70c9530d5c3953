"""The model side of every training loop: one set-up, one epoch step, and a plain fit.

:func:`set_up` (seed, model, optimiser, the worker's shard of the sampler) and
:func:`train_epoch` are what every loop runs: the local backend and the Ray
workers (``components/train/local_runner.py``, ``worker.py``, through
``components/train/loop.py``), the Tune trials (``tune.py``) and :func:`fit`,
the settings-free loop the model tests train with. :func:`train_epoch` is
written against ``nn.Module`` so it works unchanged on a
``DistributedDataParallel``-wrapped model: calling the wrapper runs the model's
``forward`` (its loss) with gradient synchronisation. Buffers hold fixed data
tables (identical on every rank), so a worker wraps with
``forward_sync_buffers=False``; every parameter takes part in every loss, so
``find_unused_parameters`` stays False.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from kuberec.components.models.base import Batch, Recommender
from kuberec.components.models.encoded import EncodedData
from kuberec.components.models.errors import TrainingError
from kuberec.components.models.registry import HParams, build_model, resolve_hparams
from kuberec.components.models.registry import model_type as lookup_model_type
from kuberec.components.models.samplers import make_sampler
from kuberec.errors import ConfigError, DataError


@dataclass(frozen=True)
class EpochRecord:
    """One epoch of training: what a progress line, a metrics log or a Ray report shows."""

    epoch: int
    loss: float
    steps: int
    seconds: float


#: Called after every epoch with its record and the model; returning False stops training.
EpochCallback = Callable[[EpochRecord, Recommender], bool | None]


@dataclass(frozen=True)
class TrainingSetup:
    """A trainable model on its device, its optimiser and this worker's sampler."""

    model: Recommender
    optimizer: torch.optim.Optimizer
    sampler: Any
    device: torch.device
    #: bf16 autocast: asked for and on a GPU
    amp: bool


def set_up(
    model_type: str,
    data: EncodedData,
    hparams: Mapping[str, Any],
    *,
    seed: int,
    device: torch.device,
    mixed_precision: bool = False,
    rank: int = 0,
    world_size: int = 1,
) -> TrainingSetup:
    """Seed, build ``model_type`` (resolved ``hparams``) on ``device``, its optimiser and the
    sampler of shard ``rank`` of ``world_size``: the same seed gives the same start."""
    torch.manual_seed(seed)
    model = build_model(model_type, data, hparams).to(device)
    optimizer = make_optimizer(model, hparams)
    sampler = make_sampler(model, data, hparams, seed=seed, rank=rank, world_size=world_size)
    return TrainingSetup(model, optimizer, sampler, device,
                         mixed_precision and device.type == "cuda")  # fmt: skip


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` picks CUDA when available, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def make_optimizer(model: nn.Module, hparams: Mapping[str, Any]) -> torch.optim.Optimizer:
    return torch.optim.Adam(
        model.parameters(),
        lr=float(hparams["lr"]),
        weight_decay=float(hparams["weight_decay"]),
    )


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Iterable[Batch],
    *,
    epoch: int = 0,
    device: torch.device | None = None,
    max_grad_norm: float = 0.0,
    after_step: Callable[[], None] | None = None,
) -> float:
    """One pass over ``batches``; returns the mean batch loss (NaN when there were none).

    ``after_step`` runs after every optimiser step (local SGD's weight averaging).
    Raises TrainingError at the first non-finite loss, before it corrupts the weights.
    """
    model.train()
    if device is None:
        device = next(model.parameters()).device
    total, steps = 0.0, 0
    for step, batch in enumerate(batches):
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        optimizer.zero_grad(set_to_none=True)
        loss = model(batch)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise _diverged(model, optimizer, value, epoch, step)
        loss.backward()
        if max_grad_norm > 0:
            nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizer.step()
        if after_step is not None:
            after_step()
        total, steps = total + value, steps + 1
    return total / steps if steps else math.nan


def _diverged(
    model: nn.Module, optimizer: torch.optim.Optimizer, value: float, epoch: int, step: int
) -> TrainingError:
    name = type(getattr(model, "module", model)).__name__
    lr = optimizer.param_groups[0]["lr"]
    return TrainingError(
        f"{name}: training diverged, the loss is {value} at epoch {epoch}, step {step}; "
        f"lower the learning rate (lr is {lr:g}, try {lr / 10:g}) or set max_grad_norm "
        "to clip gradients"
    )


def fit(
    model_type: str,
    data: EncodedData,
    hparams: Mapping[str, object] | None = None,
    *,
    seed: int = 0,
    epochs: int = 10,
    device: str | torch.device | None = None,
    on_epoch: EpochCallback | None = None,
) -> tuple[Recommender, list[EpochRecord]]:
    """Build and train ``model_type`` on ``data``; the same seed gives the same weights.

    Baselines are built from the data and returned with an empty history.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ConfigError(f"epochs must be an integer >= 0, got {epochs!r}")
    resolved: HParams = resolve_hparams(model_type, hparams)
    target = resolve_device(device)
    records: list[EpochRecord] = []
    if not lookup_model_type(model_type).trainable:
        torch.manual_seed(seed)
        return build_model(model_type, data, resolved).to(target).eval(), records
    setup = set_up(model_type, data, resolved, seed=seed, device=target)
    model, optimizer, sampler = setup.model, setup.optimizer, setup.sampler
    if epochs and len(sampler) == 0:
        raise DataError(
            f"{model_type}: no training examples (sequence models need users with at least "
            "2 interactions); check the training split"
        )
    for epoch in range(epochs):
        started = time.perf_counter()
        loss = train_epoch(
            model,
            optimizer,
            sampler.batches(epoch),
            epoch=epoch,
            device=target,
            max_grad_norm=float(resolved["max_grad_norm"]),
        )
        record = EpochRecord(epoch, loss, len(sampler), time.perf_counter() - started)
        records.append(record)
        if on_epoch is not None and on_epoch(record, model) is False:
            break
    return model.eval(), records
