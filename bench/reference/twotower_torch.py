"""PyTorch reference of twotower's model, encoder and model file (the peer for bench/ and the
interoperability check). Uses only Debian's python3-torch and python3-numpy.

The module's state_dict names and shapes are exactly those of twotower's .safetensors files:
user_tower.embeddings.<column>.weight (nn.EmbeddingBag), user_tower.layers.{0,3,6}.{weight,bias},
item_tower..., scorer.log_scale, scorer.bias; and for a ranker (`Ranker`):
{user,item}_embeddings.<column>.weight, cross.<l>.{weight,bias}, deep.{0,3,6}.{weight,bias}.
"""
import csv
import json
import os
import struct
import subprocess
import tempfile

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


class HistoryPooling(nn.Module):
    """twotower's user-history pooling (nn/attention.h), written the padded way: histories are an
    n x L tensor of table rows with a boolean mask (True = a real entry, the most recent last),
    positions past a history's end are masked to -inf before the softmax. With pooling "mean" it
    averages the real entries and has no parameters. The table (the item tower's id embedding) is
    passed to forward, not owned, so the state dict holds it once, under item_tower."""

    def __init__(self, spec, dim, query_dim):
        super().__init__()
        self.pooling, self.heads, self.length = spec["pooling"], spec["heads"], spec["length"]
        if self.pooling == "attention":
            self.query = nn.Parameter(torch.zeros(1, dim))
            if query_dim > 0:
                self.query_proj = nn.Linear(query_dim, dim, bias=False)
            self.recency = nn.Parameter(torch.zeros(self.heads, self.length))

    def forward(self, table, ids, mask, x):
        """table: rows x d; ids, mask: n x L (entries right-aligned or not: steps back are counted
        from each row's last real entry); x: n x query_dim. -> n x d."""
        e = table[ids]  # n x L x d
        m = mask.to(e.dtype)
        if self.pooling == "mean":
            return (e * m.unsqueeze(2)).sum(1) / m.sum(1, keepdim=True).clamp(min=1)
        n, L, d = e.shape
        h, dh = self.heads, d // self.heads
        q = self.query.expand(n, d)
        if hasattr(self, "query_proj"):
            q = q + self.query_proj(x)
        # steps back from the most recent real entry: count of real entries after each position
        back = (m.flip(1).cumsum(1).flip(1) - 1).clamp(min=0).long()  # n x L
        bias = self.recency[:, back].permute(1, 0, 2)  # n x H x L
        scores = torch.einsum("nlhk,nhk->nhl", e.view(n, L, h, dh), q.view(n, h, dh))
        scores = scores / dh ** 0.5 + bias
        scores = scores.masked_fill(~mask.unsqueeze(1), float("-inf"))
        a = torch.softmax(scores, dim=2)
        a = torch.nan_to_num(a, nan=0.0)  # an empty history: every score -inf, pools to zeros
        return torch.einsum("nhl,nlhk->nhk", a, e.view(n, L, h, dh)).reshape(n, d)


class Tower(nn.Module):
    """embedding bags (one per learned feature) + dense columns [+ pooled history] -> MLP -> L2
    normalise."""

    def __init__(self, dense_dim, learned, hidden_dims, embedding_dim, dropout, normalize=True,
                 projection=True, history=None, history_dim=0):
        super().__init__()
        self.embeddings = nn.ModuleDict(
            {f["column"]: nn.EmbeddingBag(f["rows"], f["dim"], mode=f["mode"]) for f in learned})
        self.normalize = normalize
        layers, prev = [], dense_dim + sum(f["dim"] for f in learned)
        if history:
            self.history = HistoryPooling(history, history_dim, prev)
            prev += history_dim
        for h in hidden_dims:
            layers += [nn.Linear(prev, h), nn.ReLU(), nn.Dropout(dropout)]
            prev = h
        if projection:
            layers.append(nn.Linear(prev, embedding_dim))
        self.layers = nn.Sequential(*layers)

    def forward(self, dense, bags=(), history=None):
        """dense: n x dense_dim tensor; bags: one (ids, offsets) pair per learned feature;
        history (a user tower with one): (table, ids, mask), as HistoryPooling.forward."""
        parts = [dense] + [emb(ids, offsets) for emb, (ids, offsets) in zip(self.embeddings.values(), bags)]
        if hasattr(self, "history"):
            table, ids, mask = history
            parts.append(self.history(table, ids, mask, torch.cat(parts, dim=1)))
        x = self.layers(torch.cat(parts, dim=1))
        return F.normalize(x, dim=1) if self.normalize else x


