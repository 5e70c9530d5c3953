"""The run directory: everything needed to reload, inspect and reproduce a training run.

::

    RUN_DIR/
      config.json      exact settings: model type, hyperparameters, training, data source
      model/           weights, id mappings, histories, item features (models.save_model)
      metrics.json     per-epoch history, best epoch, validation and later evaluations
      curves.png       loss and validation metric per epoch
      items.parquet    item ids and titles, for explanations in serving
      tensorboard/     the same curves as TensorBoard event files
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from tensorboardX import SummaryWriter

from kuberec.components.datasets.atomic import atomic_path
from kuberec.errors import ConfigError

CONFIG = "config.json"
METRICS = "metrics.json"
MODEL = "model"
CURVES = "curves.png"
ITEMS = "items.parquet"  # item_id, title: what serving shows in explanations


def write_json(path: Path, payload: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, default=str))


def read_json(run_dir: Path, name: str) -> dict[str, Any]:
    path = Path(run_dir) / name
    if not path.exists():
        raise ConfigError(
            f"{run_dir} is not a kuberec run directory (no {name}); train one with "
            "`kuberec train ... --out RUN_DIR`"
        )
    return json.loads(path.read_text())


def write_curves(run_dir: Path, history: list[dict[str, Any]], metric: str) -> Path | None:
    """Loss and validation metric per epoch, as a PNG and as TensorBoard scalars."""
    if not history:
        return None
    epochs = [r["epoch"] for r in history]
    writer = SummaryWriter(str(run_dir / "tensorboard"))
    for record in history:
        for key, value in record.items():
            if key != "epoch" and isinstance(value, int | float):
                writer.add_scalar(key, value, record["epoch"])
    writer.close()

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    left.plot(epochs, [r["loss"] for r in history], marker="o")
    left.set(title="training loss", xlabel="epoch", ylabel="loss")
    key = f"val_{metric}"
    if any(key in r for r in history):
        right.plot(epochs, [r.get(key) for r in history], marker="o", color="tab:green")
        best = max(history, key=lambda r: r.get(key, float("-inf")))
        right.axvline(best["epoch"], color="grey", linestyle="--", label="best (kept)")
        right.legend()
    right.set(title=f"validation {metric}@k", xlabel="epoch", ylabel=metric)
    figure.tight_layout()
    path = run_dir / CURVES
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
