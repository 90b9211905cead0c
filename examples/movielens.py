"""twotower on MovieLens from Python, against an EASE computed here in numpy on the same split.

    PYTHONPATH=build/python /usr/bin/python3 examples/movielens.py [--src ../shared/data/ml-100k]
        [--split random] [--seed 0] [--out experiments/py_movielens]

Converts the release (twotower.movielens), trains its recipe (out/twotower.yaml: early stopping
on validation Recall@10, then a refit on train + validation), recommends 10 items for every user
with their train and validation items excluded, and scores those lists here, not by twotower.
EASE (Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019) gets the same
chance: its lambda is chosen on validation (fitted on train), then it is refitted on train +
validation. Protocol (README "Ranking evaluation"): every user with a liked test item; all items
ranked; Recall@10 = hits / min(liked test items, 10).
"""

import argparse
import os
import sys

import numpy as np

import twotower

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read(folder, split, users, items):
    t = twotower.read_table(os.path.join(folder, split, "interactions.csv"))
    return (t["user_id"].astype(str).map(users).to_numpy(),
            t["movie_id"].astype(str).map(items).to_numpy(), t["liked"].to_numpy() == 1)


def dense(parts, n_users, n_items, liked_only=True):
    x = np.zeros((n_users, n_items))
    for u, i, y in parts:
        keep = y if liked_only else np.ones_like(y)
        x[u[keep], i[keep]] = 1.0
    return x


def ease(x, lam):
    g = x.T @ x + lam * np.eye(x.shape[1])
    p = np.linalg.inv(g)
    b = -p / np.diag(p)
    np.fill_diagonal(b, 0.0)
    return x @ b


def recall_at_10(scores, seen, truth):
    scores = np.where(seen > 0, -np.inf, scores)
    users = np.flatnonzero(truth.sum(axis=1) > 0)
    top = np.argsort(-scores[users], axis=1, kind="stable")[:, :10]
    hits = np.take_along_axis(truth[users], top, axis=1).sum(axis=1)
    return float(np.mean(hits / np.minimum(truth[users].sum(axis=1), 10)))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--src", default=os.path.join(REPO, "..", "shared", "data", "ml-100k"))
    p.add_argument("--split", default="random")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="experiments/py_movielens")
    a = p.parse_args()
    if not os.path.isdir(a.src):
        sys.exit(f"{a.src}: no MovieLens release here (give --src)")
    data = os.path.join(a.out, "data")
    twotower.movielens(a.src, data, split=a.split, seed=a.seed)
    run = twotower.train(os.path.join(data, "twotower.yaml"),
                         overrides={"seed": a.seed, "output.dir": os.path.join(a.out, "runs")},
                         progress=sys.stderr.isatty())
    model = run.model  # the refitted weights
    users = {u: n for n, u in enumerate(model.user_ids)}
    items = {i: n for n, i in enumerate(model.item_ids)}
    train, val, test = (read(data, s, users, items) for s in ("train", "val", "test"))
    nu, ni = len(users), len(items)

    # twotower's lists, scored here.
    ids, _ = model.recommend(model.user_ids, k=10, exclude_seen=True)
    ours = np.full((nu, ni), -np.inf)
    for u in range(nu):
        for rank, i in enumerate(ids[u]):
            if i is not None:
                ours[u, items[i]] = 10 - rank
    seen = dense([train, val], nu, ni, liked_only=False)
    truth = dense([test], nu, ni)
    twotower_recall = recall_at_10(ours, seen, truth)

    # EASE: lambda on validation, then refitted on train + validation.
    x_train = dense([train], nu, ni)
    val_truth = dense([val], nu, ni)
    train_seen = dense([train], nu, ni, liked_only=False)
    best = max((recall_at_10(ease(x_train, lam), train_seen, val_truth), lam)
               for lam in (50.0, 100.0, 200.0, 500.0, 1000.0))
    ease_recall = recall_at_10(ease(dense([train, val], nu, ni), best[1]), seen, truth)
    print(f"test Recall@10: twotower {twotower_recall:.4f}, EASE (lambda {best[1]:g}) "
          f"{ease_recall:.4f}")


if __name__ == "__main__":
    main()
