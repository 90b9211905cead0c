#!/usr/bin/python3
"""The PyTorch twin of one `twotower train` epoch at catalogue scale (bench/run_scale_bench.sh):
the same generated data and the same shapes as bench/train_epoch.cc with the scale config: per
tower an id embedding table (nn.EmbeddingBag, sparse gradients, SparseAdam: TorchRec's and
PyTorch's way to train large tables), the lab's features (numeric standardised, categorical
one-hot), Linear -> ReLU -> Linear, L2-normalised; the rest with Adam. Objectives, vectorised
(checked against twotower_torch.sampled_loss, the per-row reference that check_sampled.py
verifies against twotower, at start): in-batch softmax, mixed (in-batch + uniform) and BPR
(uniform), each with logQ correction / accidental-hit removal and hard negatives.

usage: train_scale_torch.py DATA_DIR --loss softmax|mixed|bpr [--threads 2] [--batch 1024]
       [--dim 32] [--hidden 64] [--negatives 256] [--hard 64] [--temperature 0.2] [--lr 0.001]
Prints one JSON line: examples, load and epoch seconds, examples per second, mean loss, peak RSS.
"""
import argparse
import csv
import json
import os
import resource
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from twotower_torch import sampled_loss  # noqa: E402


def read_table(path, numeric, categorical):
    with open(path, newline="", encoding="utf-8") as f:
        rows = csv.reader(f)
        header = next(rows)
        cols = {name: [] for name in header}
        for row in rows:
            for name, value in zip(header, row):
                cols[name].append(value)
    ids = {v: i for i, v in enumerate(cols[header[0]])}
    parts = []
    for name in numeric:
        x = np.array(cols[name], dtype=np.float32)
        parts.append(((x - x.mean()) / (x.std() + 1e-12))[:, None])
    for name in categorical:
        values = sorted(set(cols[name]))
        index = {v: i for i, v in enumerate(values)}
        onehot = np.zeros((len(cols[name]), len(values)), dtype=np.float32)
        onehot[np.arange(len(cols[name])), [index[v] for v in cols[name]]] = 1
        parts.append(onehot)
    return ids, torch.from_numpy(np.concatenate(parts, axis=1))


def read_interactions(path, ui, ii):
    u, i = [], []
    with open(path, newline="", encoding="utf-8") as f:
        rows = csv.reader(f)
        header = next(rows)
        cu, ci = header.index("user_id"), header.index("movie_id")
        for row in rows:
            u.append(ui[row[cu]])
            i.append(ii[row[ci]])
    return np.array(u, dtype=np.int64), np.array(i, dtype=np.int64)


class Tower(nn.Module):
    def __init__(self, rows, dense_width, dim, hidden):
        super().__init__()
        self.table = nn.EmbeddingBag(rows, dim, mode="sum", sparse=True)
        nn.init.normal_(self.table.weight, std=0.05)
        self.mlp = nn.Sequential(nn.Linear(dim + dense_width, hidden), nn.ReLU(),
                                 nn.Linear(hidden, dim))

    def forward(self, ids, dense):
        x = torch.cat([self.table(ids[:, None]), dense], dim=1)
        return F.normalize(self.mlp(x), dim=1)


def batched_loss(kind, u, v, items, q, num_items, hard, t, drawn=0):
    """softmax / mixed / bpr of loss.h over a batch, vectorised. v: (n + drawn) x d."""
    n = u.shape[0]
    pos = (u * v[:n]).sum(1)
    if kind in ("softmax", "mixed"):
        logits = u @ v.T / t
        expected = torch.cat([n * q[items[:n]],
                              torch.full((drawn,), drawn / num_items, dtype=q.dtype)])
        logits = logits - torch.log(expected).float()[None, :]
        zpos = logits.diagonal().clone()
        mask = items[None, :] == items[:n, None]  # own column and accidental hits
        neg = logits.masked_fill(mask, float("-inf"))
        if hard > 0:
            neg = torch.topk(neg, hard, dim=1).values
        return (torch.logsumexp(torch.cat([zpos[:, None], neg], 1), 1) - zpos).mean()
    s = u @ v[n:].T  # bpr, uniform: the drawn negatives
    mask = items[None, n:] == items[:n, None]
    rank = s.masked_fill(mask, float("-inf"))
    k = hard if hard > 0 else drawn
    top, idx = torch.topk(rank, k, dim=1)
    valid = torch.isfinite(top)
    per = F.softplus(-(pos[:, None] - torch.where(valid, top, torch.zeros_like(top))) / t)
    per = torch.where(valid, per, torch.zeros_like(per))
    return (per.sum(1) / valid.sum(1).clamp(min=1)).mean()