class _Dense:
    def __init__(self, width):
        self._width = width

    def width(self):
        return self._width

    def learned(self):
        return []


class TwoTower(nn.Module):
    """logit = exp(log_scale) * <u, v> + bias; cosine mode keeps log_scale = 0 and bias = 0."""

    def __init__(self, user_enc, item_enc, cfg):
        """user_enc / item_enc: an Encoder, or an int for dense-only towers of that width."""
        super().__init__()
        user_enc, item_enc = (_Dense(e) if isinstance(e, int) else e for e in (user_enc, item_enc))
        kw = dict(normalize=cfg.get("normalize", True), projection=cfg.get("projection", True))
        history = getattr(user_enc, "state", {}).get("history")
        self.history_column = None
        history_dim = 0
        if history:  # embedded with the item side's id feature
            self.history_column = item_enc.state["id"]
            history_dim = next(f["dim"] for f in item_enc.learned() if f["column"] == self.history_column)
        self.user_tower = Tower(user_enc.width(), user_enc.learned(), cfg["user_hidden_dims"],
                                cfg["embedding_dim"], cfg["dropout"], history=history,
                                history_dim=history_dim, **kw)
        self.item_tower = Tower(item_enc.width(), item_enc.learned(), cfg["item_hidden_dims"],
                                cfg["embedding_dim"], cfg["dropout"], **kw)
        learned = cfg["score"] == "learned"
        init = float(np.log(cfg.get("initial_scale", 5.0))) if learned else 0.0
        self.scorer = nn.Module()
        if learned:
            self.scorer.log_scale = nn.Parameter(torch.tensor(init))
            self.scorer.bias = nn.Parameter(torch.tensor(0.0))
        else:
            self.scorer.register_buffer("log_scale", torch.tensor(0.0))
            self.scorer.register_buffer("bias", torch.tensor(0.0))
        # Auxiliary task heads (two_tower.h's TaskSpec): Linear(d, 1) on u * v for a regression,
        # Linear(d, classes) on v for an item_class task.
        tasks = cfg.get("tasks", [])
        if tasks:
            self.tasks = nn.ModuleDict({
                t["name"]: nn.Linear(cfg["embedding_dim"],
                                     1 if t["type"] == "regression" else len(t["classes"]))
                for t in tasks})
        self.task_types = {t["name"]: t["type"] for t in tasks}

    def history_input(self, ids, mask):
        """The user tower's history argument: the item tower's id table with padded ids / mask."""
        return (self.item_tower.embeddings[self.history_column].weight, ids, mask)

    def forward(self, xu, xi, user_bags=(), item_bags=()):
        u, v = self.user_tower(xu, user_bags), self.item_tower(xi, item_bags)
        return self.scorer.log_scale.exp() * (u * v).sum(1) + self.scorer.bias

    def task_outputs(self, xu, xi, user_bags=(), item_bags=()):
        """Each task head's output for the pairs: n (regression) or n x classes (logits)."""
        u, v = self.user_tower(xu, user_bags), self.item_tower(xi, item_bags)
        return {name: head(u * v).squeeze(1) if self.task_types[name] == "regression" else head(v)
                for name, head in self.tasks.items()} if self.task_types else {}


class Ranker(nn.Module):
    """twotower's ranker (model.kind: ranker, model/ranker.h): x0 = [user dense | user bags |
    item dense | item bags], DCN-v2 cross layers x_{l+1} = x0 * (x_l W_l^T + b_l) + x_l, then
    Linear -> ReLU -> Dropout per ranker_hidden_dims and a Linear to one logit."""

    def __init__(self, user_enc, item_enc, cfg):
        super().__init__()
        self.user_embeddings, self.item_embeddings = (
            nn.ModuleDict({f["column"]: nn.EmbeddingBag(f["rows"], f["dim"], mode=f["mode"])
                           for f in e.learned()}) for e in (user_enc, item_enc))
        d = sum(e.width() + sum(f["dim"] for f in e.learned()) for e in (user_enc, item_enc))
        self.cross = nn.ModuleList([nn.Linear(d, d) for _ in range(cfg["cross_layers"])])
        layers, prev = [], d
        for h in cfg["ranker_hidden_dims"]:
            layers += [nn.Linear(prev, h), nn.ReLU(), nn.Dropout(cfg["dropout"])]
            prev = h
        self.deep = nn.Sequential(*layers, nn.Linear(prev, 1))

    def forward(self, xu, xi, user_bags=(), item_bags=()):
        """xu, xi: n x dense width; *_bags: one (ids, offsets) pair per learned feature.
        Returns the n logits."""
        parts = [xu] + [emb(*b) for emb, b in zip(self.user_embeddings.values(), user_bags)]
        parts += [xi] + [emb(*b) for emb, b in zip(self.item_embeddings.values(), item_bags)]
        x0 = x = torch.cat(parts, dim=1)
        for layer in self.cross:
            x = x0 * layer(x) + x
        return self.deep(x).squeeze(1)


