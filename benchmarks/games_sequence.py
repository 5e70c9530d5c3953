"""SASRec / GRU4Rec on Amazon Games under the SASRec paper's protocol, epoch by epoch.

    python benchmarks/games_sequence.py --data ../shared/datasets/amazon-games/Video.txt \
        --loss gbce --minutes 30

The paper's protocol (Kang & McAuley 2018, ``util.py``): each user's last item is
the test target, the one before it validation, the rest trains; the target is
ranked against 100 uniformly sampled never-interacted items, over at most 10,000
sampled users (``leave-one-out-sampled``, ``n_users=10000``). Validation reads the
training sequence, test reads training + validation items (the model never trains
on the validation item). ``--loss gbce,bce,ce`` trains one model per loss, an epoch
of each in turn (a busy machine slows them alike), and prints each epoch's seconds;
every ``--eval-every`` epochs it prints the validation HR@10 / NDCG@10. The test is
run once per loss, at the end, on the weights of its best validation epoch.
``train_s`` is wall-clock training time, ``train_cpu_s`` the process's CPU time in
training (what a shared machine's wall clock hides).
``--speed ce,bce,gbce`` instead times each loss on the same first ``--batches``
batches of an epoch, one step of each loss in turn (so a busy machine slows them
alike), and prints seconds per step and per epoch (steps x batches per epoch).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from kuberec.components.datasets.amazon_games import read_games
from kuberec.components.datasets.canonical import Dataset
from kuberec.components.evaluation import Split, split
from kuberec.components.models import EncodedData, build_model, make_optimizer, make_sampler
from kuberec.components.models.registry import resolve_hparams
from kuberec.components.train.local_runner import timed_epoch
from kuberec.components.train.offline_eval import evaluate_split

#: Kang & McAuley 2018, Table 3, SASRec on Games.
PAPER = {"hit_rate": 0.741, "ndcg": 0.536}
#: The paper's Games settings (its README: maxlen 50, dropout 0.5, lr 0.001, batch 128).
PAPER_HPARAMS = {
    "dim": 50,
    "n_layers": 2,
    "n_heads": 1,
    "dropout": 0.5,
    "history_length": 50,
    "lr": 0.001,
    "batch_size": 128,
}


def _args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="Video.txt")
    parser.add_argument("--model", default="sasrec")
    parser.add_argument(
        "--loss", default="gbce", help="a loss, or several (comma-separated) trained in turn"
    )
    parser.add_argument("--hparams", default="{}", help="JSON overriding the paper's settings")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--minutes", type=float, default=30.0, help="training-time budget")
    parser.add_argument("--eval-every", type=int, default=2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--speed", default="", help="comma-separated losses to time instead")
    parser.add_argument("--batches", type=int, default=30, help="steps per loss with --speed")
    parser.add_argument(
        "--budgets",
        default="",
        help="epoch budgets (comma-separated): also test the best validation epoch within each",
    )
    parser.add_argument(
        "--full-ranking",
        default="",
        help="also rank all unseen items for the same test users, beside these models "
        "(comma-separated, e.g. sparse_ease,popularity; fitted on train + validation)",
    )
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = _args(argv)
    torch.set_num_threads(args.threads)
    paper = paper_protocol(args.data, args.seed)
    print(json.dumps(paper.parts.summary()), flush=True)
    if args.speed:
        speed(args, [x for x in args.speed.split(",") if x], paper.train_data)
        return 0
    run(
        args,
        [x for x in args.loss.split(",") if x],
        paper.train_data,
        paper.test_data,
        paper.parts,
        paper.valid_split,
        paper.dataset,
    )
    return 0


@dataclasses.dataclass(frozen=True)
class PaperProtocol:
    """The paper's split and what each phase reads (also ``sasrec_reference.py``'s)."""

    dataset: Dataset
    parts: Split
    train_data: EncodedData  # the training sequences: what validation reads
    test_data: EncodedData  # training + validation items: what the test reads
    valid_split: Split  # ``parts`` with the validation items as its test


def paper_protocol(path: Path, seed: int) -> PaperProtocol:
    """``path``'s interactions split as the paper splits them, over 10,000 sampled users."""
    dataset = read_games(path)
    parts = split("leave-one-out-sampled", dataset.interactions, seed=seed, n_users=10_000)
    with_valid = pd.concat([parts.train, parts.valid], ignore_index=True)
    return PaperProtocol(
        dataset,
        parts,
        EncodedData.from_dataset(dataset.with_interactions(parts.train)),
        EncodedData.from_dataset(dataset.with_interactions(with_valid)),
        dataclasses.replace(parts, test=parts.valid),
    )


def speed(args: argparse.Namespace, losses: list[str], data: EncodedData) -> None:
    """Seconds per training step of each loss, interleaved step by step on the same batches."""
    setups = {}
    for loss in losses:
        hparams = resolve_hparams(
            args.model, {**PAPER_HPARAMS, "loss": loss, **json.loads(args.hparams)}
        )
        torch.manual_seed(args.seed)
        model = build_model(args.model, data, hparams).train()
        sampler = make_sampler(model, data, hparams, seed=args.seed)
        batches = [b for _, b in zip(range(args.batches), sampler.batches(0), strict=False)]
        setups[loss] = (model, make_optimizer(model, hparams), batches, len(sampler))
    wall = dict.fromkeys(losses, 0.0)
    cpu = dict.fromkeys(losses, 0.0)
    for step in range(args.batches):
        for loss, (model, optimizer, batches, _) in setups.items():
            started, started_cpu = time.perf_counter(), time.process_time()
            optimizer.zero_grad(set_to_none=True)
            model(batches[step]).backward()
            optimizer.step()
            wall[loss] += time.perf_counter() - started
            cpu[loss] += time.process_time() - started_cpu
    for loss, (*_, per_epoch) in setups.items():
        print(
            json.dumps(
                {
                    "loss": loss,
                    "steps": args.batches,
                    "s_per_step": round(wall[loss] / args.batches, 4),
                    "cpu_s_per_step": round(cpu[loss] / args.batches, 4),
                    "steps_per_epoch": per_epoch,
                    "s_per_epoch": round(wall[loss] / args.batches * per_epoch, 1),
                    "cpu_s_per_epoch": round(cpu[loss] / args.batches * per_epoch, 1),
                }
            ),
            flush=True,
        )


