#!/usr/bin/python3
"""Checks that a two-tower model with a user-history feature (features.history) loads into the
PyTorch reference with load_state_dict(strict=True) and scores `recommend --all-users` as
twotower does. Each user's history is rebuilt here from the interaction files, independently of
the C++ code: the user's liked interactions of the files taken together, ordered by the timestamp
column (ties in file order), the last `length` kept, mapped to movie_id table rows through the
model's encoder vocabulary; then pooled by the padded, masked PyTorch module.

usage: python3 bench/reference/check_history.py MODEL USERS.csv ITEMS.csv RECS.csv HISTORY.csv...
RECS.csv: `twotower recommend --model MODEL --all-users --exclude-seen --out RECS.csv`
(user_id,rank,<item id>,score; score = <u, v> for a softmax model, 6 decimals); HISTORY.csv: the
files the recommend read histories from (the model's train and val files). Exits 1 when a score
differs by more than 1e-5 (the 6-decimal rounding included).
"""
import csv
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from twotower_torch import fnv1a64, load_twotower  # noqa: E402


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def main():
    model_path, users_path, items_path, recs_path = sys.argv[1:5]
    history_paths = sys.argv[5:]
    model, uenc, ienc, meta = load_twotower(model_path)
    model.eval()
    spec = uenc.state["history"]
    schema = json.loads(meta["schema"])
    time_col, label_col = schema["timestamp"], schema["label"]
    uid, iid = uenc.state["id"], ienc.state["id"]
    id_state = next(c for c in ienc.state["columns"] if c["column"] == iid)

    def table_row(item):
        if id_state.get("buckets", 0) > 0:
            return fnv1a64(item) % id_state["buckets"]
        vocab = {v: k for k, v in enumerate(id_state["vocabulary"])}
        return vocab.get(item, -1) + 1

    events = {}  # user -> [(time, order, table row)]
    order = 0
    for path in history_paths:
        for r in read_csv(path):
            order += 1
            if r[label_col] not in ("1", "true", "True"):
                continue
            t = float(r[time_col]) if time_col else order
            events.setdefault(r[uid], []).append((t, order, table_row(r[iid])))
    users, items = read_csv(users_path), read_csv(items_path)
    L = spec["length"]
    ids = torch.zeros(len(users), L, dtype=torch.long)
    mask = torch.zeros(len(users), L, dtype=torch.bool)
    for n, u in enumerate(users):
        h = [row for _, _, row in sorted(events.get(u[uid], []))][-L:]
        ids[n, :len(h)] = torch.tensor(h, dtype=torch.long)
        mask[n, :len(h)] = True
    with torch.no_grad():
        xu, ub = uenc.encode(users)
        xi, ib = ienc.encode(items)
        u = model.user_tower(torch.from_numpy(xu), ub, model.history_input(ids, mask)).double()
        v = model.item_tower(torch.from_numpy(xi), ib).double()
    urow = {r[uid]: k for k, r in enumerate(users)}
    irow = {r[iid]: k for k, r in enumerate(items)}
    worst, rows = 0.0, 0
    for r in read_csv(recs_path):
        ours = float(u[urow[r[uid]]] @ v[irow[r[iid]]])
        worst = max(worst, abs(ours - float(r["score"])))
        rows += 1
    print(f"load_state_dict(strict=True): ok; history {spec['pooling']}, last {L}, "
          f"{spec['heads']} head(s); {rows} recommendations re-scored, "
          f"max |torch <u, v> - twotower score| = {worst:.2e}")
    sys.exit(0 if worst < 1e-5 and rows > 0 else 1)


if __name__ == "__main__":
    main()
