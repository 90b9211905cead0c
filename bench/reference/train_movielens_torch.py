#!/usr/bin/python3
"""The PyTorch twin of `twotower train` with the config `twotower data movielens` writes: id
embeddings (nn.EmbeddingBag rows, L2-normalised), in-batch softmax with logQ correction and
accidental-hit removal (twotower_torch.in_batch_softmax), Adam, validation Recall@10 each epoch,
then the refit on train + val. Same data, same epochs (given), same batch; times the whole run.

usage: train_movielens_torch.py DATA_DIR --epochs E --refit-epochs R [--threads N]
Prints one JSON line: seconds, test Recall@10 / NDCG@10 (the twin's own, for a sanity check).
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
from twotower_torch import in_batch_softmax  # noqa: E402


def read(path, ui, ii):
    u, i, y = [], [], []
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            u.append(ui[row["user_id"]])
            i.append(ii[row["movie_id"]])
            y.append(row["liked"] == "1")
    return np.array(u), np.array(i), np.array(y)


def recall_ndcg(U, V, pos_split, hist, k=10):
    s = U @ V.T
    s[hist > 0] = -np.inf
    top = np.argsort(-s, axis=1, kind="stable")[:, :k]
    u, i, y = pos_split
    pos = {}
    for uu, it in zip(u[y], i[y]):
        pos.setdefault(uu, set()).add(it)
    rec, nd = [], []
    for uu, p in pos.items():
        hits = [1.0 if t in p else 0.0 for t in top[uu]]
        ideal = min(len(p), k)
        rec.append(sum(hits) / ideal)
        nd.append(sum(h / np.log2(r + 2) for r, h in enumerate(hits)) /
                  sum(1 / np.log2(r + 2) for r in range(ideal)))
    return float(np.mean(rec)), float(np.mean(nd))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--epochs", type=int, required=True)
    ap.add_argument("--refit-epochs", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--lr", type=float, default=0.002)
    ap.add_argument("--temperature", type=float, default=0.2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    start = time.perf_counter()
    with open(f"{a.data}/users.csv", newline="") as f:
        ui = {r["user_id"]: n for n, r in enumerate(csv.DictReader(f))}
    with open(f"{a.data}/movies.csv", newline="") as f:
        ii = {r["movie_id"]: n for n, r in enumerate(csv.DictReader(f))}
    tr, va, te = (read(f"{a.data}/{s}/interactions.csv", ui, ii) for s in ("train", "val", "test"))
    nu, ni = len(ui), len(ii)

    def hist(*splits):
        h = np.zeros((nu, ni), dtype=np.float32)
        for u, i, _ in splits:
            h[u, i] = 1
        return h

    def fit(splits, epochs, val=None):
        u = np.concatenate([s[0][s[2]] for s in splits])
        i = np.concatenate([s[1][s[2]] for s in splits])
        counts = np.bincount(i, minlength=ni).astype(np.float64)
        log_q = np.log(np.maximum(counts, 1) / len(i)).astype(np.float32)
        ue = torch.nn.Embedding(nu, a.dim)
        ie = torch.nn.Embedding(ni, a.dim)
        torch.nn.init.normal_(ue.weight, std=0.1)
        torch.nn.init.normal_(ie.weight, std=0.1)
        opt = torch.optim.Adam(list(ue.parameters()) + list(ie.parameters()), lr=a.lr)
        rng = np.random.default_rng(0)
        for _ in range(epochs):
            order = rng.permutation(len(u))
            for b in range(0, len(u), a.batch):
                idx = order[b:b + a.batch]
                uu = F.normalize(ue(torch.from_numpy(u[idx])), dim=1)
                vv = F.normalize(ie(torch.from_numpy(i[idx])), dim=1)
                loss = in_batch_softmax(uu, vv, i[idx], a.temperature, log_q)
                opt.zero_grad()
                loss.backward()
                opt.step()
            if val is not None:
                with torch.no_grad():
                    recall_ndcg(F.normalize(ue.weight, dim=1).numpy(),
                                F.normalize(ie.weight, dim=1).numpy(), val, hist(tr))
        with torch.no_grad():
            return F.normalize(ue.weight, dim=1).numpy(), F.normalize(ie.weight, dim=1).numpy()

    U, V = fit([tr], a.epochs, val=va)
    if a.refit_epochs > 0:
        U, V = fit([tr, va], a.refit_epochs)
    seconds = time.perf_counter() - start
    rec, nd = recall_ndcg(U, V, te, hist(tr, va))
    print(json.dumps({"seconds": seconds, "threads": a.threads, "epochs": a.epochs,
                      "refit_epochs": a.refit_epochs, "test_recall@10": rec, "test_ndcg@10": nd}))


if __name__ == "__main__":
    main()
