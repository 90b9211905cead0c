#!/usr/bin/python3
"""Retrieval benchmark, the peers' side and the report (bench/run_index_bench.sh drives it).

Debian's /usr/bin/python3 with python3-numpy, python3-faiss (1.7.3) and python3-hnswlib (0.6.2).

  gen     --out DIR --n N --d D --queries Q --users U --seed S
          base_{random,clustered}.npy (N x D float32 unit vectors), queries_*.npy, users_*.npy
  run     --impl faiss-flat|faiss-sq8|faiss-fp16|faiss-hnsw|hnswlib-py --base B --queries Q --threads T
          [--k 10 --M 32 --ef-construction 200 --ef-search 64,128 --single 1000 --out-ids P
           --search-threads 1,2]
          one JSON line per search thread count and ef_search, as bench_index run prints
  users   --base B --users U --threads T [--k 10]
          IndexFlatIP.search over all users in one batch
  report  --results results.jsonl --data DIR [--markdown out.md]
          recall@10 of every run against exact search (FAISS IndexFlatIP, ties counted as hits)
          and the tables
"""
import argparse
import json
import os
import resource
import sys
import time

import numpy as np


def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def unit_rows(x):
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def generate(kind, n, d, rng, centres):
    """n x d float32 unit vectors, in chunks to bound the float64 temporaries."""
    out = np.empty((n, d), dtype=np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        if kind == "random":
            x = rng.standard_normal((m, d))
        else:  # around random centres, noise of norm ~0.5 against unit centres
            x = centres[rng.integers(0, len(centres), m)] + rng.standard_normal((m, d)) * (
                0.5 / np.sqrt(d)
            )
        out[start : start + m] = unit_rows(x).astype(np.float32)
    return out


def cmd_gen(a):
    os.makedirs(a.out, exist_ok=True)
    rng = np.random.default_rng(a.seed)
    centres = unit_rows(rng.standard_normal((max(10, a.n // 1000), a.d)))
    for kind in ("random", "clustered"):
        for name, count in (("base", a.n), ("queries", a.queries), ("users", a.users)):
            path = os.path.join(a.out, f"{name}_{kind}.npy")
            np.save(path, generate(kind, count, a.d, rng, centres))
    print(f"wrote {a.out}/{{base,queries,users}}_{{random,clustered}}.npy "
          f"({a.n} items, {a.queries} queries, {a.users} users, d={a.d})", file=sys.stderr)


def cmd_run(a):
    import faiss  # noqa: F401  (imported here: `report` runs without it)
    import hnswlib

    xb = np.load(a.base)
    xq = np.load(a.queries)
    n, d = xb.shape
    k = a.k
    single = min(a.single, len(xq))
    graph = a.impl in ("faiss-hnsw", "hnswlib-py")
    efs = [int(e) for e in a.ef_search.split(",")] if graph else [0]
    faiss.omp_set_num_threads(a.threads)
    search_threads = [int(t) for t in (a.search_threads or str(a.threads)).split(",")]

    before = rss_mib()
    start = time.perf_counter()
    if a.impl == "faiss-flat":
        index = faiss.IndexFlatIP(d)
        index.add(xb)
    elif a.impl in ("faiss-sq8", "faiss-fp16"):
        qtype = (faiss.ScalarQuantizer.QT_8bit if a.impl == "faiss-sq8"
                 else faiss.ScalarQuantizer.QT_fp16)
        index = faiss.IndexScalarQuantizer(d, qtype, faiss.METRIC_INNER_PRODUCT)
        index.train(xb)  # SQ8: per-dimension min / max ranges
        index.add(xb)
    elif a.impl == "faiss-hnsw":
        index = faiss.IndexHNSWFlat(d, a.M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = a.ef_construction
        index.add(xb)
    elif a.impl == "hnswlib-py":
        index = hnswlib.Index(space="ip", dim=d)
        index.init_index(max_elements=n, ef_construction=a.ef_construction, M=a.M)
        index.set_num_threads(a.threads)
        index.add_items(xb, np.arange(n))
    else:
        sys.exit(f"--impl: expected faiss-flat, faiss-sq8, faiss-fp16, faiss-hnsw or hnswlib-py, "
                 f"got {a.impl}")
    build_s = time.perf_counter() - start
    index_mib = rss_mib() - before

    def search(q):
        if a.impl == "hnswlib-py":
            labels, _ = index.knn_query(q, k=k)
            return labels.astype(np.int64)
        _, labels = index.search(q, k)
        return labels

    for st, ef in [(st, ef) for st in search_threads for ef in efs]:
        faiss.omp_set_num_threads(st)
        if a.impl == "hnswlib-py":
            index.set_num_threads(st)
        if a.impl == "faiss-hnsw":
            index.hnsw.efSearch = ef
        elif a.impl == "hnswlib-py":
            index.set_ef(ef)
        search(xq[:1])  # warm-up
        t = time.perf_counter()
        for i in range(single):
            search(xq[i : i + 1])
        qps1 = single / (time.perf_counter() - t)
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            ids = search(xq)
            best = min(best, time.perf_counter() - t)
        ids_file = ""
        if a.out_ids:
            ids_file = (a.out_ids + (f"_s{st}" if len(search_threads) > 1 else "") +
                        (f"_ef{ef}" if ef else "") + ".ids.npy")
            np.save(ids_file, ids)
        print(json.dumps({
            "mode": "run", "dataset": a.dataset, "impl": a.impl, "threads": st,
            "build_threads": a.threads,
            "param": f"ef_search={ef}" if ef else "", "n": n, "d": d, "nq": len(xq),
            "single": single, "build_s": round(build_s, 3), "index_mib": round(index_mib, 1),
            "peak_mib": round(peak_mib(), 1), "qps1": round(qps1, 2),
            "qps_batch": round(len(xq) / best, 2), "ids": ids_file}), flush=True)


def cmd_users(a):
    import faiss

    xb = np.load(a.base)
    users = np.load(a.users)
    faiss.omp_set_num_threads(a.threads)
    index = faiss.IndexFlatIP(xb.shape[1])
    index.add(xb)
    t = time.perf_counter()
    index.search(users, a.k)
    s = time.perf_counter() - t
    print(json.dumps({
        "mode": "users", "dataset": a.dataset, "impl": "faiss-flat", "threads": a.threads,
        "n": len(xb), "users": len(users), "seconds": round(s, 3),
        "users_per_s": round(len(users) / s, 1), "peak_mib": round(peak_mib(), 1)}), flush=True)


NAMES = {
    "flat": "twotower FlatIndex", "hnsw": "twotower HnswIndex",
    "hnswlib": "hnswlib 0.6.2 (C++, our flags)", "hnswlib-py": "hnswlib 0.6.2 (python3-hnswlib)",
    "faiss-flat": "FAISS 1.7.3 IndexFlatIP", "faiss-hnsw": "FAISS 1.7.3 IndexHNSWFlat",
    "flat-bf16": "twotower FlatIndex storage=bf16", "flat-int8": "twotower FlatIndex storage=int8",
    "faiss-sq8": "FAISS 1.7.3 IndexScalarQuantizer SQ8",
    "faiss-fp16": "FAISS 1.7.3 IndexScalarQuantizer fp16",
}


def recall(ids, xb, xq, gt, k):
    """Fraction of the true top-k found; an item scoring at least the k-th true score counts
    (ties with the k-th item are interchangeable)."""
    kth = np.einsum("qd,qkd->qk", xq.astype(np.float64), xb[gt].astype(np.float64)).min(axis=1)
    hits = 0
    for q in range(len(xq)):
        got = ids[q][ids[q] >= 0]
        scores = xb[got].astype(np.float64) @ xq[q].astype(np.float64)
        hits += min(k, int(np.sum(scores >= kth[q] - 1e-6)))
    return hits / (len(xq) * k)


def cmd_report(a):
    rows = [json.loads(line) for line in open(a.results) if line.strip().startswith("{")]
    runs = [r for r in rows if r["mode"] == "run"]
    data = {}

    def dataset(name):
        if name not in data:
            data[name] = (np.load(os.path.join(a.data, f"base_{name}.npy")),
                          np.load(os.path.join(a.data, f"queries_{name}.npy")))
        return data[name]

    gt = {r["dataset"]: np.load(r["ids"]) for r in runs if r["impl"] == "faiss-flat" and r["ids"]}
    out = []
    n = runs[0]["n"] if runs else 0
    out.append(f"### Retrieval: {n:,} items x {runs[0]['d'] if runs else 0}, "
               f"{runs[0]['nq'] if runs else 0} queries, k = 10\n")
    out.append("| data | index | threads | params | build s (threads) | index MiB | peak MiB | "
               "q/s batch 1 | q/s batch 1000 | recall@10 |")
    out.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in runs:
        rec = float("nan")
        if r["dataset"] in gt and r["ids"]:
            xb, xq = dataset(r["dataset"])
            rec = recall(np.load(r["ids"]), xb, xq, gt[r["dataset"]], gt[r["dataset"]].shape[1])
        r["recall"] = rec
        out.append(f"| {r['dataset']} | {NAMES.get(r['impl'], r['impl'])} | {r['threads']} | "
                   f"{r['param'] or '-'} | {r['build_s']:.2f} "
                   f"({r.get('build_threads', r['threads'])}) | {r['index_mib']:.0f} | "
                   f"{r['peak_mib']:.0f} | {r['qps1']:,.1f} | {r['qps_batch']:,.1f} | {rec:.4f} |")

    bw = [r for r in rows if r["mode"] == "bandwidth"]
    if bw and runs:
        d = runs[0]["d"]
        out.append("\n### Exact scan against the memory-bandwidth bound (batch 1)\n")
        out.append("| threads | read GB/s | bound ms/query (N*d*4 B / bandwidth) | "
                   "FlatIndex ms/query | ratio | FAISS IndexFlatIP ms/query |")
        out.append("| --- | --- | --- | --- | --- | --- |")
        for b in bw:
            bound = n * d * 4 / (b["gbps"] * 1e9) * 1e3
            ours = [r for r in runs if r["impl"] == "flat" and r["threads"] == b["threads"]]
            peer = [r for r in runs if r["impl"] == "faiss-flat" and r["threads"] == b["threads"]]
            ms = min(1e3 / r["qps1"] for r in ours) if ours else float("nan")
            pms = min(1e3 / r["qps1"] for r in peer) if peer else float("nan")
            out.append(f"| {b['threads']} | {b['gbps']:.1f} | {bound:.2f} | {ms:.2f} | "
                       f"{ms / bound:.2f} | {pms:.2f} |")

    hn = [r for r in runs if r["impl"] == "hnsw"]
    if hn:
        out.append("\n### HnswIndex against hnswlib itself (same M, ef_construction, ef_search)\n")
        out.append("| data | threads | params | HnswIndex recall | hnswlib recall | "
                   "q/s batch 1 ratio | q/s batch 1000 ratio |")
        out.append("| --- | --- | --- | --- | --- | --- | --- |")
        for r in hn:
            raw = [x for x in runs if x["impl"] == "hnswlib" and x["dataset"] == r["dataset"]
                   and x["threads"] == r["threads"] and x["param"] == r["param"]]
            if raw:
                x = raw[0]
                out.append(f"| {r['dataset']} | {r['threads']} | {r['param']} | "
                           f"{r['recall']:.4f} | {x['recall']:.4f} | "
                           f"{r['qps1'] / x['qps1']:.2f} | {r['qps_batch'] / x['qps_batch']:.2f} |")

    cmp = [r for r in rows if r["mode"] == "compare"]
    if cmp:
        out.append("\n### HnswIndex against hnswlib on the same graph (`bench_index compare`)\n")
        out.append("Both built with one thread (hnswlib's graph is then a function of the input: "
                   "the two are identical, checked by the share of equal result ids), then "
                   "searched in alternating rounds; q/s are medians over the rounds, the ratios "
                   "medians of the per-round ratios.\n")
        out.append("| data | items | threads | params | same ids | HnswIndex q/s batch 1 | "
                   "hnswlib q/s batch 1 | ratio | HnswIndex q/s batch 1000 | "
                   "hnswlib q/s batch 1000 | ratio |")
        out.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for r in cmp:
            out.append(f"| {r['dataset']} | {r['n']:,} | {r['threads']} | {r['param']} | "
                       f"{r['same_ids']:.4f} | {r['qps1'][0]:,.0f} | {r['qps1'][1]:,.0f} | "
                       f"{r['ratio1']:.2f} | {r['qps_batch'][0]:,.0f} | "
                       f"{r['qps_batch'][1]:,.0f} | {r['ratio_batch']:.2f} |")

    us = [r for r in rows if r["mode"] == "users"]
    if us:
        out.append("\n### Batch recommendations (top 10 of every user)\n")
        out.append("| data | threads | users | FlatIndex users/s (chunks of 4096, as "
                   "`recommend --all-users`) | FAISS IndexFlatIP.search, one batch, users/s | "
                   "ratio |")
        out.append("| --- | --- | --- | --- | --- | --- |")
        for r in us:
            if r["impl"] != "flat":
                continue
            peer = [x for x in us if x["impl"] == "faiss-flat" and x["dataset"] == r["dataset"]
                    and x["threads"] == r["threads"]]
            p = peer[0]["users_per_s"] if peer else float("nan")
            out.append(f"| {r['dataset']} | {r['threads']} | {r['users']:,} | "
                       f"{r['users_per_s']:,.0f} | {p:,.0f} | {r['users_per_s'] / p:.2f} |")
    comp = [r for r in runs if r["impl"] in ("flat-bf16", "flat-int8", "faiss-sq8", "faiss-fp16",
                                              "faiss-flat")]
    if comp:
        out.append("\n### Compressed storage against the fp32 FlatIndex of the same run\n")
        out.append("Ratios are queries/s over twotower's fp32 FlatIndex at the same thread count. "
                   "\"same top-10\": the share of queries whose 10 ids, in order, equal the fp32 "
                   "FlatIndex's.\n")
        out.append("| data | index | threads | batch 1 ratio | batch 1000 ratio | recall@10 | "
                   "same top-10 | re-scored per query | index MiB |")
        out.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for r in comp:
            base = [x for x in runs if x["impl"] == "flat" and x["dataset"] == r["dataset"]
                    and x["threads"] == r["threads"]]
            if not base:
                continue
            b = base[0]
            same = float("nan")
            if r["ids"] and b["ids"]:
                same = float(np.mean(np.all(np.load(r["ids"]) == np.load(b["ids"]), axis=1)))
            resc = r.get("rescored_per_query")
            out.append(f"| {r['dataset']} | {NAMES.get(r['impl'], r['impl'])} | {r['threads']} | "
                       f"{r['qps1'] / b['qps1']:.2f} | {r['qps_batch'] / b['qps_batch']:.2f} | "
                       f"{r['recall']:.4f} | {same:.3f} | "
                       f"{'-' if resc is None else f'{resc:,.1f}'} | {r['index_mib']:.0f} |")

    text = "\n".join(out) + "\n"
    print(text)
    if a.markdown:
        with open(a.markdown, "w") as f:
            f.write(text)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gen")
    g.add_argument("--out", required=True)
    g.add_argument("--n", type=int, default=1_000_000)
    g.add_argument("--d", type=int, default=128)
    g.add_argument("--queries", type=int, default=1000)
    g.add_argument("--users", type=int, default=100_000)
    g.add_argument("--seed", type=int, default=1)
    r = sub.add_parser("run")
    for name in ("--impl", "--base", "--queries"):
        r.add_argument(name, required=True)
    r.add_argument("--dataset", default="")
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--k", type=int, default=10)
    r.add_argument("--M", type=int, default=32)
    r.add_argument("--ef-construction", type=int, default=200)
    r.add_argument("--ef-search", default="64")
    r.add_argument("--single", type=int, default=1000)
    r.add_argument("--out-ids", default="")
    r.add_argument("--search-threads", default="")
    u = sub.add_parser("users")
    u.add_argument("--base", required=True)
    u.add_argument("--users", required=True)
    u.add_argument("--dataset", default="")
    u.add_argument("--threads", type=int, default=1)
    u.add_argument("--k", type=int, default=10)
    rep = sub.add_parser("report")
    rep.add_argument("--results", required=True)
    rep.add_argument("--data", required=True)
    rep.add_argument("--markdown", default="")
    a = p.parse_args()
    {"gen": cmd_gen, "run": cmd_run, "users": cmd_users, "report": cmd_report}[a.cmd](a)


if __name__ == "__main__":
    main()
