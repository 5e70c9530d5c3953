"""SASRec starts where the paper's code starts: small item vectors beside its positions.

With N(0, 0.1) item vectors (x sqrt(dim) at the input) the positions were drowned and
the first epochs on Amazon Games went to shrinking random vectors (validation HR@10
0.11 after one epoch on a slice, 0.33 with this init; benchmarks/RESULTS.md).
"""

from __future__ import annotations

import torch

from kuberec.components.models.encoded import DataSchema
from kuberec.components.models.registry import create_model


def _sasrec(n_items: int, dim: int = 50) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(
        "sasrec", DataSchema(n_users=3, n_items=n_items), {"dim": dim, "n_heads": 1, "loss": "bce"}
    )


def test_item_vectors_start_xavier_normal_scaled_by_the_catalogue() -> None:
    model = _sasrec(n_items=5000)
    items = model.item_embeddings.weight[:-1]
    expected = (2.0 / (5001 + 50)) ** 0.5
    assert abs(float(items.std()) - expected) < 0.05 * expected


def test_item_vectors_at_the_input_start_below_the_positions_on_a_large_catalogue() -> None:
    model = _sasrec(n_items=20_000)  # Games: 23,715
    scaled_items = float(model.item_embeddings.weight[:-1].std()) * model.scale
    assert scaled_items < float(model.positions.weight.std())


def test_the_pad_row_starts_at_zero() -> None:
    model = _sasrec(n_items=50)
    assert torch.count_nonzero(model.item_embeddings.weight[model.pad]) == 0
