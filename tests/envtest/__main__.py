"""Start the control plane by hand: ``python -m tests.envtest [--build]``.

Installs every CRD the tests install, prints the admin kubeconfig and how to point kubectl
and the operator at it, and runs until interrupted (Ctrl-C stops and removes it all).
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from .cluster import RealCluster
from .controlplane import ControlPlane, ControlPlaneUnavailable, binaries
from .fixtures import crd_files


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.envtest")
    parser.add_argument("--build", action="store_true", help="build the binaries if missing")
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="working folder, kept afterwards (default: a temporary one)",
    )
    args = parser.parse_args()
    try:
        bin_dir = binaries(build=args.build)
    except ControlPlaneUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    plane = (ControlPlane(bin_dir, args.dir, keep_workdir=True) if args.dir
             else ControlPlane(bin_dir))  # fmt: skip
    plane.start()
    admin = RealCluster(plane.admin_kubeconfig)
    admin.kubectl("apply", "--server-side", *[a for p in crd_files() for a in ("-f", str(p))])
    admin.close()
    print(f"control plane at {plane.url} (logs in {plane.workdir})")
    print(f"export KUBECONFIG={plane.admin_kubeconfig}")
    print("kubectl get rj; kuberec operator run --namespace default --standalone")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while plane.alive():
            time.sleep(1)
        print("a component exited; see the logs", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, SystemExit):
        return 0
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second TERM must not cut the cleanup
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        plane.stop()


if __name__ == "__main__":
    sys.exit(main())
