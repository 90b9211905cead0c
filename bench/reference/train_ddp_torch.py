#!/usr/bin/python3
"""The PyTorch peer of `mpirun -np N twotower train` (bench/run_mpi_bench.sh): the model and the
objective of train_scale_torch.py (id tables as nn.EmbeddingBag with sparse gradients and
SparseAdam, the lab's features, Linear -> ReLU -> Linear, L2-normalised; in-batch softmax with
logQ correction and accidental-hit removal), trained by N processes with
DistributedDataParallel over gloo, as a PyTorch user scales out on CPUs.

Each rank takes its share of every global batch of N x --batch examples (the same shuffled
order on every rank), and, as twotower does, the loss runs over the global batch: the tower
outputs are allgathered with torch.distributed.nn.functional.all_gather (differentiable; its
backward returns the other ranks' gradients to their owners), every rank computes the same
global loss, and DDP averages the parameters' gradients (dense allreduce; the sparse table
gradients by gloo's sparse allreduce), which sums the true gradient's shares once.

usage: train_ddp_torch.py DATA_DIR [--ranks 2] [--batch 512] [--threads 1] [--max-examples N]
Prints one JSON line (rank 0): examples trained, epoch seconds, examples per second, mean loss.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.distributed.nn.functional import all_gather
from torch.nn.parallel import DistributedDataParallel as DDP

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_scale_torch import Tower, batched_loss, read_interactions, read_table  # noqa: E402


class Model(torch.nn.Module):
    def __init__(self, users, items, user_width, item_width, dim, hidden):
        super().__init__()
        self.user = Tower(users, user_width, dim, hidden)
        self.item = Tower(items, item_width, dim, hidden)

    def forward(self, bu, du, bi, di):
        return self.user(bu, du), self.item(bi, di)


def run(rank, a, data):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(a.port)
    torch.set_num_threads(a.threads)
    dist.init_process_group("gloo", rank=rank, world_size=a.ranks)
    users, items, user_dense, item_dense, q, n_users, n_items = data
    torch.manual_seed(a.seed)  # the same initial weights on every rank (DDP also broadcasts)
    model = DDP(Model(n_users, n_items, user_dense.shape[1], item_dense.shape[1], a.dim,
                      a.hidden))
    tables = [model.module.user.table.weight, model.module.item.table.weight]
    dense = [p for t in (model.module.user, model.module.item) for p in t.mlp.parameters()]
    sparse_opt = torch.optim.SparseAdam(tables, lr=a.lr)
    dense_opt = torch.optim.Adam(dense, lr=a.lr)
    order = np.random.default_rng(a.seed).permutation(len(users))
    if a.max_examples:
        order = order[:a.max_examples]
    global_batch = a.batch * a.ranks
    total, examples = 0.0, 0
    dist.barrier()
    start = time.perf_counter()
    for begin in range(0, len(order), global_batch):
        idx = order[begin:begin + global_batch]
        share = np.array_split(idx, a.ranks)[rank]  # twotower's dist::Share: contiguous
        bu = torch.from_numpy(users[share])
        bi = torch.from_numpy(items[share])
        u, v = model(bu, user_dense[bu], bi, item_dense[bi])
        u_all = torch.cat(all_gather(u))
        v_all = torch.cat(all_gather(v))
        bi_all = torch.from_numpy(items[idx])
        loss = batched_loss("softmax", u_all, v_all, bi_all, q, n_items, 0, a.temperature)
        sparse_opt.zero_grad()
        dense_opt.zero_grad()
        loss.backward()
        sparse_opt.step()
        dense_opt.step()
        total += loss.item() * len(idx)
        examples += len(idx)
    dist.barrier()
    seconds = time.perf_counter() - start
    if rank == 0:
        print(json.dumps({"engine": "pytorch-ddp-gloo", "ranks": a.ranks, "threads": a.threads,
                          "batch_per_rank": a.batch, "examples": int(examples),
                          "epoch_seconds": round(seconds, 2),
                          "examples_per_second": round(examples / seconds),
                          "mean_loss": total / examples}), flush=True)
    dist.destroy_process_group()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("data")
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=512, help="per rank")
    p.add_argument("--dim", type=int, default=32)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--temperature", type=float, default=0.2)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--max-examples", type=int, default=0)
    p.add_argument("--port", type=int, default=29517)
    a = p.parse_args()
    ui, user_dense = read_table(f"{a.data}/users.csv", ["age"],
                                ["gender", "favorite_genre", "activity_level"])
    ii, item_dense = read_table(f"{a.data}/movies.csv", ["year", "duration", "avg_rating"],
                                ["genre"])
    users, items = read_interactions(f"{a.data}/train/interactions.csv", ui, ii)
    counts = np.maximum(np.bincount(items, minlength=len(ii)).astype(np.float64), 1.0)
    q = torch.from_numpy(counts / counts.sum())
    data = (users, items, user_dense, item_dense, q, len(ui),
            len(ii))
    # fork: the ranks share the loaded data (read once here, as each twotower rank reads its own).
    mp.start_processes(run, args=(a, data), nprocs=a.ranks, start_method="fork")


if __name__ == "__main__":
    main()
