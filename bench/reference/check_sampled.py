#!/usr/bin/python3
"""One step of each sampled objective (training.loss mixed, bpr, triplet; softmax with hard
negatives) in twotower and in the PyTorch reference (twotower_torch.sampled_loss, written from
loss.h's definitions) from the same weights, the same batch and the same drawn negatives:
compares the loss and every gradient (embedding tables included).

usage: check_sampled.py MODEL.safetensors USERS.csv ITEMS.csv BENCH_SOFTMAX_GRAD_DUMP
       [--batch 128] [--negatives 32] [--hard 8] [--easy 4] [--temperature 0.2] [--margin 0.5]
Each case runs without hard negatives, with `hard`, and with `hard` plus `easy` easy negatives
(chosen inside the loss from the step's seed: the reference makes the same draws with its own
xoshiro256**, twotower_torch.easy_choice).
The batch: random (user, item) rows with one item repeated (an accidental hit); q: a random
distribution over the items; negatives drawn from it (the samplers' draws are tested in the C++
suite; here both sides get the same ones). Prints one line per case and tensor, and exits 1 when
any relative error max|g_tt - g_torch| / max|g_torch| exceeds 1e-4.
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from twotower_torch import (load_twotower, parity_batch, read_safetensors,  # noqa: E402
                            report_gradient_parity, sampled_loss)

CASES = [("softmax", "in_batch"), ("softmax", "mixed"), ("bpr", "uniform"),
         ("bpr", "popularity"), ("bpr", "in_batch"), ("triplet", "uniform"),
         ("triplet", "popularity"), ("triplet", "in_batch")]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("users")
    p.add_argument("items")
    p.add_argument("dump_tool")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--negatives", type=int, default=32)
    p.add_argument("--hard", type=int, default=8)
    p.add_argument("--easy", type=int, default=4)
    p.add_argument("--seed", type=int, default=0x5EED)
    p.add_argument("--temperature", type=float, default=0.2)
    p.add_argument("--margin", type=float, default=0.5)
    a = p.parse_args()
    model, uenc, ienc, _ = load_twotower(a.model)
    users, items, rng, pairs = parity_batch(a.users, a.items, a.batch)  # with an accidental hit
    q = rng.dirichlet(np.ones(len(items)))
    worst_all = 0.0
    for objective, sampler in CASES:
        for hard, easy in ((0, 0), (a.hard, 0), (a.hard, a.easy)):
            if objective == "softmax" and sampler == "in_batch" and hard == 0:
                continue  # that is InBatchSoftmaxLoss: check_softmax.py
            m = 0 if sampler == "in_batch" else a.negatives
            if sampler == "popularity":
                negatives = rng.choice(len(items), size=m, p=q)
            else:
                negatives = rng.integers(0, len(items), m)
            with tempfile.TemporaryDirectory() as d:
                paths = [os.path.join(d, f) for f in ("p.npy", "n.npy", "q.npy", "g.safetensors")]
                np.save(paths[0], pairs.astype(np.float32))
                np.save(paths[1], negatives.astype(np.float32)[None, :])
                np.save(paths[2], q.astype(np.float32)[None, :])
                subprocess.run([a.dump_tool, "--sampled", a.model, a.users, a.items, *paths,
                                objective, sampler, str(hard), str(a.temperature), str(a.margin),
                                str(easy), str(a.seed)],
                               check=True, stdout=subprocess.DEVNULL)
                ours, meta = read_safetensors(paths[3])
            model.eval()
            model.zero_grad()
            rows = np.concatenate([pairs[1], negatives]).astype(np.int64)
            ud, ub = uenc.encode([users[i] for i in pairs[0]])
            idn, ib = ienc.encode([items[i] for i in rows])
            u = model.user_tower(torch.from_numpy(ud), ub)
            v = model.item_tower(torch.from_numpy(idn), ib)
            # q as twotower reads it: float32.
            loss = sampled_loss(u, v, rows, pairs[0], objective, sampler,
                                q.astype(np.float32).astype(np.float64), len(items), hard,
                                a.temperature, a.margin, easy=easy, seed=a.seed)
            loss.backward()
            print(f"== {objective} / {sampler}, hard negatives {hard}, easy {easy}, {m} drawn")
            worst = report_gradient_parity(model, ours, float(meta["loss"]), loss.item(),
                                           skip=("scorer.",))
            worst_all = max(worst_all, worst)
    print(f"worst relative error over all cases: {worst_all:.2e}")
    sys.exit(0 if worst_all < 1e-4 else 1)


if __name__ == "__main__":
    main()
