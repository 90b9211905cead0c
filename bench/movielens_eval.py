#!/usr/bin/python3
"""Baselines and an independent scorer for the MovieLens protocol (README "Ranking evaluation").

Reads a folder written by `twotower data movielens` and, on its test split:
  * MostPop: items ranked by how often they are liked in train;
  * EASE (Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019):
    B = I - P / diag(P), P = (X^T X + lambda I)^-1, X the binary user x item matrix of the
    training interactions (liked only, or all rated: chosen on validation with lambda from a grid),
    scores = X_history B. Reported fitted on train (the data the two-tower model trains on) and
    refitted on train + val with the chosen settings;
  * any number of recommendation files from `twotower recommend --all-users --exclude-seen`
    (user_id,rank,movie_id,score), scored here with numpy, not by the code that made them.
Protocol: every user with >= 1 liked test movie; all movies ranked; the user's train and val movies
excluded; Recall@K = hits / min(#liked test movies, K); NDCG@K with binary gains and the ideal
DCG over min(#positives, K). Prints one JSON object.

Usage: movielens_eval.py DATA_DIR [--recs NAME=recs.csv ...] [--k 10 20]
"""
import argparse
import csv
import json
import sys

import numpy as np


def read_split(path, user_index, item_index):
    users, items, liked = [], [], []
    with open(path, newline="", encoding="utf-8") as f:
        r = csv.DictReader(f)
        for row in r:
            users.append(user_index[row["user_id"]])
            items.append(item_index[row["movie_id"]])
            liked.append(row["liked"] in ("1", "true", "True"))
    return np.array(users), np.array(items), np.array(liked, dtype=bool)


def matrix(split, n_users, n_items, liked_only):
    u, i, y = split
    m = np.zeros((n_users, n_items), dtype=np.float64)
    if liked_only:
        m[u[y], i[y]] = 1.0
    else:
        m[u, i] = 1.0
    return m


def metrics_from_topk(topk, positives, ks, n_items=None):
    """topk: dict user -> list of item rows best first; positives: dict user -> set."""
    out = {}
    for k in ks:
        rec, ndcg = [], []
        for u, pos in positives.items():
            ranked = topk.get(u, [])[:k]
            hits = [1.0 if it in pos else 0.0 for it in ranked]
            ideal = min(len(pos), k)
            rec.append(sum(hits) / ideal)
            dcg = sum(h / np.log2(r + 2) for r, h in enumerate(hits))
            idcg = sum(1.0 / np.log2(r + 2) for r in range(ideal))
            ndcg.append(dcg / idcg)
        out[f"recall@{k}"] = float(np.mean(rec))
        out[f"ndcg@{k}"] = float(np.mean(ndcg))
        if n_items:
            # Catalogue coverage: the share of all items in at least one evaluated user's top k.
            shown = {it for u in positives for it in topk.get(u, [])[:k]}
            out[f"coverage@{k}"] = len(shown) / n_items
    return out


def topk_from_scores(scores, exclude, users, kmax):
    users = list(users)
    s = scores[users].copy()
    s[exclude[users] > 0] = -np.inf
    # A stable sort of the negated scores: higher first, ties to the lower item row (as
    # twotower's index orders them).
    order = np.argsort(-s, axis=1, kind="stable")[:, :kmax]
    return {u: [int(i) for i in order[n]] for n, u in enumerate(users)}


def ease(x, lam):
    g = x.T @ x
    g[np.diag_indices_from(g)] += lam
    p = np.linalg.inv(g)
    b = -p / np.diag(p)
    b[np.diag_indices_from(b)] = 0.0
    return b


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--recs", action="append", default=[], help="NAME=recommendations.csv")
    ap.add_argument("--k", type=int, nargs="+", default=[10, 20])
    ap.add_argument("--lambdas", type=float, nargs="+",
                    default=[50, 100, 200, 300, 500, 800, 1200, 2000, 3000])
    a = ap.parse_args()

    with open(f"{a.data}/users.csv", newline="", encoding="utf-8") as f:
        user_ids = [row["user_id"] for row in csv.DictReader(f)]
    with open(f"{a.data}/movies.csv", newline="", encoding="utf-8") as f:
        item_ids = [row["movie_id"] for row in csv.DictReader(f)]
    ui = {u: n for n, u in enumerate(user_ids)}
    ii = {m: n for n, m in enumerate(item_ids)}
    nu, ni = len(user_ids), len(item_ids)
    train = read_split(f"{a.data}/train/interactions.csv", ui, ii)
    val = read_split(f"{a.data}/val/interactions.csv", ui, ii)
    test = read_split(f"{a.data}/test/interactions.csv", ui, ii)

    def positives(split):
        u, i, y = split
        pos = {}
        for uu, it in zip(u[y], i[y]):
            pos.setdefault(int(uu), set()).add(int(it))
        return pos

    val_pos, test_pos = positives(val), positives(test)
    seen_train = matrix(train, nu, ni, False)
    seen_trval = np.maximum(seen_train, matrix(val, nu, ni, False))
    kmax = max(a.k)
    result = {"data": a.data, "users_evaluated": len(test_pos), "items": ni}

    # MostPop: liked counts in train.
    counts = matrix(train, nu, ni, True).sum(axis=0)
    pop = np.tile(counts, (nu, 1))
    result["mostpop"] = metrics_from_topk(
        topk_from_scores(pop, seen_trval, test_pos.keys(), kmax), test_pos, a.k, ni)

    # EASE: (liked only | all rated) x lambda chosen on validation NDCG@first K.
    best = None
    k0 = a.k[0]
    for liked_only in (True, False):
        x = matrix(train, nu, ni, liked_only)
        for lam in a.lambdas:
            m = metrics_from_topk(topk_from_scores(x @ ease(x, lam), seen_train, val_pos.keys(),
                                                   kmax), val_pos, a.k)
            if best is None or m[f"ndcg@{k0}"] > best[0][f"ndcg@{k0}"]:
                best = (m, liked_only, lam)
    _, liked_only, lam = best
    x_tr = matrix(train, nu, ni, liked_only)
    result["ease_settings"] = {"lambda": lam, "liked_only": liked_only, "val": best[0]}
    result["ease_fit_train"] = metrics_from_topk(
        topk_from_scores(x_tr @ ease(x_tr, lam), seen_trval, test_pos.keys(), kmax), test_pos, a.k,
        ni)
    x_tv = np.maximum(x_tr, matrix(val, nu, ni, liked_only))
    result["ease_fit_train_val"] = metrics_from_topk(
        topk_from_scores(x_tv @ ease(x_tv, lam), seen_trval, test_pos.keys(), kmax), test_pos, a.k,
        ni)

    for spec in a.recs:
        name, path = spec.split("=", 1)
        topk = {}
        with open(path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                u = ui[row["user_id"]]
                it = ii[row["movie_id"]]
                if seen_trval[u, it] > 0:
                    sys.exit(f"{path}: user {row['user_id']} was recommended movie "
                             f"{row['movie_id']}, which they rated in train or val")
                topk.setdefault(u, []).append((int(row["rank"]), it))
        topk = {u: [it for _, it in sorted(v)] for u, v in topk.items()}
        if min(len(v) for v in topk.values()) < kmax:
            sys.exit(f"{path}: fewer than {kmax} recommendations for some user (use --k {kmax})")
        result[name] = metrics_from_topk(topk, test_pos, a.k, ni)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
