"""The operator's own Prometheus metrics (reconciles, errors, latency, jobs by phase, launches).

Served on ``--metrics-port`` (``/metrics``) by ``kuberec operator run``; a
separate registry keeps them apart from anything a library registers.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from kuberec.api.status import PHASES

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass
class OperatorMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.reconciles = Counter("kuberec_operator_reconciles", "Reconcile passes by trigger",
                                  ["trigger", "result"], registry=r)  # fmt: skip
        self.errors = Counter("kuberec_operator_reconcile_errors",
                              "Failed passes by condition reason (KfpUnavailable, ...)",
                              ["reason"], registry=r)  # fmt: skip
        self.latency = Histogram("kuberec_operator_reconcile_duration_seconds",
                                 "Duration of one observe-reconcile-execute-patch pass",
                                 buckets=BUCKETS, registry=r)  # fmt: skip
        self.launches = Counter("kuberec_operator_runs_launched",
                                "Pipeline runs submitted (an existing run found by key counts)",
                                registry=r)  # fmt: skip
        self.jobs = Gauge("kuberec_operator_jobs", "RecommenderJobs by phase", ["phase"],
                          registry=r)  # fmt: skip
        self._phases: dict[str, str] = {}
        self._lock = threading.Lock()
        for phase in PHASES:
            self.jobs.labels(phase=phase).set(0)

    def phase(self, uid: str, phase: str | None) -> None:
        """Record a job's phase (None: the job is gone) and refresh the per-phase gauge."""
        with self._lock:
            if phase is None:
                self._phases.pop(uid, None)
            else:
                self._phases[uid] = phase
            counts = dict.fromkeys(PHASES, 0)
            for value in self._phases.values():
                counts[value] = counts.get(value, 0) + 1
        for name, count in counts.items():
            self.jobs.labels(phase=name).set(count)

    def serve(self, port: int, address: str = "127.0.0.1") -> None:
        if port:
            start_http_server(port, addr=address, registry=self.registry)