def in_batch_softmax(u, v, item_rows, temperature, log_q=None, remove_accidental_hits=True):
    """The in-batch sampled softmax of twotower's `training.loss: softmax` (loss.h), written
    independently: logits U V^T / t - log q[item_j], accidental hits masked, CE on the diagonal."""
    logits = u @ v.T / temperature
    items = torch.as_tensor(item_rows)
    if log_q is not None:
        logits = logits - torch.as_tensor(log_q)[items][None, :]
    if remove_accidental_hits:
        same = items[:, None] == items[None, :]
        same.fill_diagonal_(False)
        logits = logits.masked_fill(same, float("-inf"))
    return F.cross_entropy(logits, torch.arange(len(items)))


M64 = 0xFFFFFFFFFFFFFFFF


class Xoshiro256:
    """xoshiro256** (Blackman & Vigna 2018) seeded through SplitMix64, and Lemire's unbiased
    bounded integers (2019): the published algorithms, as twotower's Rng names them, so a draw
    made inside a twotower loss can be made here too."""

    def __init__(self, seed):
        state, self.s = seed & M64, []
        for _ in range(4):
            state = (state + 0x9E3779B97F4A7C15) & M64
            z = state
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
            self.s.append(z ^ (z >> 31))

    @staticmethod
    def _rotl(x, k):
        return ((x << k) | (x >> (64 - k))) & M64

    def next(self):
        s = self.s
        result = (self._rotl((s[1] * 5) & M64, 7) * 9) & M64
        t = (s[1] << 17) & M64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = self._rotl(s[3], 45)
        return result

    def below(self, n):
        m = self.next() * n
        if (m & M64) < n:
            threshold = ((1 << 64) - n) % n  # (2^64 - n) mod n, as unsigned -n % n
            while (m & M64) < threshold:
                m = self.next() * n
        return m >> 64


def easy_choice(rest, e, step_seed, row):
    """loss.h's easy negatives: e of the row's non-hard columns `rest` (column order), by a
    partial Fisher-Yates shuffle from the generator of (step seed, row)."""
    rest = list(rest)
    rng = Xoshiro256(step_seed ^ ((0xD1B54A32D192ED03 * (row + 1)) & M64))
    take = min(len(rest), e)
    for t in range(take):
        pick = t + rng.below(len(rest) - t)
        rest[t], rest[pick] = rest[pick], rest[t]
    return rest[:take]


