#!/usr/bin/python3
"""The Python module's cost per call over the C++ app call it makes, and FAISS's Python module
(Debian's python3-faiss, when installed) on the same search, same machine, same run.

    PYTHONPATH=build/python /usr/bin/python3 bench/python_overhead.py [--n 1000000] [--rounds 7]

Builds (once, under --out) a small lab model and N x 128 random unit vectors with 1,000 queries;
then times, as medians over --rounds rounds:
  recommend 1 user (k 10, exclude_seen; averaged over 200 users) and a batch of 1,000 users,
  Index.search of 1 query (averaged over --singles) and of 1,000 queries on a flat (exact) index,
from Python (twotower) and from C++ (build/bench_python_calls: the same app calls on the same
files), and faiss.IndexFlatIP.search on the same vectors. One search thread everywhere
(OMP_NUM_THREADS=1): the per-call cost is the point, not the scan.

Then HNSW from Python (--hnsw-n clustered unit vectors: 1,000 centres, noise 0.5 / sqrt(d) per
dimension, normalised; 1,000 queries drawn the same way; 0 skips it): twotower's
Index.build(kind="hnsw") against hnswlib's Python module (Debian's python3-hnswlib) and FAISS's
IndexHNSWFlat (inner product), same M and ef_construction, each built with 2 threads; then
searches of 1 query and of 1,000 at ef 32, 64 and 128 on 1 thread, and recall@10 against the exact
top 10. --sections hnsw runs that part alone. Install the peers with
    bash bench/install_missing.sh python3-faiss python3-hnswlib libopenblas0-pthread
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_CORETYPE", "SkylakeX")

import numpy as np  # noqa: E402

import twotower  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def micros(f):
    t = time.perf_counter()
    f()
    return (time.perf_counter() - t) * 1e6


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--d", type=int, default=128)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--singles", type=int, default=1000, help="queries timed one at a time")
    p.add_argument("--out", default=os.path.join(REPO, "build", "bench_python"))
    p.add_argument("--cpp", default=os.path.join(REPO, "build", "bench_python_calls"))
    p.add_argument("--hnsw-n", type=int, default=100_000, help="HNSW section's vectors (0: none)")
    p.add_argument("--sections", default="overhead,hnsw,threads")
    p.add_argument("--M", type=int, default=16)
    p.add_argument("--ef-construction", type=int, default=100)
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    if "overhead" in a.sections.split(","):
        overhead(a)
    if a.hnsw_n > 0 and "hnsw" in a.sections.split(","):
        hnsw_section(a)
    if a.hnsw_n > 0 and "threads" in a.sections.split(","):
        threads_section(a)


def overhead(a):
    base_path = os.path.join(a.out, f"base_{a.n}.npy")
    query_path = os.path.join(a.out, "queries.npy")
    if not os.path.exists(base_path):
        rng = np.random.default_rng(0)
        for path, rows in ((base_path, a.n), (query_path, 1000)):
            x = rng.standard_normal((rows, a.d), dtype=np.float32)
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            np.save(path, x)
    model_path = os.path.join(a.out, "model.safetensors")
    if not os.path.exists(model_path):
        twotower.generate(os.path.join(a.out, "data"), users=2000, movies=1000,
                          interactions=20000, seed=1)
        run = twotower.train(os.path.join(REPO, "config", "ranking_config.yaml"),
                             overrides={"data.dir": os.path.join(a.out, "data"),
                                        "training.epochs": 1, "training.checkpoint": False,
                                        "output.dir": os.path.join(a.out, "runs")},
                             progress=False)
        os.replace(run.model_path, model_path)

    cpp = json.loads(subprocess.run([a.cpp, model_path, base_path, query_path, str(a.rounds),
                                     str(a.singles)],
                                    check=True, capture_output=True, text=True).stdout)

    m = twotower.Model.load(model_path)
    users = m.user_ids[:1000]
    base = np.load(base_path)
    queries = np.load(query_path)
    idx = twotower.Index.build(base, [str(i) for i in range(len(base))], kind="flat")
    py = {"recommend_1_us": [], "recommend_1000_us": [], "search_1_us": [], "search_1000_us": []}
    for _ in range(a.rounds):
        py["recommend_1_us"].append(micros(lambda: [m.recommend(u, k=10) for u in users[:200]])
                                    / 200)
        py["recommend_1000_us"].append(micros(lambda: m.recommend(users, k=10)))
        py["search_1_us"].append(micros(lambda: [idx.search(queries[i:i + 1], k=10)
                                                 for i in range(a.singles)]) / a.singles)
        py["search_1000_us"].append(micros(lambda: idx.search(queries, k=10)))
    py = {k: statistics.median(v) for k, v in py.items()}

    peer = {}
    try:
        import faiss

        faiss.omp_set_num_threads(1)
        f = faiss.IndexFlatIP(a.d)
        f.add(base)
        s1, s1000 = [], []
        for _ in range(a.rounds):
            s1.append(micros(lambda: [f.search(queries[i:i + 1], 10)
                                      for i in range(a.singles)]) / a.singles)
            s1000.append(micros(lambda: f.search(queries, 10)))
        peer = {"search_1_us": statistics.median(s1), "search_1000_us": statistics.median(s1000)}
    except ImportError:
        print("(python3-faiss is not installed: no FAISS column)", file=sys.stderr)

    calls = {"recommend_1_us": 1, "recommend_1000_us": 1, "search_1_us": 1, "search_1000_us": 1}
    print(f"| call | C++ app (us) | Python module (us) | Python / C++ | fixed cost per call (us) "
          f"| faiss IndexFlatIP (us) |")
    print("| --- | --- | --- | --- | --- | --- |")
    names = {"recommend_1_us": "recommend, 1 user", "recommend_1000_us": "recommend, 1,000 users",
             "search_1_us": f"Index.search, 1 query ({a.n:,} x {a.d})",
             "search_1000_us": f"Index.search, 1,000 queries ({a.n:,} x {a.d})"}
    for key, name in names.items():
        c, q = cpp[key], py[key]
        f = peer.get(key)
        print(f"| {name} | {c:.1f} | {q:.1f} | {q / c:.3f} | {(q - c) / calls[key]:.1f} | "
              f"{'%.1f' % f if f else '-'} |")
    print(json.dumps({"cpp": cpp, "python": py, "faiss": peer, "n": a.n, "rounds": a.rounds}))


def clustered(rng, n, d, centres, noise=0.5):
    x = centres[rng.integers(0, len(centres), n)] + rng.standard_normal((n, d)) * (noise / d ** 0.5)
    x = x.astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def hnsw_section(a):
    rng = np.random.default_rng(1)
    n, d = a.hnsw_n, a.d
    centres = rng.standard_normal((1000, d))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    base = clustered(rng, n, d, centres)
    queries = clustered(rng, 1000, d, centres)
    exact = np.argsort(-(queries @ base.T), axis=1)[:, :10]
    ids = [str(i) for i in range(n)]

    def recall(labels):
        return float(np.mean([len(set(labels[r]) & set(exact[r])) / 10
                              for r in range(len(queries))]))

    rows = []

    def timed_searches(name, build_s, search, to_labels, set_ef):
        for ef in (32, 64, 128):
            set_ef(ef)
            one, many = [], []
            for _ in range(a.rounds):
                one.append(micros(lambda: [search(queries[i:i + 1]) for i in range(a.singles)])
                           / a.singles)
                many.append(micros(lambda: search(queries)))
            rows.append((name, build_s, ef, statistics.median(one), statistics.median(many),
                         recall(to_labels(search(queries)))))

    # twotower: 2 build threads (the module's own pool), 1 search thread.
    t = time.perf_counter()
    twotower_threads(2)
    idx = twotower.Index.build(base, ids, kind="hnsw", M=a.M, ef_construction=a.ef_construction)
    build = time.perf_counter() - t
    twotower_threads(1)
    ef_now = {"ef": 64}
    timed_searches("twotower Index (hnsw)", build,
                   lambda q: idx.search(q, k=10, ef=ef_now["ef"]),
                   lambda r: np.array([[int(x) for x in row] for row in r[1]]),
                   lambda ef: ef_now.__setitem__("ef", ef))
    try:
        import hnswlib

        h = hnswlib.Index(space="ip", dim=d)
        t = time.perf_counter()
        h.init_index(max_elements=n, M=a.M, ef_construction=a.ef_construction, random_seed=100)
        h.add_items(base, np.arange(n), num_threads=2)
        build = time.perf_counter() - t
        h.set_num_threads(1)
        timed_searches("hnswlib (python3-hnswlib)", build,
                       lambda q: h.knn_query(q, k=10), lambda r: r[0], h.set_ef)
    except ImportError:
        print("(python3-hnswlib is not installed: no hnswlib rows)", file=sys.stderr)
    try:
        import faiss

        f = faiss.IndexHNSWFlat(d, a.M, faiss.METRIC_INNER_PRODUCT)
        f.hnsw.efConstruction = a.ef_construction
        faiss.omp_set_num_threads(2)
        t = time.perf_counter()
        f.add(base)
        build = time.perf_counter() - t
        faiss.omp_set_num_threads(1)
        timed_searches("faiss IndexHNSWFlat (python3-faiss)", build, lambda q: f.search(q, 10),
                       lambda r: r[1], lambda ef: setattr(f.hnsw, "efSearch", ef))
    except ImportError:
        print("(python3-faiss is not installed: no FAISS rows)", file=sys.stderr)
    print()
    print(f"HNSW from Python, {n:,} x {d}, M {a.M}, ef_construction {a.ef_construction}, "
          f"1,000 queries")
    print("| library | build, 2 threads (s) | ef | 1 query (us) | 1,000 queries (us) "
          "| recall@10 |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, build, ef, one, many, r in rows:
        print(f"| {name} | {build:.1f} | {ef} | {one:.1f} | {many:.0f} | {r:.4f} |")


def threads_section(a):
    # Python threads sharing one HNSW index, each searching one query per call (ef 64, one
    # engine thread per call): the GIL is released while the engine searches, so the calls of
    # two Python threads run at once on two cores.
    import threading

    rng = np.random.default_rng(2)
    n, d = a.hnsw_n, a.d
    centres = rng.standard_normal((1000, d))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    base = clustered(rng, n, d, centres)
    queries = clustered(rng, 4000, d, centres)
    twotower_threads(2)
    idx = twotower.Index.build(base, [str(i) for i in range(n)], kind="hnsw", M=a.M,
                               ef_construction=a.ef_construction)
    rows = []
    for workers in (1, 2):
        rates = []
        for _ in range(a.rounds):
            share = len(queries) // workers

            def work(w):
                twotower_threads(1)
                for i in range(w * share, (w + 1) * share):
                    idx.search(queries[i:i + 1], k=10, ef=64)

            threads = [threading.Thread(target=work, args=(w,)) for w in range(workers)]
            t = time.perf_counter()
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            rates.append(share * workers / (time.perf_counter() - t))
        rows.append((workers, statistics.median(rates)))
    print()
    print(f"Python threads searching one HNSW index ({n:,} x {d}, 1 query per call, ef 64)")
    print("| Python threads | queries/s | speed-up |")
    print("| --- | --- | --- |")
    for workers, rate in rows:
        print(f"| {workers} | {rate:,.0f} | {rate / rows[0][1]:.2f} |")


def twotower_threads(n):
    twotower.set_threads(n)


if __name__ == "__main__":
    main()
