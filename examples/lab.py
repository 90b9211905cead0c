"""The lab, in Python, with twotower: the steps of the PyTorch notebook it grew from (generate
synthetic movie data, read the Parquet tables with pandas, train a two-tower model, check
validation and test AUC, pre-compute the item embeddings, top-10 for a user, an approximate
index searched like faiss, recommendations for every user).

    PYTHONPATH=build/python /usr/bin/python3 examples/lab.py [--out DIR] [--epochs N]

Runs in the test suite (python/tests/test_examples.py) with few epochs.
"""

import argparse
import os
import sys

import numpy as np

import twotower

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="experiments/py_lab", help="data and runs go here")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    # 1. Data: users, movies and train / val / test interactions, as Parquet.
    data = os.path.join(args.out, "data")
    sizes = twotower.generate(data, users=1000, movies=500, interactions=10000, seed=args.seed,
                              format="parquet")
    print(f"generated {sizes['train']} / {sizes['val']} / {sizes['test']} interactions")

    # 2. The tables as pandas DataFrames (twotower's Parquet reader, the CLI's types).
    users = twotower.read_table(os.path.join(data, "users.parquet"))
    movies = twotower.read_table(os.path.join(data, "movies.parquet"))
    train = twotower.read_table(os.path.join(data, "train", "interactions.parquet"))
    print(f"{len(users)} users, {len(movies)} movies; liked rate in train "
          f"{train['liked'].mean():.3f}")

    # 3. Train the lab's model (MLP towers, L2-normalised dot product, BCE, Adam, early stopping)
    # on the DataFrames; the config file gives the rest.
    run = twotower.train(os.path.join(REPO, "config", "ranking_config.yaml"),
                         overrides={"training.epochs": args.epochs, "seed": args.seed,
                                    "output.dir": os.path.join(args.out, "runs")},
                         users=users, items=movies, train=train,
                         val=os.path.join(data, "val", "interactions.parquet"),
                         test=os.path.join(data, "test", "interactions.parquet"),
                         progress=sys.stderr.isatty())
    best = run.metrics.loc[run.metrics["epoch"] == run.best_epoch].iloc[0]
    print(f"best epoch {run.best_epoch}: val AUC {best['val_auc']:.4f}; "
          f"test AUC {run.test_metrics['auc']:.4f}")

    # 4. Pre-computed item embeddings and top-10 for one user.
    model = run.model
    item_vectors = model.encode_items()  # float32 (items, dim)
    user = model.user_ids[0]
    ids, scores = model.recommend(user, k=10)
    print(f"top 10 for user {user}: {list(ids)}")

    # 5. An HNSW index over the embeddings, searched with the user's vector; its top 10 against
    # the exact top 10 (recommend without exclusions).
    index = twotower.Index.build(item_vectors, model.item_ids, kind="hnsw", M=32,
                                 ef_construction=200)
    hit_scores, hit_ids = index.search(model.encode_users([user]), k=10)
    exact_ids, _ = model.recommend(user, k=10, exclude_seen=False)
    overlap = len(set(hit_ids[0]) & set(exact_ids))
    print(f"HNSW top 10 shares {overlap} of 10 with the exact top 10")

    # 6. Recommendations for every user, as a DataFrame.
    all_ids, all_scores = model.recommend(model.user_ids, k=10)
    recs = {"user_id": np.repeat(model.user_ids, 10), "rank": np.tile(np.arange(1, 11),
                                                                      len(model.user_ids)),
            "item_id": all_ids.ravel(), "score": all_scores.ravel()}
    import pandas as pd

    recs = pd.DataFrame(recs).dropna()
    out = os.path.join(args.out, "recommendations.parquet")
    twotower.write_table(recs, out)
    print(f"{len(recs)} recommendations for {len(model.user_ids)} users -> {out}")


if __name__ == "__main__":
    main()
