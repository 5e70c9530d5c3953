"""The cluster side of the CLI (``crd``, ``operator run``), a group of kuberec/cli/main.py."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the operator subcommands to the ``kuberec`` parser."""
    crd = commands.add_parser("crd", help="print the RecommenderJob CRD generated from the spec")
    crd.add_argument("-o", "--out", type=Path, help="write to a file instead of stdout")
    crd.set_defaults(handler=_crd)

    operator = commands.add_parser("operator", help="the Kubernetes operator")
    verbs = operator.add_subparsers(title="operator commands", metavar="COMMAND")
    run = verbs.add_parser(
        "run", help="reconcile RecommenderJobs on the cluster (kopf)",
        description="Watch RecommenderJobs and drive each one through the reconcile loop on "
                    "the Kubernetes platform (KFP, Deployments/Services/HTTPRoute, Prometheus). "
                    "Platform endpoints come from KUBEREC_* variables (the chart's ConfigMap).",
    )  # fmt: skip
    scope = run.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="watch this namespace (repeatable; glob patterns allowed)",
    )
    scope.add_argument(
        "-A",
        "--all-namespaces",
        action="store_true",
        help="watch every namespace (cluster-wide RBAC)",
    )
    peering = run.add_mutually_exclusive_group()
    peering.add_argument(
        "--peering", metavar="NAME", help="kopf peering object: one active replica at a time"
    )
    peering.add_argument("--standalone", action="store_true", help="no peering (one replica)")
    run.add_argument(
        "--priority",
        type=int,
        default=None,
        help="peering priority of this replica: the highest active one works, "
        "the others stand by (default: random, so replicas never tie; kopf "
        "pauses every replica of a tied priority)",
    )
    run.add_argument(
        "--liveness", metavar="URL", help="health endpoint, e.g. http://0.0.0.0:8080/healthz"
    )
    run.add_argument(
        "--metrics-port",
        type=int,
        default=int(os.environ.get("KUBEREC_OPERATOR_METRICS_PORT", "9102")),
        help="port of the operator's /metrics (0: off; default 9102)",
    )
    run.add_argument(
        "--metrics-host",
        metavar="ADDRESS",
        default=os.environ.get("KUBEREC_OPERATOR_METRICS_HOST", "127.0.0.1"),
        help="address /metrics binds (default 127.0.0.1: this machine only; the "
        "chart passes 0.0.0.0 so that Prometheus reaches it in the pod)",
    )
    run.add_argument(
        "--poll-interval",
        type=float,
        default=None,
        metavar="SECONDS",
        help="timer: follow runs and analyse canaries this often "
        "(default $KUBEREC_POLL_INTERVAL or 5)",
    )
    run.add_argument(
        "--workers", type=int, default=16, help="jobs reconciled concurrently (threads)"
    )
    run.set_defaults(handler=_operator_run)


def _crd(args: argparse.Namespace) -> int:
    from kuberec.operator.crd import crd_yaml

    text = crd_yaml()
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def _operator_run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    import kopf

    from kuberec.errors import ConfigError
    from kuberec.operator.kubernetes.kopf_handlers import build_operator, configure, register
    from kuberec.operator.kubernetes.settings import ClusterSettings

    if not args.namespace and not args.all_namespaces:
        raise ConfigError("kuberec operator run: pass --namespace NS (repeatable) or "
                          "--all-namespaces")  # fmt: skip
    settings = ClusterSettings.from_env()
    if args.poll_interval is not None:
        if args.poll_interval <= 0:
            raise ConfigError(f"--poll-interval must be > 0, got {args.poll_interval}")
        settings = replace(settings, poll_s=args.poll_interval)
    _operator_logging(args.verbose, args.log_format)
    operator = build_operator(settings)
    operator.metrics.serve(args.metrics_port, args.metrics_host)
    registry = kopf.OperatorRegistry()
    register(registry, operator, poll_s=settings.poll_s)

    @kopf.on.startup(registry=registry)
    def _startup(settings: kopf.OperatorSettings, **_: object) -> None:
        configure(settings, workers=args.workers)

    @kopf.on.login(registry=registry)
    def _login(**kwargs: object) -> kopf.ConnectionInfo | None:
        # in-cluster service account or the kubeconfig, as the kubernetes client reads them
        return kopf.login_via_client(**kwargs)  # type: ignore[arg-type]

    logging.getLogger("kuberec.operator").info(
        "kuberec operator: %s, KFP %s, Prometheus %s, gateway %s, poll %ss",
        "all namespaces" if args.all_namespaces else ",".join(args.namespace),
        settings.kfp_endpoint or "-", settings.prometheus_url or "-",
        settings.gateway or "none (replica ratio)", settings.poll_s,
    )  # fmt: skip
    kopf.run(
        registry=registry,
        standalone=args.standalone or not args.peering,
        peering_name=args.peering,
        priority=args.priority if args.priority is not None else _random_priority(),
        clusterwide=args.all_namespaces,
        namespaces=args.namespace,
        liveness_endpoint=args.liveness,
    )
    return 0


def _random_priority() -> int:
    import secrets

    return 1 + secrets.randbelow(1_000_000)


def _operator_logging(verbose: bool, fmt: str) -> None:
    """Plain lines for a container log: our INFO lines; kopf's per-handler chatter only if -v."""
    if fmt != "json":
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.basicConfig(handlers=[handler], force=True)
    logging.getLogger().setLevel(logging.DEBUG if verbose else logging.WARNING)
    logging.getLogger("kuberec.operator").setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("kopf").setLevel(logging.INFO if verbose else logging.WARNING)
