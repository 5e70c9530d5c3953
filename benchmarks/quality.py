"""Quality benchmark: every model on MovieLens 100K, beside published numbers.

    python benchmarks/quality.py         # stratified (3 seeds), leave-one-out-sampled, temporal
    python benchmarks/quality.py --protocols stratified --seeds 42

Prints one Markdown table per protocol (mean ± std over seeds) and writes
``benchmarks/quality.png``. Equivalent to ``kuberec benchmark quality``.
"""

from __future__ import annotations

import sys

from kuberec.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["benchmark", "quality", *sys.argv[1:]]))
