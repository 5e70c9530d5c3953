"""Local SGD: workers step on their own shard and average their weights every N steps.

DDP all-reduces every gradient on every step. For embedding-heavy models (MF,
two-tower) that is megabytes per step against a step of a few milliseconds of
compute, and on CPU (gloo over TCP) the all-reduce, not the model, sets the pace.
Averaging the weights every ``period`` steps instead (Lin et al. 2020, "Don't use
large mini-batches, use local SGD"; torch's ``PeriodicModelAverager``) cuts that
traffic ``period``-fold. Each worker keeps its own optimiser state, so the result
is close to, not identical with, DDP's; ``averaging_period: 1`` (the default)
keeps exact DDP.

Weights are also averaged at the end of every epoch, so every worker validates
(and checkpoints) the same model and reaches the same early-stopping decision.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.distributed as dist
from torch import nn
from torch.distributed.algorithms.model_averaging.averagers import PeriodicModelAverager
from torch.distributed.algorithms.model_averaging.utils import average_parameters

AfterStep = Callable[[], None]


def uses_local_sgd(period: int, world_size: int) -> bool:
    """Local SGD only means something with more than one worker and a period above 1."""
    return period > 1 and world_size > 1


def periodic_averaging(model: nn.Module, period: int) -> AfterStep:
    """A hook for after every optimiser step: averages the weights every ``period`` steps.

    Every worker takes the same number of steps (their shards are equally long), so
    all of them reach each averaging step together.
    """
    averager = PeriodicModelAverager(period=period, warmup_steps=0)
    parameters = list(model.parameters())

    def after_step() -> None:
        averager.average_parameters(parameters)

    return after_step


def average_now(model: nn.Module) -> None:
    """Averages the weights across all workers at once (the end of an epoch)."""
    average_parameters(model.parameters(), dist.group.WORLD)
