"""Run the emulator as a process: `python -m tests.k8s_emulator --port 8001 --kubeconfig kc`."""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from .server import KubeEmulator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--kubeconfig", type=Path, help="write a kubeconfig here")
    parser.add_argument("--crd", type=Path, action="append", default=[], help="CRD YAML to load")
    args = parser.parse_args()
    emulator = KubeEmulator(args.host, args.port).start()
    for crd in args.crd:
        emulator.load_crd(crd)
    if args.kubeconfig:
        emulator.write_kubeconfig(args.kubeconfig)
    print(emulator.url, flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    emulator.stop()


if __name__ == "__main__":
    main()