def sampled_loss(u, v, item_rows, user_rows, objective, sampler, q, num_items, hard=0,
                 temperature=0.2, margin=0.5, logq=True, remove_accidental_hits=True,
                 history=None, easy=0, seed=0):
    """twotower's SampledLoss (loss.h), written independently from its definition with autograd:
    u: n x d, v: (n + m) x d (the batch's items, then m drawn negatives), item_rows: n + m.
    Negatives per row: the other batch columns (in_batch, mixed) and the drawn rows (uniform,
    popularity, mixed); masked: the row's own column, accidental hits, the user's history.
    logQ (softmax): in-batch columns log(n q_j), drawn columns log(m / N) (uniform) or
    log(m q_j) (popularity); pairwise losses instead weight each kept negative by
    1 / (N q_j) normalised to mean 1 over the row (not for uniform). hard > 0 keeps the row's
    `hard` highest-scoring negatives (by the corrected logit for softmax), and `easy` of its
    other negatives chosen by easy_choice with the step's `seed`; for softmax an easy negative's
    logit gets + log(R / e), R the row's non-hard negatives."""
    n, m = u.shape[0], v.shape[0] - u.shape[0]
    items = torch.as_tensor(np.asarray(item_rows, dtype=np.int64))
    q = torch.as_tensor(np.asarray(q, dtype=np.float64))
    in_batch = sampler in ("in_batch", "mixed")
    cols = torch.arange(0 if in_batch else n, n + m)
    s = u @ v[cols].T                                    # n x C raw scores
    pos = (u * v[:n]).sum(dim=1)                         # n
    col_items = items[cols]
    expected = torch.where(cols < n, n * q[col_items],
                           m * q[col_items] if sampler == "popularity"
                           else torch.full_like(q[col_items], m / num_items))
    valid = cols[None, :] != torch.arange(n)[:, None]
    if remove_accidental_hits:
        valid &= col_items[None, :] != items[:n, None]
    if history is not None:
        for i in range(n):
            seen = set(history[int(user_rows[i])])
            for j in range(len(cols)):
                if int(col_items[j]) in seen:
                    valid[i, j] = False
    inv_t = 1.0 if objective == "triplet" else 1.0 / temperature
    rank = s * inv_t
    if objective == "softmax" and logq:
        rank = rank - torch.log(expected).float()[None, :]
    rank = rank.masked_fill(~valid, float("-inf"))
    keep = valid.clone()
    shift = torch.zeros_like(rank)  # log(R / e) on the easy negatives (softmax)
    if hard > 0:
        # The `hard` highest, ties to the lower column (a stable descending sort): a duplicate
        # drawn item scores the same in two columns, and which one is hard decides the rest.
        top = torch.sort(rank, dim=1, descending=True, stable=True).indices[:, :hard]
        keep = torch.zeros_like(valid).scatter_(1, top, True) & valid
        if easy > 0:
            for i in range(n):
                rest = torch.nonzero(valid[i] & ~keep[i]).flatten().tolist()
                chosen = easy_choice(rest, easy, seed, i)
                if chosen:
                    keep[i, chosen] = True
                    shift[i, chosen] = float(np.log(len(rest) / len(chosen)))
    total = u.new_zeros(())
    for i in range(n):
        k = keep[i]
        if not bool(k.any()):
            continue
        if objective == "softmax":
            zp = pos[i] * inv_t
            if logq:
                zp = zp - float(np.log(n * float(q[items[i]])))
            z = torch.cat([zp[None], (rank[i] + shift[i])[k]])
            total = total + torch.logsumexp(z, 0) - zp
            continue
        w = torch.ones(int(k.sum()), dtype=u.dtype)
        if logq and sampler != "uniform":
            w = (1.0 / (num_items * q[col_items[k]])).to(u.dtype)
            w = w / w.mean()
        if objective == "bpr":
            per = F.softplus(-(pos[i] - s[i][k]) * inv_t)
        else:
            per = torch.relu(margin - pos[i] + s[i][k])
        total = total + (w * per).mean()
    return total / n


def fnv1a64(text):
    h = 0xCBF29CE484222325
    for byte in text.encode():
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


class Encoder:
    """Applies twotower's fitted encoder state (from the model file's metadata) to CSV rows:
    dense columns (numeric, with a was-missing column under missing: mean; one-hot categorical)
    and, per learned feature (id, categorical embedding, multi_hot), the embedding-bag rows
    (0 = out of vocabulary, vocabulary index + 1 otherwise; hashed ids: FNV-1a 64 mod buckets)."""

    MISSING = {"", "NA", "NaN", "nan", "null"}

    def __init__(self, state):
        self.state = state

    @staticmethod
    def _learned(c):
        return c["type"] in ("id", "multi_hot") or (
            c["type"] == "categorical" and c.get("encoding") == "embedding")

    def width(self):
        w = 0
        for c in self.state["columns"]:
            if self._learned(c):
                continue
            if c["type"] == "numeric":
                w += 2 if c.get("missing") == "mean" else 1
            else:
                w += len(c["vocabulary"])
        return w

    def learned(self):
        out = []
        for c in self.state["columns"]:
            if not self._learned(c):
                continue
            rows = c["buckets"] if c["type"] == "id" and c.get("buckets", 0) > 0 else len(c["vocabulary"]) + 1
            mode = c.get("pooling", "mean") if c["type"] == "multi_hot" else "sum"
            out.append({"column": c["column"], "rows": rows, "dim": c["dim"], "mode": mode})
        return out

    def encode(self, rows):
        """-> (dense float32 array, [(ids tensor, offsets tensor) per learned feature])."""
        out = np.zeros((len(rows), self.width()), dtype=np.float32)
        bags = []
        off = 0
        for c in self.state["columns"]:
            col = c["column"]
            if self._learned(c):
                ids, offsets = [], []
                index = {v: i for i, v in enumerate(c.get("vocabulary", []))}
                for row in rows:
                    offsets.append(len(ids))
                    if c["type"] == "multi_hot":
                        tokens = [t.strip() for t in row[col].split(c["delimiter"]) if t.strip()]
                    else:
                        tokens = [row[col]]
                    for t in tokens:
                        if c["type"] == "id" and c.get("buckets", 0) > 0:
                            ids.append(fnv1a64(t) % c["buckets"])
                        else:
                            ids.append(index.get(t, -1) + 1)
                bags.append((torch.tensor(ids, dtype=torch.long), torch.tensor(offsets, dtype=torch.long)))
            elif c["type"] == "numeric":
                for r, row in enumerate(rows):
                    if c.get("missing") == "mean" and row[col] in self.MISSING:
                        out[r, off + 1] = 1.0
                    else:
                        out[r, off] = (float(row[col]) - c["mean"]) / c["std"]
                off += 2 if c.get("missing") == "mean" else 1
            else:
                index = {v: i for i, v in enumerate(c["vocabulary"])}
                for r, row in enumerate(rows):
                    k = index.get(row[col])
                    if k is not None:
                        out[r, off + k] = 1.0
                off += len(c["vocabulary"])
        return out, bags


