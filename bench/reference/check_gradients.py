"""One training step of twotower and of the PyTorch reference from the same weights: compares the
loss and every gradient (relative error max|g_tt - g_torch| / max|g_torch| per tensor).

usage: python3 bench/reference/check_gradients.py MODEL.safetensors BENCH_GRAD_DUMP [--batch 256]
Draws a batch of random standardised inputs, runs `bench_grad_dump` on it, runs PyTorch
(dropout off, i.e. model.eval()), prints one line per tensor and the worst relative error.
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from twotower_torch import load_twotower, read_safetensors, report_gradient_parity  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("dump_tool")
    p.add_argument("--batch", type=int, default=256)
    args = p.parse_args()
    model, uenc, ienc, _ = load_twotower(args.model)
    rng = np.random.default_rng(0)
    xu = rng.standard_normal((args.batch, uenc.width())).astype(np.float32)
    xi = rng.standard_normal((args.batch, ienc.width())).astype(np.float32)
    y = rng.integers(0, 2, (1, args.batch)).astype(np.float32)
    with tempfile.TemporaryDirectory() as d:
        paths = [os.path.join(d, n) for n in ("xu.npy", "xi.npy", "y.npy", "grads.safetensors")]
        for path, a in zip(paths, (xu, xi, y)):
            np.save(path, a)
        subprocess.run([args.dump_tool, args.model, *paths], check=True, stdout=subprocess.DEVNULL)
        ours, meta = read_safetensors(paths[3])
    model.eval()  # dropout off, as in the dump
    if uenc.learned() or ienc.learned():
        sys.exit("check_gradients.py feeds random dense inputs: use check_softmax.py for models "
                 "with learned (embedding) features")
    model.zero_grad()
    loss = F.binary_cross_entropy_with_logits(model(torch.from_numpy(xu), torch.from_numpy(xi)),
                                              torch.from_numpy(y[0]))
    loss.backward()
    worst = report_gradient_parity(model, ours, float(meta["loss"]), loss.item())
    sys.exit(0 if worst < 1e-5 else 1)


if __name__ == "__main__":
    main()
