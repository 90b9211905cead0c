#!/usr/bin/python3
"""One in-batch softmax step of twotower and of the PyTorch reference from the same weights and the
same batch: compares the loss and every gradient (embedding tables included).

usage: check_softmax.py MODEL.safetensors USERS.csv ITEMS.csv BENCH_SOFTMAX_GRAD_DUMP
       [--batch 256] [--temperature 0.2]
The batch: random (user, item) rows with one item repeated (an accidental hit) and random log q.
Prints one line per tensor and the worst relative error max|g_tt - g_torch| / max|g_torch|.
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from twotower_torch import (in_batch_softmax, load_twotower, parity_batch,  # noqa: E402
                            read_safetensors, report_gradient_parity)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("users")
    p.add_argument("items")
    p.add_argument("dump_tool")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--temperature", type=float, default=0.2)
    a = p.parse_args()
    model, uenc, ienc, _ = load_twotower(a.model)
    users, items, rng, pairs = parity_batch(a.users, a.items, a.batch)  # with an accidental hit
    log_q = np.log(rng.dirichlet(np.ones(len(items)))).astype(np.float32)[None, :]
    with tempfile.TemporaryDirectory() as d:
        pairs_path, q_path, out = (os.path.join(d, n) for n in ("p.npy", "q.npy", "g.safetensors"))
        np.save(pairs_path, pairs.astype(np.float32))
        np.save(q_path, log_q)
        subprocess.run([a.dump_tool, a.model, a.users, a.items, pairs_path, q_path,
                        str(a.temperature), out], check=True, stdout=subprocess.DEVNULL)
        ours, meta = read_safetensors(out)
    model.eval()
    model.zero_grad()
    ud, ub = uenc.encode([users[i] for i in pairs[0]])
    idn, ib = ienc.encode([items[i] for i in pairs[1]])
    u = model.user_tower(torch.from_numpy(ud), ub)
    v = model.item_tower(torch.from_numpy(idn), ib)
    loss = in_batch_softmax(u, v, pairs[1], a.temperature, log_q[0])
    loss.backward()
    worst = report_gradient_parity(model, ours, float(meta["loss"]), loss.item(),
                                   skip=("scorer.",))  # the softmax loss does not use the scorer
    sys.exit(0 if worst < 1e-4 else 1)


if __name__ == "__main__":
    main()
