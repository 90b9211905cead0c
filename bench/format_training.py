"""Formats bench_results/training.jsonl (from bench/run_training_bench.sh) as markdown."""
import json
import sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
core = sys.argv[2] if len(sys.argv) > 2 else ""


def pick(**kw):
    return [r for r in rows if all(r.get(k) == v for k, v in kw.items())]


print(f"Peer: PyTorch {'' if not core else f'with OPENBLAS_CORETYPE={core}, '}OPENBLAS_NUM_THREADS = threads.\n")
print("| sgemm 1024^3 | threads 1 | threads 2 |\n| --- | --- | --- |")
for e in ("eigen", "openblas"):
    g = {r["threads"]: r["gflops"] for r in pick(kind="sgemm", engine=e)}
    print(f"| {e} GFLOP/s | {g.get(1)} | {g.get(2)} |")
print("\n| one step | threads | twotower us | PyTorch us | speed-up | twotower GFLOP/s | PyTorch GFLOP/s |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for b in (256, 4096):
    for t in (1, 2):
        o = pick(kind="step", engine="twotower", batch=b, threads=t)
        p = pick(kind="step", engine="pytorch", batch=b, threads=t)
        if o and p:
            o, p = o[0], p[0]
            print(f"| batch {b} | {t} | {o['us_per_step']:.0f} | {p['us_per_step']:.0f} | "
                  f"{p['us_per_step'] / o['us_per_step']:.2f}x | {o['gflops']:.1f} | {p['gflops']:.1f} |")
print("\n| lab training, 30 epochs, cosine | threads | twotower s | PyTorch s | speed-up | twotower test AUC | PyTorch test AUC |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for t in (1, 2):
    o = pick(kind="lab", engine="twotower", threads=t)
    p = pick(kind="lab", engine="pytorch", threads=t)
    if o and p:
        o, p = o[0], p[0]
        print(f"| | {t} | {o['train_seconds']:.2f} | {p['train_seconds']:.2f} | "
              f"{p['train_seconds'] / o['train_seconds']:.1f}x | {o['test_auc']:.4f} | {p['test_auc']:.4f} |")
print("\n| one epoch | engine | threads | train rows | seconds | samples/s | peak RSS MiB |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for r in pick(kind="epoch"):
    print(f"| {r['data']} | {r['engine']} | {r['threads']} | {r['train_rows']} | {r['epoch_seconds']:.2f} | "
          f"{r['train_rows'] / r['epoch_seconds']:.0f} | {r['peak_rss_mib']} |")
