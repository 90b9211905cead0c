"""The PyTorch peer of twotower's training (Debian's python3-torch 1.13).

  step  --batch B --threads T [--steps N]   median microseconds of one training step
  train --data DIR --epochs N --threads T [--score cosine|learned] [--patience P]
        the lab's full training on the files `twotower generate` writes; prints wall time and
        test AUC as one JSON line

Same model (twotower_torch.TwoTower), PyTorch's default initialisation, Adam with defaults,
BCE from logits, the same batch size; the shuffling uses torch's own generator.
Run it with OPENBLAS_CORETYPE set to this CPU's core (see BENCHMARKS.md) and its best thread count.
"""
import argparse
import csv
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from twotower_torch import TwoTower  # noqa: E402

CFG = {"embedding_dim": 128, "user_hidden_dims": [256, 128], "item_hidden_dims": [256, 128],
       "dropout": 0.3, "score": "learned", "initial_scale": 5.0}


def step_flops(model, batch):
    flops = 0.0
    for tower in (model.user_tower, model.item_tower):
        linears = [m for m in tower.layers if isinstance(m, torch.nn.Linear)]
        for i, l in enumerate(linears):
            flops += 2.0 * batch * l.in_features * l.out_features * (2 if i == 0 else 3)
    return flops


def bench_step(args):
    torch.manual_seed(1)
    cfg = dict(CFG, score=args.score)
    model = TwoTower(12, 9, cfg)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    xu, xi = torch.randn(args.batch, 12), torch.randn(args.batch, 9)
    y = torch.randint(0, 2, (args.batch,)).float()
    times = []
    for s in range(args.steps + 20):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = F.binary_cross_entropy_with_logits(model(xu, xi), y)
        loss.backward()
        opt.step()
        t1 = time.perf_counter()
        if s >= 20:
            times.append((t1 - t0) * 1e6)
    median = float(np.median(times))
    print(json.dumps({"engine": "pytorch", "batch": args.batch, "threads": args.threads,
                      "us_per_step": round(median, 1),
                      "gflops": round(step_flops(model, args.batch) / (median * 1e3), 2)}))


def load_split(path, uidx, iidx):
    """user_id, movie_id, liked columns via numpy's C parser (fast enough for 10M rows)."""
    with open(path) as f:
        header = f.readline().strip().split(",")
    cols = (header.index("user_id"), header.index("movie_id"), header.index("liked"))
    a = np.loadtxt(path, delimiter=",", skiprows=1, usecols=cols, dtype=np.int64, ndmin=2)
    u = map_ids(a[:, 0], uidx)
    i = map_ids(a[:, 1], iidx)
    return torch.from_numpy(u), torch.from_numpy(i), torch.from_numpy(a[:, 2].astype(np.float32))


def map_ids(ids, index):
    """Maps integer ids to table rows through a sorted lookup (ids as `twotower generate` writes)."""
    keys = np.array([int(k) for k in index], dtype=np.int64)
    rows = np.array(list(index.values()), dtype=np.int64)
    order = np.argsort(keys)
    pos = np.searchsorted(keys[order], ids)
    assert (keys[order][pos] == ids).all(), "unknown id"
    return rows[order][pos]


def encode(rows, train_ids, spec):
    """Standardise numeric / one-hot categorical columns, fitted on the entities in train."""
    fit = [r for r in rows if r["_id"] in train_ids]
    cols = []
    for name, kind in spec:
        if kind == "numeric":
            x = np.array([float(r[name]) for r in fit])
            mean, std = x.mean(), x.std()
            std = std if std > 1e-6 else 1.0
            cols.append(np.array([[(float(r[name]) - mean) / std] for r in rows]))
        else:
            vocab = sorted({r[name] for r in fit})
            cols.append(np.array([[1.0 if r[name] == v else 0.0 for v in vocab] for r in rows]))
    return torch.from_numpy(np.concatenate(cols, axis=1).astype(np.float32))


def auc(scores, labels):
    s, y = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    p = y.sum()
    n = len(y) - p
    return float((ranks[y > 0.5].sum() - p * (p + 1) / 2) / (p * n))


def bench_train(args):
    torch.manual_seed(args.seed)
    t_start = time.perf_counter()
    with open(os.path.join(args.data, "users.csv")) as f:
        users = [dict(r, _id=r["user_id"]) for r in csv.DictReader(f)]
    with open(os.path.join(args.data, "movies.csv")) as f:
        movies = [dict(r, _id=r["movie_id"]) for r in csv.DictReader(f)]
    uidx = {r["_id"]: k for k, r in enumerate(users)}
    iidx = {r["_id"]: k for k, r in enumerate(movies)}
    tr = load_split(os.path.join(args.data, "train/interactions.csv"), uidx, iidx)
    va = load_split(os.path.join(args.data, "val/interactions.csv"), uidx, iidx)
    te = load_split(os.path.join(args.data, "test/interactions.csv"), uidx, iidx)
    train_users = {users[k]["_id"] for k in tr[0].tolist()}
    train_items = {movies[k]["_id"] for k in tr[1].tolist()}
    xu = encode(users, train_users, [("age", "numeric"), ("gender", "c"), ("favorite_genre", "c"),
                                     ("activity_level", "c")])
    xi = encode(movies, train_items, [("genre", "c"), ("year", "numeric"),
                                      ("duration", "numeric"), ("avg_rating", "numeric")])
    cfg = dict(CFG, score=args.score)
    model = TwoTower(xu.shape[1], xi.shape[1], cfg)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    n = len(tr[2])
    best_auc, best_state, since = -1.0, None, 0
    t_train = time.perf_counter()

    def evaluate(split):
        model.eval()
        with torch.no_grad():
            z = model(xu[split[0]], xi[split[1]])
        model.train()
        return auc(z.numpy(), split[2].numpy())

    epochs_run = 0
    for epoch in range(args.epochs):
        perm = torch.randperm(n)
        for b in range(0, n, args.batch):
            idx = perm[b:b + args.batch]
            opt.zero_grad(set_to_none=True)
            # --autocast: PyTorch's CPU mixed precision (bf16 products, fp32 weights and Adam).
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.autocast):
                z = model(xu[tr[0][idx]], xi[tr[1][idx]])
            loss = F.binary_cross_entropy_with_logits(z.float(), tr[2][idx])
            loss.backward()
            opt.step()
        epochs_run += 1
        val_auc = evaluate(va)
        if val_auc > best_auc:
            best_auc, since = val_auc, 0
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        else:
            since += 1
            if args.patience > 0 and since >= args.patience:
                break
    train_seconds = time.perf_counter() - t_train
    model.load_state_dict(best_state)
    test_auc = evaluate(te)
    print(json.dumps({"engine": "pytorch" + ("-autocast-bf16" if args.autocast else ""),
                      "epochs": epochs_run, "threads": args.threads,
                      "score": args.score, "train_seconds": round(train_seconds, 3),
                      "total_seconds": round(time.perf_counter() - t_start, 3),
                      "val_auc": round(best_auc, 4), "test_auc": round(test_auc, 4)}))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["step", "train"])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--data", default="data/recommendations/v1")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--patience", type=int, default=0)
    p.add_argument("--score", default="learned")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--autocast", action="store_true",
                   help="train: torch.autocast('cpu', dtype=torch.bfloat16) around the forward")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    bench_step(args) if args.mode == "step" else bench_train(args)


if __name__ == "__main__":
    main()
