"""Run the pipeline with ``kfp.local`` in this Python environment: the embedded default.

``python -m kuberec.pipelines.local_run JOB.json CONTEXT.json PIPELINE_ROOT`` is
what the local platform starts as a child process (its output goes to the
run's log file), so a crashing step never takes the operator loop down.
Exit status 0 means every step succeeded.
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path


def run_local(job_text: str, context_text: str, pipeline_root: Path) -> bool:
    from kfp import local

    from kuberec.pipelines.pipeline import recommender_pipeline

    warnings.filterwarnings("ignore", message=".*non-Python base image.*")
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(pipeline_root),
        raise_on_error=False,
    )
    task = recommender_pipeline(job=job_text, context=context_text)
    return bool(task.outputs)  # kfp.local returns no outputs when a task failed


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO)
    job_file, context_file, root = argv
    ok = run_local(Path(job_file).read_text(), Path(context_file).read_text(), Path(root))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
