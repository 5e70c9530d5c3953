"""The environment that carries a job's ``spec.feedback`` to its servers (both platforms).

Apart from :mod:`.feedback_loop` so the operator can build it without importing
the serving side's Parquet and Feast dependencies.
"""

from __future__ import annotations

from kuberec.api.spec import FeedbackSpec

SINK_ENV = "KUBEREC_FEEDBACK_SINK"  # folder or URI; unset: no sink
PUSH_ENV = "KUBEREC_FEEDBACK_PUSH"  # "0": do not push (default: push when a Feast repo is set)
IMPRESSIONS_ENV = "KUBEREC_FEEDBACK_IMPRESSIONS"  # "1": store every served item as impression
QUEUE_ENV = "KUBEREC_FEEDBACK_QUEUE"  # queue bound (events)
FLUSH_ENV = "KUBEREC_FEEDBACK_FLUSH_S"  # the sink writes at least this often (seconds)
#: Traffic a platform makes up to measure a canary (``kuberec replay --synthetic``) carries
#: ``X-Kuberec-Traffic: synthetic`` on /recommend and /feedback: served and counted like any
#: other, but never pushed to the online store nor stored in the sink, so a job that trains
#: on its own traffic does not retrain on the traffic its canary analysis generated.
TRAFFIC_HEADER = "X-Kuberec-Traffic"
SYNTHETIC = "synthetic"


def feedback_env(spec: FeedbackSpec | None, sink: str | None) -> dict[str, str]:
    """The environment a server gets from the job's ``spec.feedback`` (``sink`` resolved)."""
    if spec is None:
        return {}
    env = {
        PUSH_ENV: "1" if spec.push else "0",
        QUEUE_ENV: str(spec.queue_size),
        IMPRESSIONS_ENV: "1" if spec.impressions else "0",
    }
    if sink:
        env[SINK_ENV] = sink
    return env
