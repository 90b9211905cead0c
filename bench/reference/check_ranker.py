#!/usr/bin/python3
"""Checks that a ranker file (model.kind: ranker) loads into the PyTorch reference with
load_state_dict(strict=True) and scores the pairs of `recommend --rerank` as twotower does.

usage: python3 bench/reference/check_ranker.py RANKER.safetensors USERS.csv ITEMS.csv RECS.csv
RECS.csv: `twotower recommend --model TWO_TOWER --rerank RANKER --all-users --out RECS.csv`
(user_id,rank,<item id>,score; score = sigmoid(ranker logit), 6 decimals). Scores every row in
PyTorch (eval mode), prints max |sigmoid(torch logit) - score| and whether each user's rows are
in rank order with non-increasing scores; exits 1 above 1e-5 (the 6-decimal rounding included).
"""
import csv
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from twotower_torch import load_ranker  # noqa: E402


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def main():
    model_path, users_path, items_path, recs_path = sys.argv[1:5]
    model, uenc, ienc, _ = load_ranker(model_path)
    model.eval()
    users = {r[uenc.state["id"]]: r for r in read_csv(users_path)}
    items = {r[ienc.state["id"]]: r for r in read_csv(items_path)}
    recs = read_csv(recs_path)
    item_col = list(recs[0])[2]
    with torch.no_grad():
        xu, ub = uenc.encode([users[r["user_id"]] for r in recs])
        xi, ib = ienc.encode([items[r[item_col]] for r in recs])
        p = torch.sigmoid(model(torch.from_numpy(xu), torch.from_numpy(xi), ub, ib).double())
    diff = np.abs(p.numpy() - np.array([float(r["score"]) for r in recs])).max()
    # Each user's rows: ranks 1, 2, ... in file order, scores non-increasing.
    ordered, prev = True, None
    for r in recs:
        same = prev is not None and prev["user_id"] == r["user_id"]
        ordered &= int(r["rank"]) == (int(prev["rank"]) + 1 if same else 1)
        ordered &= not same or float(r["score"]) <= float(prev["score"])
        prev = r
    n_users = len({r["user_id"] for r in recs})
    print(f"load_state_dict(strict=True): ok; {len(recs)} pairs of {n_users} users, "
          f"input width {model.deep[0].in_features}, max |sigmoid(torch logit) - twotower "
          f"score| = {diff:.2e}; ranks in score order: {'ok' if ordered else 'NO'}")
    sys.exit(0 if diff < 1e-5 and ordered else 1)


if __name__ == "__main__":
    main()