def load_twotower(path):
    """Builds the PyTorch module from a twotower model file and load_state_dict()s it (strict)."""
    tensors, meta = read_safetensors(path)
    cfg = json.loads(meta["model"])
    enc = json.loads(meta["encoder"])
    user_enc, item_enc = Encoder(enc["user"]), Encoder(enc["item"])
    model = TwoTower(user_enc, item_enc, cfg)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()}, strict=True)
    return model, user_enc, item_enc, meta


def load_ranker(path):
    """As load_twotower, for a ranker file (format twotower.ranker)."""
    tensors, meta = read_safetensors(path)
    if meta.get("format") != "twotower.ranker":
        raise ValueError(f"{path}: format {meta.get('format')!r}, expected 'twotower.ranker'")
    enc = json.loads(meta["encoder"])
    user_enc, item_enc = Encoder(enc["user"]), Encoder(enc["item"])
    model = Ranker(user_enc, item_enc, json.loads(meta["model"]))
    model.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()}, strict=True)
    return model, user_enc, item_enc, meta


def parity_batch(users_csv, items_csv, batch):
    """The parity checks' inputs: the users and items tables as dicts, a numpy generator (seed 0)
    and a batch of `batch` random (user row, item row) pairs (2 x batch) whose first two rows
    share their item (an accidental hit)."""
    with open(users_csv, newline="", encoding="utf-8") as f:
        users = list(csv.DictReader(f))
    with open(items_csv, newline="", encoding="utf-8") as f:
        items = list(csv.DictReader(f))
    rng = np.random.default_rng(0)
    pairs = np.stack([rng.integers(0, len(users), batch), rng.integers(0, len(items), batch)])
    pairs[1, 1] = pairs[1, 0]
    return users, items, rng, pairs


def dumped_step(model_path, dump_tool, uenc, ienc, batch, *extra):
    """A batch of random standardised dense inputs and 0/1 labels (generator seed 0) and
    twotower's gradients on it from bench_grad_dump (`extra`: its trailing arguments, e.g.
    "bf16"). Returns (xu, xi, y, gradients by name, metadata with the loss)."""
    rng = np.random.default_rng(0)
    xu = rng.standard_normal((batch, uenc.width())).astype(np.float32)
    xi = rng.standard_normal((batch, ienc.width())).astype(np.float32)
    y = rng.integers(0, 2, (1, batch)).astype(np.float32)
    with tempfile.TemporaryDirectory() as d:
        paths = [os.path.join(d, n) for n in ("xu.npy", "xi.npy", "y.npy", "grads.safetensors")]
        for path, a in zip(paths, (xu, xi, y)):
            np.save(path, a)
        subprocess.run([dump_tool, model_path, *paths, *extra], check=True,
                       stdout=subprocess.DEVNULL)
        ours, meta = read_safetensors(paths[3])
    return xu, xi, y, ours, meta


def report_gradient_parity(model, ours, our_loss, torch_loss, skip=()):
    """Prints the loss and each parameter's relative gradient error max|g_tt - g_torch| /
    max|g_torch| (PyTorch's grads after backward(); ours by name), skipping names starting with
    any prefix in `skip`. Returns the worst relative error, the loss's included."""
    worst = abs(our_loss - torch_loss) / abs(torch_loss)
    print(f"loss: twotower {our_loss:.7f}  pytorch {torch_loss:.7f}  rel {worst:.1e}")
    for name, param in model.named_parameters():
        if any(name.startswith(p) for p in skip):
            continue
        g = param.grad.numpy().reshape(ours[name].shape)
        rel = np.abs(ours[name] - g).max() / max(np.abs(g).max(), 1e-30)
        worst = max(worst, rel)
        print(f"{name:40s} {str(tuple(param.shape)):14s} rel {rel:.1e}")
    print(f"worst relative error {worst:.1e}")
    return worst
