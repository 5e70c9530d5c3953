"""The reference SASRec (pmixer/SASRec.pytorch) on our Games split, beside ours at equal epochs.

    python benchmarks/sasrec_reference.py --ref /path/to/SASRec.pytorch/python \
        --data ../shared/datasets/amazon-games/Video.txt --epochs 30 --norm-first

The reference's own ``model.py`` and ``utils.py`` are imported from ``--ref`` (a
checkout brought with ``fetch``; its code is not part of kuberec) and trained as its
``main.py`` does: xavier-normal init, the pad rows zeroed, its sampler (each step
128 random users, their last ``maxlen`` training items, one unseen negative per
position), BCE on every real position, Adam(0.001, betas 0.9/0.98), one epoch =
ceil(users / batch) steps. It trains on exactly our ``leave-one-out-sampled``
train part and is scored by our evaluator on the same 10,000 users and the same 100
negatives as ``games_sequence.py``, so a gap between the two is the
implementation's, not the data's or the protocol's. Validation every
``--eval-every`` epochs; the test once, at the best validation epoch. The sampler
runs in a thread of this process, so ``train_cpu_s`` counts it.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import queue
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch
from games_sequence import PAPER, paper_protocol  # benchmarks/games_sequence.py: sys.path[0]
from torch import Tensor, nn

from kuberec.components.train.offline_eval import evaluate_split


def _args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", type=Path, required=True, help="SASRec.pytorch/python")
    parser.add_argument("--data", type=Path, required=True, help="Video.txt")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--minutes", type=float, default=20.0, help="training-time budget")
    parser.add_argument("--eval-every", type=int, default=5)
    parser.add_argument("--norm-first", action="store_true", help="its Pre-LN option")
    parser.add_argument("--dropout", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=1)
    return parser.parse_args(argv)


class Scored(nn.Module):
    """The reference model behind kuberec's scoring call (our item i is its item i + 1)."""

    def __init__(self, ref: nn.Module, n_items: int, history_length: int) -> None:
        super().__init__()
        self.ref, self.n_items, self.history_length = ref, n_items, history_length

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def score(self, users: Tensor, history: Tensor) -> Tensor:
        seq = torch.where(history == self.n_items, 0, history + 1).numpy()
        with torch.no_grad():
            last = self.ref.log2feats(seq)[:, -1]
            return last @ self.ref.item_emb.weight[1:].T


def main(argv: list[str]) -> int:
    args = _args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    sys.path.insert(0, str(args.ref.resolve()))
    from model import SASRec  # the reference's model.py
    from utils import sample_function  # the reference's sampler

    paper = paper_protocol(args.data, args.seed)
    dataset, parts, train_data = paper.dataset, paper.parts, paper.train_data
    test_data, valid_split = paper.test_data, paper.valid_split
    hist = train_data.history
    user_train = {
        u + 1: (hist.items[hist.indptr[u] : hist.indptr[u + 1]] + 1).tolist()
        for u in range(train_data.n_users)
    }
    usernum, itemnum = train_data.n_users, train_data.n_items
    settings = argparse.Namespace(
        hidden_units=50,
        num_blocks=2,
        num_heads=1,
        dropout_rate=args.dropout,
        maxlen=50,
        device="cpu",
        norm_first=args.norm_first,
        l2_emb=0.0,
        lr=0.001,
        batch_size=128,
    )
    model = SASRec(usernum, itemnum, settings)
    for param in model.parameters():  # main.py's init
        with contextlib.suppress(ValueError):  # 1-d parameters keep their init
            nn.init.xavier_normal_(param.data)
    model.pos_emb.weight.data[0, :] = 0
    model.item_emb.weight.data[0, :] = 0
    batches: queue.Queue = queue.Queue(maxsize=10)
    threading.Thread(
        target=sample_function,
        daemon=True,
        args=(
            user_train,
            usernum,
            itemnum,
            settings.batch_size,
            settings.maxlen,
            batches,
            args.seed,
        ),
    ).start()
    scored = Scored(model, itemnum, settings.maxlen)
    bce = nn.BCEWithLogitsLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr, betas=(0.9, 0.98))
    num_batch = (len(user_train) - 1) // settings.batch_size + 1
    print(
        json.dumps(parts.summary() | {"steps_per_epoch": num_batch, "norm_first": args.norm_first}),
        flush=True,
    )
    wall, cpu, best, weights = 0.0, 0.0, None, None
    for epoch in range(1, args.epochs + 1):
        model.train()
        started, started_cpu, total = time.perf_counter(), time.process_time(), 0.0
        for _ in range(num_batch):
            _, seq, pos, neg = (np.array(x) for x in batches.get())
            pos_logits, neg_logits = model(None, seq, pos, neg)
            at = np.where(pos != 0)
            loss = bce(pos_logits[at], torch.ones_like(pos_logits[at]))
            loss = loss + bce(neg_logits[at], torch.zeros_like(neg_logits[at]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item()
        seconds = time.perf_counter() - started
        wall += seconds
        cpu += time.process_time() - started_cpu
        line = {
            "impl": "reference",
            "epoch": epoch,
            "epoch_s": round(seconds, 1),
            "train_s": round(wall, 1),
            "train_cpu_s": round(cpu, 1),
            "train_loss": round(total / num_batch, 4),
        }
        last = wall >= args.minutes * 60 or epoch == args.epochs
        if epoch % args.eval_every == 0 or last:
            valid = evaluate_split(scored, train_data, valid_split, dataset)
            line |= {"val_hr": round(valid["hit_rate"], 4), "val_ndcg": round(valid["ndcg"], 4)}
            if best is None or valid["ndcg"] > best["val_ndcg"]:
                best, weights = line, copy.deepcopy(model.state_dict())
        print(json.dumps(line), flush=True)
        if last:
            break
    if weights is not None:
        model.load_state_dict(weights)
    test = evaluate_split(scored, test_data, parts, dataset)
    result = {"hit_rate": round(test["hit_rate"], 4), "ndcg": round(test["ndcg"], 4)}
    print(
        json.dumps(
            {"impl": "reference", "best_on_valid": best, "test_at_best": result, "paper": PAPER}
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
