"""What the cluster operator's watch of a feedback sink costs per poll, as the sink grows.

The serving pods write one Parquet file per flush (every 5 s per pod by
default), so a sink gains ~17,000 files a day per pod. The data watcher
(``operator/kubernetes/data.py``) lists the sink each ``data_poll_s`` and reads
the ``event`` column of files it has not seen; this times a first poll (every
file new) and a later one (one new file) on a local folder::

    python benchmarks/feedback_watch.py --files 2000 --events 50

An object store adds its listing latency per 1,000 keys on top.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path


def main() -> int:
    from kuberec.operator.kubernetes.data import DataWatcher
    from kuberec.serving.feedback_sink import Event, ParquetSink

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--events", type=int, default=50, help="events per file")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="kuberec-watch-")) / "sink"
    sink = ParquetSink(root.as_uri())
    now = datetime.now(UTC)

    def flush(n: int) -> None:
        sink.add(
            [
                Event(f"r{n}-{i}", "1", "2", "click" if i % 5 else "impression", "v1", now)
                for i in range(args.events)
            ]
        )
        assert sink.flush()

    for n in range(args.files):
        flush(n)
    watcher = DataWatcher(poll_s=0)
    started = time.perf_counter()
    _, first = watcher.sink_fingerprint(root.as_uri(), ["click"])
    cold = time.perf_counter() - started
    flush(args.files)
    started = time.perf_counter()
    _, later = watcher.sink_fingerprint(root.as_uri(), ["click"])
    warm = time.perf_counter() - started
    print(
        f"{args.files} files x {args.events} events: first poll {cold * 1e3:.0f} ms "
        f"({first} clicks), next poll after one more file {warm * 1e3:.0f} ms ({later})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
