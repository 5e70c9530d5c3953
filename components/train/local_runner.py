"""The same training as the Ray workers run, in this process: one worker, no Ray.

Used where Ray's start-up (tens of seconds on a small machine) would dominate:
the quality benchmark trains dozens of models, and the speed benchmark needs a
plain torch loop as its baseline. Early stopping and the kept weights follow the
Ray path exactly.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch

from kuberec.components.models import (
    Batch,
    EncodedData,
    Recommender,
    build_model,
    make_optimizer,
    make_sampler,
    resolve_device,
    train_epoch,
)
from kuberec.components.train.settings import TrainSettings
from kuberec.components.train.validation import Holdout, validate


def timed_epoch(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Iterable[Batch],
    *,
    epoch: int,
    device: torch.device,
    hparams: dict[str, Any],
    amp: bool,
    after_step: Callable[[], None] | None = None,
) -> tuple[float, float]:
    """(mean loss, seconds) of one epoch, under bf16 autocast when ``amp`` (GPU only).

    The one epoch step of the local loop, the Ray workers and the Tune trials.
    """
    started = time.perf_counter()
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
        loss = train_epoch(
            model, optimizer, batches, epoch=epoch, device=device,
            max_grad_norm=float(hparams.get("max_grad_norm", 0.0)), after_step=after_step,
        )  # fmt: skip
    return loss, time.perf_counter() - started


def fit_local(
    model_type: str,
    data: EncodedData,
    hparams: dict[str, Any],
    holdout: Holdout,
    settings: TrainSettings,
    *,
    device: str | None = None,
) -> tuple[Recommender, list[dict[str, Any]], int]:
    """(best model, per-epoch history, best epoch), stopping after ``patience`` stale epochs."""
    torch.manual_seed(settings.seed)
    target = resolve_device(device or ("cuda" if settings.use_gpu else "cpu"))
    model = build_model(model_type, data, hparams).to(target)
    optimizer = make_optimizer(model, hparams)
    sampler = make_sampler(model, data, hparams, seed=settings.seed)
    amp = settings.mixed_precision and target.type == "cuda"
    history: list[dict[str, Any]] = []
    best, best_epoch, stale, best_weights = -math.inf, -1, 0, None
    for epoch in range(settings.epochs):
        loss, seconds = timed_epoch(
            model, optimizer, sampler.batches(epoch), epoch=epoch, device=target,
            hparams=hparams, amp=amp,
        )  # fmt: skip
        scores = validate(model, data, holdout, settings.validation_k)
        value = scores.get(settings.validation_metric, -loss)
        if value > best + 1e-6:
            best, best_epoch, stale = value, epoch, 0
            best_weights = {n: t.detach().clone() for n, t in model.state_dict().items()}
        else:
            stale += 1
        history.append(
            {
                "epoch": epoch,
                "loss": loss,
                "seconds": seconds,
                "samples_per_second": sampler.n_units / seconds,
                **{f"val_{k}": v for k, v in scores.items()},
                "best_epoch": best_epoch,
            }
        )
        if stale >= settings.patience:
            break
    if best_weights is not None:
        model.load_state_dict(best_weights)
    return model.eval(), history, best_epoch
