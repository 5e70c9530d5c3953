"""Local SGD: workers drift apart between averaging steps and agree exactly at each one."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from kuberec.components.train.averaging import average_now, periodic_averaging, uses_local_sgd


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, port: int, period: int, steps: int, out: dict[int, list[bool]]) -> None:
    """Each rank nudges its weights by its own amount every step; reports, per step,
    whether all ranks hold the same weights after the hook ran."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    after_step = periodic_averaging(model, period)
    agreed = []
    for _ in range(steps):
        with torch.no_grad():
            for p in model.parameters():
                p.grad = torch.ones_like(p)  # the averager skips parameters without gradients
                p.add_(float(rank + 1))  # a local optimiser step that differs per rank
        after_step()
        flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
        gathered = [torch.empty_like(flat) for _ in range(2)]
        dist.all_gather(gathered, flat)
        agreed.append(bool(torch.equal(gathered[0], gathered[1])))
    model.weight.data.add_(float(rank))
    average_now(model)
    gathered = [torch.empty_like(model.weight) for _ in range(2)]
    dist.all_gather(gathered, model.weight.detach().contiguous())
    agreed.append(bool(torch.equal(gathered[0], gathered[1])))
    out[rank] = agreed
    dist.destroy_process_group()


def _run_two_workers(period: int, steps: int) -> list[bool]:
    manager = mp.get_context("spawn").Manager()
    out = manager.dict()
    mp.spawn(_worker, args=(_free_port(), period, steps, out), nprocs=2, join=True)
    assert out[0] == out[1]
    return list(out[0])


def test_workers_agree_exactly_at_every_averaging_step_and_drift_between() -> None:
    agreed = _run_two_workers(period=3, steps=7)
    # the averager averages at steps 0, 3, 6 (counting from 0); average_now at the end
    assert agreed == [True, False, False, True, False, False, True, True]


def test_local_sgd_needs_two_workers_and_a_period_above_one() -> None:
    assert uses_local_sgd(8, 2)
    assert not uses_local_sgd(1, 2), "period 1 is plain DDP"
    assert not uses_local_sgd(8, 1), "one worker has nobody to average with"


@pytest.mark.parametrize("period", [0, 1.5])
def test_an_averaging_period_that_is_not_a_positive_whole_number_is_refused(
    period: object,
) -> None:
    from kuberec.components.train.settings import TrainSettings
    from kuberec.errors import ConfigError

    with pytest.raises(ConfigError, match="averaging_period"):
        TrainSettings(averaging_period=period)  # type: ignore[arg-type]
