"""The same training as the Ray workers run, in this process: one worker, no Ray.

Used where Ray's start-up (tens of seconds on a small machine) would dominate:
the quality benchmark trains dozens of models, and the speed benchmark needs a
plain torch loop as its baseline. The loop is ``loop.py``'s, as on a Ray worker,
so early stopping and the kept weights follow the Ray path exactly.
"""

from __future__ import annotations

from typing import Any

from kuberec.components.models import EncodedData, Recommender
from kuberec.components.train.loop import (
    EarlyStopping,
    epoch_record,
    monitored,
    set_up_training,
    timed_epoch,
)
from kuberec.components.train.settings import TrainSettings
from kuberec.components.train.validation import Holdout, validate


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
    run = set_up_training(model_type, data, hparams, settings, device=device)
    model, sampler = run.model, run.sampler
    stopping = EarlyStopping(settings.patience)
    history: list[dict[str, Any]] = []
    best_weights = None
    for epoch in range(settings.epochs):
        loss, seconds = timed_epoch(
            model, run.optimizer, sampler.batches(epoch), epoch=epoch, device=run.device,
            hparams=hparams, amp=run.amp,
        )  # fmt: skip
        scores = validate(model, data, holdout, settings.validation_k)
        if stopping.observe(epoch, monitored(scores, settings.validation_metric, loss)):
            best_weights = {n: t.detach().clone() for n, t in model.state_dict().items()}
        history.append(epoch_record(epoch, loss, seconds, sampler.n_units / seconds, scores,
                                    stopping.best_epoch))  # fmt: skip
        if stopping.done:
            break
    if best_weights is not None:
        model.load_state_dict(best_weights)
    return model.eval(), history, stopping.best_epoch
