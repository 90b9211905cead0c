"""The lab's suggested serving stack, as the peer of `twotower serve` in bench/run_serve_bench.sh:
FastAPI + uvicorn (Debian's python3-fastapi, python3-uvicorn) serving the same twotower model file
with PyTorch (Debian's python3-torch) and pre-computed item embeddings (`twotower embed`'s .npy).

POST /v1/recommend {"user_id": "42", "k": 10} -> {"items": [{"item_id", "score"}]}: the user
tower on the user's row, then an exact top-k over all item embeddings (one matrix-vector product
and torch.topk, the fastest exact search PyTorch offers), scores as twotower displays them
(the probability for bce models). Request bodies are validated by pydantic (422 on bad input),
an unknown user is a 404. Made as fast as it honestly can be: uvloop and httptools (Debian's
python3-uvloop, python3-httptools), TCP_NODELAY, one worker process per core, inference mode,
the user rows pre-encoded at start, torch threads as given.

    python3 serve_fastapi.py --model M --embeddings items.npy --users users.csv --port 8081 \
        [--torch-threads 1] [--workers 1]
"""
import argparse
import csv
import json
import os
import socket
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from twotower_torch import load_twotower  # noqa: E402

from fastapi import FastAPI, HTTPException  # noqa: E402
from pydantic import BaseModel, Field  # noqa: E402
import uvicorn  # noqa: E402


class Recommend(BaseModel):
    user_id: str
    k: int = Field(10, ge=1, le=1000)

    class Config:
        extra = "forbid"


def build_app(args):
    torch.set_num_threads(args.torch_threads)
    model, user_enc, _, meta = load_twotower(args.model)
    model.eval()
    config = json.loads(meta.get("config", "{}"))
    probabilities = config.get("training", {}).get("loss", "bce") == "bce"
    schema = json.loads(meta["schema"])
    id_column = schema["user"]["id"]
    with open(args.users, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    row_of = {r[id_column]: i for i, r in enumerate(rows)}
    dense, bags = user_enc.encode(rows)
    dense = torch.from_numpy(dense)
    items = torch.from_numpy(np.load(args.embeddings).astype(np.float32))
    ids_path = args.embeddings[:-4] + ".ids.txt"
    with open(ids_path, encoding="utf-8") as f:
        item_ids = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    scale = float(model.scorer.log_scale.exp())
    bias = float(model.scorer.bias)
    app = FastAPI()

    @app.post("/v1/recommend")
    def recommend(req: Recommend):
        r = row_of.get(req.user_id)
        if r is None:
            raise HTTPException(status_code=404, detail="unknown user_id")
        with torch.inference_mode():
            user_bags = [(ids[offsets[r]:offsets[r + 1]] if r + 1 < len(offsets) else ids[offsets[r]:],
                          torch.zeros(1, dtype=torch.long)) for ids, offsets in bags]
            u = model.user_tower(dense[r:r + 1], user_bags)[0]
            scores = items @ u
            k = min(req.k, len(item_ids))
            top = torch.topk(scores, k)
        values = top.values.tolist()
        if probabilities:
            values = [1.0 / (1.0 + np.exp(-(scale * s + bias))) for s in values]
        return {"items": [{"item_id": item_ids[i], "score": s}
                          for i, s in zip(top.indices.tolist(), values)]}

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    return app


def create_app():
    """For uvicorn's workers (one process each): the arguments come through the environment."""
    return build_app(argparse.Namespace(**json.loads(os.environ["TWOTOWER_PEER_ARGS"])))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--embeddings", required=True)
    p.add_argument("--users", required=True)
    p.add_argument("--port", type=int, default=8081)
    p.add_argument("--torch-threads", type=int, default=1)
    p.add_argument("--workers", type=int, default=1)
    args = p.parse_args()
    # TCP_NODELAY on the listening socket (accepted sockets inherit it on Linux): without it a
    # keep-alive client's delayed ACK adds ~40 ms to every response, as it did to ours.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(2048)
    fast = dict(loop="uvloop", http="httptools", log_level="warning", access_log=False,
                fd=sock.fileno())
    if args.workers > 1:
        os.environ["TWOTOWER_PEER_ARGS"] = json.dumps(vars(args))
        uvicorn.run("serve_fastapi:create_app", factory=True, workers=args.workers,
                    app_dir=os.path.dirname(os.path.abspath(__file__)), **fast)
    else:
        uvicorn.run(build_app(args), **fast)


if __name__ == "__main__":
    main()
