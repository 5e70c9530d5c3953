"""Registry validation and the local training loop: clear errors, reproducible runs, DDP reuse."""

from __future__ import annotations

import gc
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from kuberec.components.datasets.synthetic import SyntheticSpec, generate
from kuberec.components.models import (
    MODEL_TYPES,
    EncodedData,
    TrainingError,
    build_model,
    fit,
    make_optimizer,
    make_sampler,
    resolve_hparams,
    score_users,
    train_epoch,
)
from kuberec.errors import ConfigError, KuberecError


@pytest.fixture(scope="module")
def data() -> EncodedData:
    return EncodedData.from_dataset(generate(SyntheticSpec(30, 20, 300, seed=5)))


def test_unknown_model_type_lists_the_valid_ones(data: EncodedData) -> None:
    with pytest.raises(ConfigError, match=r"unknown model type 'bert4rec'; valid: \[.*'mf'"):
        build_model("bert4rec", data, {})


@pytest.mark.parametrize(
    ("name", "hparams", "message"),
    [
        ("mf", {"dim": 0}, "mf hyperparameter 'dim': must be >= 1, got 0"),
        ("mf", {"dim": 8.5}, "'dim': must be an integer >= 1"),
        ("mf", {"dim": True}, "'dim': must be an integer >= 1"),
        ("mf", {"lr": 0}, "'lr': must be > 0.0, got 0"),
        ("mf", {"lr": float("nan")}, "'lr': must be > 0.0"),
        ("sasrec", {"dropout": 1.0}, "'dropout': must be >= 0.0 and < 1.0"),
        (
            "sasrec",
            {"loss": "mse"},
            r"'loss': must be one of \['auto', 'ce', 'bce', 'gbce', 'sampled_",
        ),
        ("gru4rec", {"gbce_t": 1.5}, "'gbce_t': must be >= 0.0 and <= 1.0"),
        ("multvae", {"beta_cap": -1}, "'beta_cap': must be >= 0.0"),
        ("sasrec", {"dim": 10, "n_heads": 3}, "'n_heads': must divide dim"),
        ("ncf", {"mlp_layers": []}, "'mlp_layers': must be a non-empty list"),
        ("two_tower", {"logq": "yes"}, "'logq': must be true or false"),
    ],
)
def test_out_of_range_hyperparameters_name_the_key_and_rule(
    name: str, hparams: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve_hparams(name, hparams)


def test_unknown_hyperparameter_is_named_with_the_valid_keys() -> None:
    with pytest.raises(ConfigError, match=r"unknown hyperparameter\(s\) \['dimension'\].*valid"):
        resolve_hparams("mf", {"dimension": 8})


@pytest.mark.parametrize("name", list(MODEL_TYPES))
def test_defaults_pass_their_own_rules(name: str) -> None:
    assert resolve_hparams(name) == {**MODEL_TYPES[name].defaults}


def test_same_seed_gives_identical_weights_and_scores(data: EncodedData) -> None:
    hparams = {"dim": 8, "history_length": 5, "dropout": 0.1}
    runs = [fit("two_tower", data, hparams, seed=3, epochs=2, device="cpu")[0] for _ in range(2)]
    for (name, a), b in zip(
        runs[0].state_dict().items(), runs[1].state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    users = np.arange(data.n_users)
    assert torch.equal(
        score_users(runs[0], data.history, users), score_users(runs[1], data.history, users)
    )


def test_different_seeds_give_different_weights(data: EncodedData) -> None:
    a, _ = fit("mf", data, {"dim": 8}, seed=1, epochs=1, device="cpu")
    b, _ = fit("mf", data, {"dim": 8}, seed=2, epochs=1, device="cpu")
    assert not torch.equal(a.item_factors.weight, b.item_factors.weight)


def test_divergence_names_epoch_step_and_suggests_a_lower_learning_rate(
    data: EncodedData,
) -> None:
    with pytest.raises(TrainingError) as caught:
        fit("mf", data, {"dim": 8, "lr": 1e30, "batch_size": 16}, seed=0, epochs=3, device="cpu")
    message = str(caught.value)
    assert isinstance(caught.value, KuberecError)
    assert "epoch" in message and "step" in message and "lower the learning rate" in message


class _PoisonedAt(torch.nn.Module):
    """A model whose loss turns NaN at one step: divergence without waiting for it."""

    def __init__(self, inner: torch.nn.Module, step: int) -> None:
        super().__init__()
        self.inner, self.step, self.calls = inner, step, 0

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        loss = self.inner(batch)
        self.calls += 1
        return loss * math.nan if self.calls - 1 == self.step else loss


def test_train_epoch_reports_the_first_non_finite_loss(data: EncodedData) -> None:
    hparams = resolve_hparams("mf", {"dim": 4, "batch_size": 50})
    model = _PoisonedAt(build_model("mf", data, hparams), step=2)
    optimizer = make_optimizer(model, hparams)
    batches = make_sampler(model.inner, data, hparams, seed=0).batches(0)
    with pytest.raises(TrainingError, match=r"loss is nan at epoch 4, step 2; lower the learn"):
        train_epoch(model, optimizer, batches, epoch=4)


def test_returning_false_from_on_epoch_stops_training(data: EncodedData) -> None:
    _, history = fit(
        "mf",
        data,
        {"dim": 4},
        seed=0,
        epochs=5,
        device="cpu",
        on_epoch=lambda record, model: record.epoch < 1,
    )
    assert [r.epoch for r in history] == [0, 1]


def test_baselines_are_built_without_training(data: EncodedData) -> None:
    model, history = fit("item_knn", data, {"neighbours": 5}, seed=0, epochs=3, device="cpu")
    assert history == [] and not model.trainable


def test_bad_epochs_is_a_config_error(data: EncodedData) -> None:
    with pytest.raises(ConfigError, match="epochs must be an integer >= 0"):
        fit("mf", data, {}, epochs=-1)


def test_train_epoch_runs_a_ddp_wrapped_model(data: EncodedData, tmp_path: Path) -> None:
    """The Ray Train path: one gloo rank, the same epoch function, a DDP wrapper."""
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1
    )
    wrapped: DistributedDataParallel | None = None
    try:
        hparams = resolve_hparams("sasrec", {"dim": 8, "history_length": 6, "batch_size": 16})
        torch.manual_seed(0)
        model = build_model("sasrec", data, hparams)
        wrapped = DistributedDataParallel(model, forward_sync_buffers=False)
        sampler = make_sampler(model, data, hparams, seed=0, rank=0, world_size=1)
        optimizer = make_optimizer(wrapped, hparams)
        losses = [train_epoch(wrapped, optimizer, sampler.batches(e), epoch=e) for e in range(3)]
    finally:
        # DDP's reducer holds the gloo group: freed after the group is destroyed, its
        # destructor joined gloo's threads and hung CI once; free it while the group lives.
        wrapped = None
        gc.collect()
        dist.destroy_process_group()
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]
