#!/usr/bin/python3
"""The table of bench/run_movielens.sh from its results.jsonl: mean ± sample std over seeds."""
import json
import sys

import numpy as np


def cell(values):
    v = np.array(values, dtype=float)
    return f"{v.mean():.4f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.4f}"


def main():
    rows = [json.loads(line) for line in open(sys.argv[1])]
    print("| split | method | Recall@10 | NDCG@10 | Recall@20 | NDCG@20 |")
    print("| --- | --- | --- | --- | --- | --- |")
    methods = [("twotower_refit", "twotower, refit on train+val (the written config)"),
               ("ease_fit_train_val", "EASE, refit on train+val"),
               ("twotower_train", "twotower, trained on train (selected on val)"),
               ("ease_fit_train", "EASE, fit on train"),
               ("mostpop", "MostPop (train likes)")]
    for split in dict.fromkeys(r["split"] for r in rows):
        rs = [r for r in rows if r["split"] == split]
        for key, name in methods:
            if key not in rs[0]:
                continue
            cells = [cell([r[key][m] for r in rs])
                     for m in ("recall@10", "ndcg@10", "recall@20", "ndcg@20")]
            print(f"| {split} | {name} | " + " | ".join(cells) + " |")
        if all(r.get("bce_test_auc") is not None for r in rs):
            print(f"| {split} | twotower bce: test AUC of liked among rated pairs | "
                  f"{cell([r['bce_test_auc'] for r in rs])} | | | |")
        print(f"| {split} | twotower train seconds (incl. per-epoch validation and refit) | "
              f"{cell([r['train_seconds'] for r in rs])} | | | |")
        twin = [r for r in rs if r.get("twin_seconds") is not None]
        if twin:
            ratio = [r["twin_seconds"] / r["train_seconds"] for r in twin]
            print(f"| {split} | PyTorch twin seconds, same epochs (its faster of 1 and 2 threads) | "
                  f"{cell([r['twin_seconds'] for r in twin])} | ratio {cell(ratio)} | "
                  f"seeds {' '.join(str(r['seed']) for r in twin)} | |")
    seeds = sorted({r["seed"] for r in rows})
    print(f"\nseeds {' '.join(map(str, seeds))}; mean ± sample std over seeds")


if __name__ == "__main__":
    main()
