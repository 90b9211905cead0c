"""PyTorch reference of twotower's model, encoder and model file (the peer for bench/ and the
interoperability check). Uses only Debian's python3-torch and python3-numpy.

The module's state_dict names and shapes are exactly those of twotower's .safetensors files:
user_tower.layers.{0,3,6}.{weight,bias}, item_tower.layers..., scorer.log_scale, scorer.bias.
"""
import json
import struct

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def read_safetensors(path):
    """Independent safetensors reader: returns ({name: np.ndarray}, metadata dict)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    meta = header.pop("__metadata__", {})
    data = raw[8 + n :]
    tensors = {}
    for name, e in header.items():
        assert e["dtype"] == "F32", e
        b, end = e["data_offsets"]
        tensors[name] = np.frombuffer(data[b:end], dtype="<f4").reshape(e["shape"]).copy()
    return tensors, meta


def write_safetensors(path, tensors, metadata):
    header, offset, blobs = {}, 0, []
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name], dtype="<f4")
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
        blobs.append(a.tobytes())
    header["__metadata__"] = metadata
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


class Tower(nn.Module):
    def __init__(self, input_dim, hidden_dims, embedding_dim, dropout):
        super().__init__()
        layers, prev = [], input_dim
        for h in hidden_dims:
            layers += [nn.Linear(prev, h), nn.ReLU(), nn.Dropout(dropout)]
            prev = h
        layers.append(nn.Linear(prev, embedding_dim))
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        return F.normalize(self.layers(x), dim=1)


class TwoTower(nn.Module):
    """logit = exp(log_scale) * <u, v> + bias; cosine mode keeps log_scale = 0 and bias = 0."""

    def __init__(self, user_dim, item_dim, cfg):
        super().__init__()
        self.user_tower = Tower(user_dim, cfg["user_hidden_dims"], cfg["embedding_dim"], cfg["dropout"])
        self.item_tower = Tower(item_dim, cfg["item_hidden_dims"], cfg["embedding_dim"], cfg["dropout"])
        learned = cfg["score"] == "learned"
        init = float(np.log(cfg.get("initial_scale", 5.0))) if learned else 0.0
        self.scorer = nn.Module()
        if learned:
            self.scorer.log_scale = nn.Parameter(torch.tensor(init))
            self.scorer.bias = nn.Parameter(torch.tensor(0.0))
        else:
            self.scorer.register_buffer("log_scale", torch.tensor(0.0))
            self.scorer.register_buffer("bias", torch.tensor(0.0))

    def forward(self, xu, xi):
        u, v = self.user_tower(xu), self.item_tower(xi)
        return self.scorer.log_scale.exp() * (u * v).sum(1) + self.scorer.bias


class Encoder:
    """Applies twotower's fitted encoder state (from the model file's metadata) to CSV rows."""

    def __init__(self, state):
        self.state = state

    def width(self):
        return sum(1 if c["type"] == "numeric" else len(c["vocabulary"]) for c in self.state["columns"])

    def encode(self, rows):
        out = np.zeros((len(rows), self.width()), dtype=np.float32)
        off = 0
        for c in self.state["columns"]:
            if c["type"] == "numeric":
                for r, row in enumerate(rows):
                    out[r, off] = (float(row[c["column"]]) - c["mean"]) / c["std"]
                off += 1
            else:
                index = {v: i for i, v in enumerate(c["vocabulary"])}
                for r, row in enumerate(rows):
                    k = index.get(row[c["column"]])
                    if k is not None:
                        out[r, off + k] = 1.0
                off += len(c["vocabulary"])
        return out


def load_twotower(path):
    """Builds the PyTorch module from a twotower model file and load_state_dict()s it (strict)."""
    tensors, meta = read_safetensors(path)
    cfg = json.loads(meta["model"])
    enc = json.loads(meta["encoder"])
    user_enc, item_enc = Encoder(enc["user"]), Encoder(enc["item"])
    model = TwoTower(user_enc.width(), item_enc.width(), cfg)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()}, strict=True)
    return model, user_enc, item_enc, meta
