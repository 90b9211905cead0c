"""One bf16 training step of twotower (`training.precision: bf16`) against PyTorch, from the same
weights and batch (the BCE model of check_gradients.py, dropout off).

usage: python3 bench/reference/check_bf16.py MODEL.safetensors BENCH_GRAD_DUMP [--batch 256]

Three PyTorch references, each step's loss and every gradient compared as max|g - g_ref| /
max|g_ref| per tensor:
  emulated  nn.Linear replaced by an autograd function that rounds both operands of each of its
            products (x W^T forward; dy^T x and dy W backward) to bf16 and multiplies in fp32:
            the scheme nn/gemm.h states, written independently. Must agree to 1e-3: fp32's
            summation order differs, and a value that lands on the other side of a bf16
            rounding boundary moves by 2^-8 relative, so bit-equality is not expected.
  autocast  torch.autocast("cpu", dtype=torch.bfloat16): PyTorch's own mixed precision, which
            also rounds each Linear's output (and so the next layer's input gradient) to bf16.
  fp32      plain PyTorch fp32.
Weight gradients are sums over the batch with much cancellation, so relative to their largest
entry they move by far more than 2^-8 under any bf16 scheme (10-20% on a trained lab model), and
two bf16 schemes, each off fp32 by its own rounding noise, are no closer to each other than to
fp32. So the check against autocast is on accuracy: twotower bf16's distance to fp32 must be at
most 1.25x autocast's own distance to fp32 (as accurate as PyTorch's bf16, within noise), and the
two bf16 steps must agree to within the sum of those distances (printed).
Exits 1 when a checked bound fails.
"""
import argparse
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from twotower_torch import dumped_step, load_twotower  # noqa: E402


def bf16(t):
    """t rounded to bfloat16 (round to nearest even), back in float32."""
    return t.to(torch.bfloat16).to(torch.float32)


class Bf16Linear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, b):
        ctx.save_for_backward(x, w)
        return bf16(x) @ bf16(w).t() + b

    @staticmethod
    def backward(ctx, dy):
        x, w = ctx.saved_tensors
        return bf16(dy) @ bf16(w), bf16(dy).t() @ bf16(x), dy.sum(0)


def emulate(model):
    for m in model.modules():
        if isinstance(m, nn.Linear):
            m.forward = (lambda layer: lambda x: Bf16Linear.apply(x, layer.weight, layer.bias))(m)


def step(model, xu, xi, y, autocast=False):
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        z = model(torch.from_numpy(xu), torch.from_numpy(xi))
    loss = F.binary_cross_entropy_with_logits(z.float(), torch.from_numpy(y[0]))
    loss.backward()
    return loss.item(), {n: p.grad.numpy().copy() for n, p in model.named_parameters()}


def compare(label, ours, our_loss, ref, ref_loss, who="twotower bf16"):
    worst = abs(our_loss - ref_loss) / abs(ref_loss)
    rows = [("loss", worst)]
    for name, g in ref.items():
        rel = np.abs(ours[name].reshape(g.shape) - g).max() / max(np.abs(g).max(), 1e-30)
        rows.append((name, rel))
        worst = max(worst, rel)
    print(f"-- {who} against PyTorch {label}: worst relative error {worst:.1e}")
    for name, rel in rows:
        print(f"   {name:40s} {rel:.1e}")
    return worst


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("dump_tool")
    p.add_argument("--batch", type=int, default=256)
    args = p.parse_args()
    model, uenc, ienc, _ = load_twotower(args.model)
    if uenc.learned() or ienc.learned():
        sys.exit("check_bf16.py feeds random dense inputs: give it a model with dense towers")
    xu, xi, y, ours, meta = dumped_step(args.model, args.dump_tool, uenc, ienc, args.batch, "bf16")
    our_loss = float(meta["loss"])
    model.eval()  # dropout off, as in the dump
    fp32_loss, fp32 = step(model, xu, xi, y)
    auto_loss, auto = step(model, xu, xi, y, autocast=True)
    emulate(model)
    emu_loss, emu = step(model, xu, xi, y)
    e = compare("emulated", ours, our_loss, emu, emu_loss)
    a = compare("autocast bf16", ours, our_loss, auto, auto_loss)
    f = compare("fp32", ours, our_loss, fp32, fp32_loss)
    af = compare("fp32", auto, auto_loss, fp32, fp32_loss, who="PyTorch autocast bf16")
    ok = e < 1e-3 and f <= 1.25 * af and a <= f + af
    print(f"summary: twotower bf16 against emulated {e:.1e} (bound 1e-3); against fp32 {f:.1e}, "
          f"PyTorch autocast against fp32 {af:.1e} (bound {1.25 * af:.1e}); twotower against "
          f"autocast {a:.1e} (bound {f + af:.1e}): {'ok' if ok else 'FAILED'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
