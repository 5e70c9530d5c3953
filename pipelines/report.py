"""The evaluate step's report: champion vs challenger as a Markdown table and a bar chart.

The chart is embedded (base64 PNG) so the KFP UI's Markdown viewer shows it
without a second artifact; the PNG is also written beside the report.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from kuberec.api.spec import RecommenderJob


def write_report(path: Path, job: RecommenderJob, result: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    png = path.with_suffix(".png")
    _plot(result, png)
    decision = result["decision"]
    champion = result["champion"] or {}
    verdict = "accepted" if decision["accepted"] else "rejected"
    lines = [
        f"# {job.metadata.name}: challenger {verdict}",
        "",
        f"Protocol `{result['protocol']}`, K={result['k']}, {result['holdout_rows']:,} holdout "
        f"interactions ({result['dropped_rows']:,} dropped: the champion trained on them).",
        "",
        "| metric | challenger | champion |",
        "|---|---:|---:|",
    ]
    for name, value in result["challenger"].items():
        other = champion.get(name)
        lines.append(f"| {name} | {value:.4f} | {'' if other is None else f'{other:.4f}'} |")
    lines += ["", "## Gate", ""] + [f"- {reason}" for reason in decision["reasons"]]
    if result.get("selection"):
        from kuberec.components.train.auto import markdown

        lines += ["", "## Model selection (auto)", "", *markdown(result["selection"])]
    encoded = base64.b64encode(png.read_bytes()).decode()
    lines += ["", f"![champion vs challenger](data:image/png;base64,{encoded})", ""]
    path.write_text("\n".join(lines))


def _plot(result: dict[str, Any], png: Path) -> None:
    names = list(result["challenger"])
    fig, ax = plt.subplots(figsize=(7, 3.2))
    width = 0.4
    xs = range(len(names))
    ax.bar([x - width / 2 for x in xs], [result["challenger"][n] for n in names], width,
           label="challenger")  # fmt: skip
    if result["champion"]:
        ax.bar([x + width / 2 for x in xs], [result["champion"].get(n, 0) for n in names], width,
               label="champion")  # fmt: skip
    ax.set_xticks(list(xs), names, rotation=20)
    ax.set_ylabel("value")
    ax.set_title(f"{result['protocol']} holdout")
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
