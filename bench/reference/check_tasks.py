#!/usr/bin/python3
"""Recomputes a multi-task model's test task metrics in PyTorch and compares them with the run's
test_metrics.json: the model file loads into twotower_torch.TwoTower with
load_state_dict(strict=True) (task heads included), and the RMSE of each regression head over the
test pairs and the accuracy of each item_class head over the test split's labelled items are
computed here from the definitions (tasks.h), independently of the C++ code.

usage: python3 bench/reference/check_tasks.py MODEL USERS.csv ITEMS.csv TEST.csv TEST_METRICS.json
"""
import csv
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from twotower_torch import load_twotower  # noqa: E402


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def main():
    model_path, users_path, items_path, test_path, metrics_path = sys.argv[1:6]
    model, uenc, ienc, meta = load_twotower(model_path)
    model.eval()
    cfg = json.loads(meta["model"])
    users, items, test = read_csv(users_path), read_csv(items_path), read_csv(test_path)
    uid, iid = uenc.state["id"], ienc.state["id"]
    urow = {r[uid]: i for i, r in enumerate(users)}
    irow = {r[iid]: i for i, r in enumerate(items)}
    with torch.no_grad():
        xu, ub = uenc.encode(users)
        xi, ib = ienc.encode(items)
        u = model.user_tower(torch.from_numpy(xu), ub).double()
        v = model.item_tower(torch.from_numpy(xi), ib).double()
    expected = json.load(open(metrics_path))["tasks"]
    worst = 0.0
    for t in cfg["tasks"]:
        head = model.tasks[t["name"]]
        w, b = head.weight.detach().double(), head.bias.detach().double()
        if t["type"] == "regression":
            us = torch.tensor([urow[r[uid]] for r in test])
            its = torch.tensor([irow[r[iid]] for r in test])
            y = torch.tensor([float(r[t["column"]]) for r in test], dtype=torch.float64)
            z = (u[us] * v[its]) @ w[0] + b[0]
            ours, metric = float(torch.sqrt(((z - y) ** 2).mean())), "rmse"
        else:
            index = {c: k for k, c in enumerate(t["classes"])}
            scored = correct = 0
            for item in sorted({irow[r[iid]] for r in test}):
                cell = items[item][t["column"]]
                parts = cell.split(t["delimiter"]) if t["delimiter"] else [cell]
                labels = {index[p] for p in parts if p in index}
                if not labels:
                    continue
                scored += 1
                correct += int(torch.argmax(v[item] @ w.T + b)) in labels
            ours, metric = correct / scored, "accuracy"
        theirs = expected[t["name"]][metric]
        worst = max(worst, abs(ours - theirs))
        print(f"task {t['name']}: {metric} torch {ours:.6f}, twotower {theirs:.6f}")
    print(f"load_state_dict(strict=True): ok; max |torch - twotower| = {worst:.2e}")
    sys.exit(0 if worst < 1e-4 else 1)


if __name__ == "__main__":
    main()
