"""Peak memory of the synthetic generator per interaction, user and item.

``components/datasets/synthetic.check_memory`` refuses sizes beyond the
available memory from per-row figures; this measures them. Each size runs
``generate`` in a fresh process (peak RSS above the process's start), and the
per-row cost of one dimension is the difference to the base size divided by
the rows added, so imports and fixed costs cancel out.

    python benchmarks/synthetic_memory.py
"""

from __future__ import annotations

import subprocess
import sys

from kuberec.components.datasets import synthetic

BASE = (1_000, 1_000, 100_000)  # users, items, interactions
GROWN = {
    "interaction": (10_000, 1_000, 3_000_000),
    "user": (400_000, 1_000, 400_000),
    "item": (1_000, 200_000, 100_000),
}
CONSTANTS = {
    "interaction": synthetic._BYTES_PER_INTERACTION,
    "user": synthetic._BYTES_PER_USER,
    "item": synthetic._BYTES_PER_ITEM,
}
_CHILD = """
import resource, sys
from kuberec.components.datasets.synthetic import SyntheticSpec, generate
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
generate(SyntheticSpec(*map(int, sys.argv[1:4])))
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
"""


def peak_bytes(users: int, items: int, interactions: int) -> int:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(users), str(items), str(interactions)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return int(out.stdout.strip())


def main() -> None:
    base = peak_bytes(*BASE)
    print(f"base {BASE}: {base / 2**20:.0f} MiB above the process start")
    print("| row | measured bytes | estimate used by check_memory |")
    print("|---|---|---|")
    for name, size in GROWN.items():
        grown = peak_bytes(*size)
        # the grown size also adds rows of the other dimensions: take them off at the estimate
        rows = {n: s - b for n, s, b in zip(("user", "item", "interaction"), size, BASE,
                                              strict=True)}  # fmt: skip
        others = sum(rows[n] * CONSTANTS[n] for n in rows if n != name)
        per_row = (grown - base - others) / rows[name]
        print(f"| {name} | {per_row:.0f} | {CONSTANTS[name]} |")


if __name__ == "__main__":
    main()
