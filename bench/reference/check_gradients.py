"""One training step of twotower and of the PyTorch reference from the same weights: compares the
loss and every gradient (relative error max|g_tt - g_torch| / max|g_torch| per tensor).

usage: python3 bench/reference/check_gradients.py MODEL.safetensors BENCH_GRAD_DUMP [--batch 256]
Draws a batch of random standardised inputs, runs `bench_grad_dump` on it, runs PyTorch
(dropout off, i.e. model.eval()), prints one line per tensor and the worst relative error.
"""
import argparse
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from twotower_torch import dumped_step, load_twotower, report_gradient_parity  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("dump_tool")
    p.add_argument("--batch", type=int, default=256)
    args = p.parse_args()
    model, uenc, ienc, _ = load_twotower(args.model)
    xu, xi, y, ours, meta = dumped_step(args.model, args.dump_tool, uenc, ienc, args.batch)
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