def self_check():
    """The vectorised objectives equal the per-row reference on a small random batch."""
    g = torch.Generator().manual_seed(0)
    n, m, d, items_n = 12, 8, 5, 30
    u = F.normalize(torch.randn(n, d, generator=g), dim=1)
    v = F.normalize(torch.randn(n + m, d, generator=g), dim=1)
    items = torch.randint(0, items_n, (n + m,), generator=g)
    items[3] = items[1]
    q = torch.rand(items_n, generator=g, dtype=torch.float64) + 0.1
    q /= q.sum()
    for kind, sampler, drawn in (("softmax", "in_batch", 0), ("mixed", "mixed", m),
                                 ("bpr", "uniform", m)):
        for hard in (0, 4):
            vv = v if drawn else v[:n]
            a = batched_loss(kind, u, vv, items[:n + drawn], q, items_n, hard, 0.2, drawn)
            b = sampled_loss(u, vv, items[:n + drawn].numpy(), None,
                             "softmax" if kind != "bpr" else "bpr", sampler, q.numpy(), items_n,
                             hard, 0.2)
            assert abs(a.item() - b.item()) < 1e-5, (kind, hard, a.item(), b.item())


def main():
    p = argparse.ArgumentParser()
    p.add_argument("data")
    p.add_argument("--loss", choices=["softmax", "mixed", "bpr"], required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--dim", type=int, default=32)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--negatives", type=int, default=256)
    p.add_argument("--hard", type=int, default=64)
    p.add_argument("--temperature", type=float, default=0.2)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    self_check()
    start = time.perf_counter()
    ui, user_dense = read_table(f"{a.data}/users.csv", ["age"],
                                ["gender", "favorite_genre", "activity_level"])
    ii, item_dense = read_table(f"{a.data}/movies.csv", ["year", "duration", "avg_rating"],
                                ["genre"])
    users, items = read_interactions(f"{a.data}/train/interactions.csv", ui, ii)
    counts = np.bincount(items, minlength=len(ii)).astype(np.float64)
    counts = np.maximum(counts, 1.0)
    q = torch.from_numpy(counts / counts.sum())
    load = time.perf_counter() - start
    torch.manual_seed(a.seed)
    user_tower = Tower(len(ui), user_dense.shape[1], a.dim, a.hidden)
    item_tower = Tower(len(ii), item_dense.shape[1], a.dim, a.hidden)
    tables = [user_tower.table.weight, item_tower.table.weight]
    dense = [p for t in (user_tower, item_tower) for p in t.mlp.parameters()]
    sparse_opt = torch.optim.SparseAdam(tables, lr=a.lr)
    dense_opt = torch.optim.Adam(dense, lr=a.lr)
    order = np.random.default_rng(a.seed).permutation(len(users))
    gen = torch.Generator().manual_seed(a.seed)
    drawn = a.negatives if a.loss != "softmax" else 0
    total, steps = 0.0, 0
    start = time.perf_counter()
    for begin in range(0, len(order), a.batch):
        idx = order[begin:begin + a.batch]
        bu = torch.from_numpy(users[idx])
        bi = torch.from_numpy(items[idx])
        if drawn:
            bi = torch.cat([bi, torch.randint(0, len(ii), (drawn,), generator=gen)])
        u = user_tower(bu, user_dense[bu])
        v = item_tower(bi, item_dense[bi])
        hard = min(a.hard, len(idx) - 1 + drawn) if a.loss != "bpr" else min(a.hard, drawn)
        loss = batched_loss(a.loss, u, v, bi, q, len(ii), hard, a.temperature, drawn)
        sparse_opt.zero_grad()
        dense_opt.zero_grad()
        loss.backward()
        sparse_opt.step()
        dense_opt.step()
        total += loss.item() * len(idx)
        steps += 1
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"loss": a.loss, "threads": a.threads, "examples": int(len(order)),
                      "load_seconds": round(load, 2), "epoch_seconds": round(seconds, 2),
                      "examples_per_second": round(len(order) / seconds),
                      "mean_loss": total / len(order), "peak_rss_mib": round(peak)}))


if __name__ == "__main__":
    main()
