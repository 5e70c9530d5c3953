"""Run the pipeline with ``kfp.local`` in this Python environment: the embedded default.

``python -m kuberec.pipelines.local_run JOB.json CONTEXT.json ROOT [--exit-file F]`` is
what the local platform starts as a child process (its output goes to the
run's log file), so a crashing step never takes the operator loop down.
Exit status 0 means every step succeeded.
"""

from __future__ import annotations

import argparse
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
    parser = argparse.ArgumentParser(prog="python -m kuberec.pipelines.local_run")
    parser.add_argument("job", type=Path, help="the RecommenderJob as JSON")
    parser.add_argument("context", type=Path, help="the RunContext as JSON")
    parser.add_argument("pipeline_root", type=Path)
    parser.add_argument("--exit-file", type=Path, help="write the exit status here at the end")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    code = 1
    try:
        ok = run_local(args.job.read_text(), args.context.read_text(), args.pipeline_root)
        code = 0 if ok else 1
    finally:
        if args.exit_file:
            args.exit_file.write_text(str(code))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