def run(args, losses, train_data, test_data, parts, valid_split, dataset) -> None:
    """Train one model per loss, an epoch of each in turn; validate; test the best once."""
    budgets = {int(x) for x in args.budgets.split(",") if x}
    baselines(args, test_data, parts, dataset)
    setups = {}
    for loss in losses:
        hparams = resolve_hparams(
            args.model, {**PAPER_HPARAMS, "loss": loss, **json.loads(args.hparams)}
        )
        torch.manual_seed(args.seed)
        model = build_model(args.model, train_data, hparams)
        setups[loss] = _Run(
            hparams,
            model,
            make_optimizer(model, hparams),
            make_sampler(model, train_data, hparams, seed=args.seed),
        )
        print(f"# {args.model} loss={loss} {json.dumps(hparams)}", flush=True)
    for epoch in range(args.epochs):
        for loss, state in setups.items():
            cpu = time.process_time()
            mean, seconds = timed_epoch(
                state.model,
                state.optimizer,
                state.sampler.batches(epoch),
                epoch=epoch,
                device=torch.device("cpu"),
                hparams=state.hparams,
                amp=False,
            )
            state.wall += seconds
            state.cpu += time.process_time() - cpu
            line = {
                "loss": loss,
                "epoch": epoch + 1,
                "epoch_s": round(seconds, 1),
                "train_s": round(state.wall, 1),
                "train_cpu_s": round(state.cpu, 1),
                "train_loss": round(mean, 4),
            }
            if (epoch + 1) % args.eval_every == 0 or _out_of_time(args, setups, epoch):
                valid = evaluate_split(state.model, train_data, valid_split, dataset)
                line |= {"val_hr": round(valid["hit_rate"], 4), "val_ndcg": round(valid["ndcg"], 4)}
                if state.best is None or valid["ndcg"] > state.best["val_ndcg"]:
                    state.best = line
                    state.weights = copy.deepcopy(state.model.state_dict())
            print(json.dumps(line), flush=True)
            if epoch + 1 in budgets and state.best is not None:
                state.at_budget[epoch + 1] = (state.best, state.weights)
        if _out_of_time(args, setups, epoch):
            break
    full = dataclasses.replace(parts, protocol="leave-one-out", negatives=None)
    for loss, state in setups.items():
        for budget, (best, weights) in sorted(state.at_budget.items()):
            state.model.load_state_dict(weights)
            test = _rounded(evaluate_split(state.model, test_data, parts, dataset))
            print(json.dumps({"loss": loss, "epoch_budget": budget, "best_on_valid": best,
                              "test_at_best": test}), flush=True)  # fmt: skip
        if state.weights is not None:
            state.model.load_state_dict(state.weights)
        test = evaluate_split(state.model, test_data, parts, dataset)
        result = _rounded(test)
        if args.full_ranking:
            ranked = _rounded(evaluate_split(state.model, test_data, full, dataset))
            print(json.dumps({"loss": loss, "full_ranking": ranked}), flush=True)
        print(
            json.dumps(
                {
                    "loss": loss,
                    "best_on_valid": state.best,
                    "test_at_best": result,
                    "paper": PAPER,
                    "reached_paper": all(result[m] >= v for m, v in PAPER.items()),
                }
            ),
            flush=True,
        )


def baselines(args: argparse.Namespace, data: EncodedData, parts, dataset) -> None:
    """``--full-ranking`` models, fitted on train + validation, ranked both ways."""
    full = dataclasses.replace(parts, protocol="leave-one-out", negatives=None)
    for name in (x for x in args.full_ranking.split(",") if x):
        started = time.process_time()
        model = build_model(name, data, resolve_hparams(name, {})).eval()  # closed form: fitted
        line = {"model": name, "fit_cpu_s": round(time.process_time() - started, 1),
                "sampled": _rounded(evaluate_split(model, data, parts, dataset)),
                "full_ranking": _rounded(evaluate_split(model, data, full, dataset))}  # fmt: skip
        print(json.dumps(line), flush=True)


def _rounded(metrics: dict) -> dict:
    return {m: round(metrics[m], 4) for m in ("hit_rate", "ndcg") if m in metrics} | {
        "test_users": metrics["test_users"]
    }


@dataclasses.dataclass
class _Run:
    """One loss's model, optimiser, sampler and its progress."""

    hparams: dict
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    sampler: object
    wall: float = 0.0
    cpu: float = 0.0
    best: dict | None = None
    weights: dict | None = None
    at_budget: dict = dataclasses.field(default_factory=dict)


def _out_of_time(args: argparse.Namespace, setups: dict, epoch: int) -> bool:
    """The budget is the losses' training time together (they share the machine in turn)."""
    return sum(s.wall for s in setups.values()) >= args.minutes * 60 or epoch + 1 == args.epochs


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
