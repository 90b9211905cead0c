"""The Python module against independent readings: the twotower command's own output (another
front end over the same files), numpy reference computations (AUC, exact top-k), and numpy's
reader of the .npy files the command writes. Run by scripts/test.sh:

    PYTHONPATH=build/python /usr/bin/python3 -m pytest python/tests -q
"""

import json
import os
import subprocess

import numpy as np
import pytest

import twotower

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLI = os.environ.get("TWOTOWER_CLI", os.path.join(REPO, "build", "twotower"))
SMALL = {
    "model.embedding_dim": 16,
    "model.user_hidden_dims": [32],
    "model.item_hidden_dims": [32],
    "training.batch_size": 128,
    "training.epochs": 3,
    "threads": 1,
    "seed": 3,
}


def cli(*args):
    out = subprocess.run([CLI, *args], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab")
    data = root / "data"
    summary = twotower.generate(data, users=300, movies=120, interactions=4000, seed=7)
    assert summary["train"] + summary["val"] + summary["test"] == 4000
    overrides = dict(SMALL, **{"data.dir": str(data), "output.dir": str(root / "runs")})
    run = twotower.train(os.path.join(REPO, "config", "ranking_config.yaml"), overrides=overrides,
                         progress=False)
    return {"root": root, "data": data, "run": run, "model": run.model}


def test_train_writes_a_run_and_its_metrics(lab):
    run = lab["run"]
    assert os.path.isfile(os.path.join(run.dir, "config.yaml"))
    assert 1 <= run.best_epoch <= SMALL["training.epochs"]
    metrics = run.metrics
    assert len(metrics) == SMALL["training.epochs"]  # patience 5 > 3 epochs: no early stop
    # The settings given reached the run: its config.yaml holds them.
    config = open(os.path.join(run.dir, "config.yaml"), encoding="utf-8").read()
    assert "embedding_dim: 16" in config and "epochs: 3" in config
    assert lab["model"].config["model"]["embedding_dim"] == 16


def test_recommend_gives_the_command_line_answer_to_the_bit(lab):
    m = lab["model"]
    for user in m.user_ids[:5]:
        ids, scores = m.recommend(user, k=10, exclude_seen=True)
        shown = json.loads(cli("recommend", "--model", lab["run"].model_path, "--user-id", user,
                               "--k", "10", "--exclude-seen", "--json", "--quiet"))
        assert list(ids) == [it["item_id"] for it in shown["items"]]
        assert list(scores) == [it["score"] for it in shown["items"]]  # exact, not approximate


def test_a_batch_is_each_user_alone_and_padding_is_marked(lab):
    m = lab["model"]
    users = m.user_ids[:4]
    ids, scores = m.recommend(users, k=5, exclude_seen=False)
    assert ids.shape == (4, 5) and scores.shape == (4, 5)
    for i, u in enumerate(users):
        one_ids, one_scores = m.recommend(u, k=5, exclude_seen=False)
        assert list(ids[i]) == list(one_ids)
        assert np.array_equal(scores[i], one_scores)
    # Only two items allowed: the rest of each row is padding.
    allow = m.item_ids[:2]
    ids, scores = m.recommend(users[:1], k=5, exclude_seen=False, allow=allow)
    assert sorted(ids[0, :2]) == sorted(allow)
    assert list(ids[0, 2:]) == [None] * 3 and np.isnan(scores[0, 2:]).all()


def test_encode_items_is_what_embed_writes(lab, tmp_path):
    m = lab["model"]
    out = tmp_path / "items.npy"
    cli("embed", "--model", lab["run"].model_path, "--out", str(out))
    written = np.load(out)  # numpy's own .npy reader
    v = m.encode_items()
    assert v.dtype == np.float32 and v.shape == (len(m.item_ids), m.dim)
    assert np.array_equal(v, written)
    # No copy: the array views the engine's matrix.
    assert not v.flags.owndata
    assert np.array_equal(m.encode_items(m.item_ids[3:5]), v[3:5])


def test_evaluate_auc_matches_a_numpy_mann_whitney_over_score(lab):
    m = lab["model"]
    test = np.genfromtxt(lab["data"] / "test" / "interactions.csv", delimiter=",", names=True,
                         dtype=None, encoding="utf-8")
    users = [str(u) for u in test["user_id"]]
    items = [str(i) for i in test["movie_id"]]
    labels = np.asarray(test["liked"], dtype=np.float64)
    scores = np.array([m.score(u, [i])[0] for u, i in zip(users, items)])
    # AUC = P(score of a positive > score of a negative), ties one half (mid-ranks).
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    pos = labels == 1.0
    n_pos, n_neg = pos.sum(), (~pos).sum()
    auc = (ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    report = m.evaluate(lab["data"] / "test" / "interactions.csv")
    assert report["count"] == len(labels)
    assert report["auc"] == pytest.approx(auc, abs=1e-6)
    assert 0.0 <= report["recall@10"] <= 1.0


def test_flat_index_search_is_the_exact_top_k(lab):
    m = lab["model"]
    v = m.encode_items()
    idx = twotower.Index.build(v, m.item_ids, kind="flat")
    assert len(idx) == len(m.item_ids) and idx.dim == m.dim
    q = m.encode_users(m.user_ids[:6])
    scores, ids = idx.search(q, k=7)
    exact = q.astype(np.float64) @ v.astype(np.float64).T
    for r in range(q.shape[0]):
        top = np.argsort(-exact[r], kind="stable")[:7]
        assert list(ids[r]) == [m.item_ids[t] for t in top]
        assert np.allclose(scores[r], exact[r, top], rtol=0, atol=1e-5)


def test_index_search_filters_agree_with_a_brute_force(lab):
    m = lab["model"]
    v = m.encode_items()
    items = m.item_ids
    q = m.encode_users(m.user_ids[:4])
    exact = q.astype(np.float64) @ v.astype(np.float64).T
    rng = np.random.default_rng(7)
    allowed = [items[i] for i in rng.choice(len(items), size=25, replace=False)]

    def brute(r, k, exclude=(), allow=None):
        order = np.argsort(-exact[r], kind="stable")
        keep = [items[t] for t in order
                if items[t] not in exclude and (allow is None or items[t] in allow)]
        return keep[:k]

    # Each query's own three best items, excluded for that query only.
    own_best = [brute(r, 3) for r in range(q.shape[0])]
    for kind in ("flat", "hnsw"):  # the lab's catalogue is small: HNSW scans it exactly
        idx = twotower.Index.build(v, items, kind=kind)
        _, ids = idx.search(q, k=5, exclude=own_best)
        for r in range(q.shape[0]):
            assert list(ids[r]) == brute(r, 5, exclude=own_best[r]), kind
        _, ids = idx.search(q, k=5, allow=allowed + ["no-such-item"])
        for r in range(q.shape[0]):
            assert list(ids[r]) == brute(r, 5, allow=allowed), kind
        _, ids = idx.search(q, k=5, exclude=allowed[:10], allow=allowed)
        for r in range(q.shape[0]):
            assert list(ids[r]) == brute(r, 5, exclude=allowed[:10], allow=allowed), kind
        # Fewer allowed items than k: the rest is padding.
        scores, ids = idx.search(q[0], k=5, allow=allowed[:2])
        assert list(ids[:2]) == brute(0, 2, allow=allowed[:2]) and list(ids[2:]) == ["", "", ""]
        assert np.isneginf(scores[2:]).all()
    with pytest.raises(twotower.InvalidArgumentError, match="exclude: 2 lists for 4 queries"):
        idx.search(q, k=5, exclude=[[items[0]], [items[1]]])
    with pytest.raises(twotower.InvalidArgumentError, match="allow: expected a list of ids"):
        idx.search(q, k=5, allow=items[0])
    with pytest.raises(twotower.InvalidArgumentError, match="a mix of ids and lists"):
        idx.search(q, k=5, exclude=[items[0], [items[1]]])


def test_compressed_flat_storage_gives_the_fp32_results(lab, tmp_path):
    m = lab["model"]
    v = m.encode_items()
    q = m.encode_users(m.user_ids[:20])
    want_scores, want_ids = twotower.Index.build(v, m.item_ids).search(q, k=10)
    for storage in ("bf16", "int8"):
        idx = twotower.Index.build(v, m.item_ids, kind="flat", storage=storage)
        scores, ids = idx.search(q, k=10)
        assert (ids == want_ids).all() and (scores == want_scores).all(), storage
        idx.save(tmp_path / f"{storage}.index")
        again = twotower.Index.load(tmp_path / f"{storage}.index").search(q, k=10)
        assert (again[1] == want_ids).all(), storage
    with pytest.raises(twotower.InvalidArgumentError, match="storage: expected"):
        twotower.Index.build(v, m.item_ids, kind="flat", storage="int4")
    # hnsw with codes in its graph: every candidate re-scored in fp32 (this small catalogue is
    # scanned exactly, so the results are the exact ones), kept through save and load.
    for storage in ("bf16", "int8"):
        idx = twotower.Index.build(v, m.item_ids, kind="hnsw", M=8, storage=storage)
        assert idx.spec.endswith(f",storage={storage}"), idx.spec
        scores, ids = idx.search(q, k=10)
        assert (ids == want_ids).all() and (scores == want_scores).all(), storage
        idx.save(tmp_path / f"hnsw_{storage}.index")
        assert twotower.Index.load(tmp_path / f"hnsw_{storage}.index").spec == idx.spec
    with pytest.raises(twotower.InvalidArgumentError, match="storage: expected"):
        twotower.Index.build(v, m.item_ids, kind="hnsw", storage="int4")


def test_an_index_saved_and_loaded_answers_the_same(lab, tmp_path):
    m = lab["model"]
    v = m.encode_items()
    idx = twotower.Index.build(v, m.item_ids, kind="hnsw", M=16, ef_construction=100)
    path = tmp_path / "items.index"
    idx.save(path)
    back = twotower.Index.load(path)
    assert back.spec == idx.spec and back.ids == idx.ids
    q = m.encode_users(m.user_ids[:3])
    a_scores, a_ids = idx.search(q, k=5)
    b_scores, b_ids = back.search(q, k=5)
    assert (a_ids == b_ids).all() and np.array_equal(a_scores, b_scores)


def test_similar_is_the_nearest_items_by_inner_product(lab):
    m = lab["model"]
    v = m.encode_items()
    item = m.item_ids[10]
    ids, scores = m.similar(item, k=4)
    assert item not in list(ids)
    rows = [m.item_ids.index(i) for i in ids]
    expected = v[rows].astype(np.float64) @ v[10].astype(np.float64)
    assert np.allclose(scores, expected, atol=1e-5)
    # A list of items: one row each, what each alone gives.
    many_ids, many_scores = m.similar([item, m.item_ids[3]], k=4)
    assert many_ids.shape == (2, 4) and many_scores.shape == (2, 4)
    assert list(many_ids[0]) == list(ids) and np.array_equal(many_scores[0], scores)
    alone_ids, alone_scores = m.similar(m.item_ids[3], k=4)
    assert list(many_ids[1]) == list(alone_ids) and np.array_equal(many_scores[1], alone_scores)


def test_errors_are_typed_and_name_what_was_wrong(lab, tmp_path):
    m = lab["model"]
    with pytest.raises(twotower.NotFoundError) as e:
        m.recommend("no-such-user")
    assert isinstance(e.value, LookupError) and isinstance(e.value, twotower.Error)
    assert e.value.field == "user_id"
    with pytest.raises(twotower.InvalidArgumentError) as e:
        m.recommend(m.user_ids[0], k=0)
    assert isinstance(e.value, ValueError)
    with pytest.raises(twotower.NotFoundError):
        m.recommend(m.user_ids[0], exclude=["no-such-item"])
    with pytest.raises(twotower.InvalidArgumentError):
        twotower.Index.build(np.zeros((3, 4), dtype=np.float32), ["a", "b"])
    with pytest.raises(twotower.InvalidArgumentError) as e:
        twotower.train(os.path.join(REPO, "config", "ranking_config.yaml"),
                       overrides={"training.epochs": -1}, progress=False)
    assert "training.epochs" in str(e.value)
    # None is not a value (str(None) would reach the engine as the text "None").
    with pytest.raises(twotower.InvalidArgumentError) as e:
        twotower.train(os.path.join(REPO, "config", "ranking_config.yaml"),
                       overrides={"training.precision": None}, progress=False)
    assert e.value.field == "training.precision" and "is None" in str(e.value)
    # A missing file is a FileNotFoundError, whatever reads it; a corrupt one a CorruptFileError.
    with pytest.raises(FileNotFoundError) as e:
        twotower.Model.load(tmp_path / "missing.safetensors")
    assert isinstance(e.value, twotower.Error) and "missing.safetensors" in str(e.value)
    with pytest.raises(FileNotFoundError):
        twotower.Index.load(tmp_path / "missing.index")
    with pytest.raises(FileNotFoundError):
        twotower.read_table(tmp_path / "missing.parquet")
    with pytest.raises(FileNotFoundError):
        twotower.read_table(tmp_path / "missing.csv")
    with pytest.raises(FileNotFoundError):
        twotower.train(tmp_path / "missing.yaml", progress=False)
    (tmp_path / "bad.index").write_bytes(b"not an index at all")
    with pytest.raises(twotower.CorruptFileError):
        twotower.Index.load(tmp_path / "bad.index")


def test_dataframes_train_the_same_model_as_their_files(lab, tmp_path):
    pd = pytest.importorskip("pandas")  # Debian's python3-pandas; install_deps.sh installs it
    data = lab["data"]
    frames = {
        "users": pd.read_csv(data / "users.csv", dtype=str, keep_default_na=False),
        "items": pd.read_csv(data / "movies.csv", dtype=str, keep_default_na=False),
        "train": pd.read_csv(data / "train" / "interactions.csv", dtype=str),
        "val": pd.read_csv(data / "val" / "interactions.csv", dtype=str),
        "test": pd.read_csv(data / "test" / "interactions.csv", dtype=str),
    }
    overrides = dict(SMALL, **{"output.dir": str(tmp_path / "runs")})
    run = twotower.train(os.path.join(REPO, "config", "ranking_config.yaml"),
                         overrides=overrides, progress=False, **frames)
    assert run.data_dir is not None and os.path.isdir(run.data_dir)
    # The same rows as the files: the same training, epoch for epoch.
    expected = open(os.path.join(lab["run"].dir, "metrics.csv"), encoding="utf-8").read()
    got = open(os.path.join(run.dir, "metrics.csv"), encoding="utf-8").read()
    assert got == expected


def test_ctrl_c_stops_training_and_resume_finishes_the_same_run(lab, tmp_path):
    import signal
    import threading

    config = os.path.join(REPO, "config", "ranking_config.yaml")
    settings = dict(SMALL, **{"data.dir": str(lab["data"]), "training.epochs": 300,
                              "training.early_stopping_patience": 0})
    cut = tmp_path / "cut"
    # Python's own handler, while this test runs, only records a SIGINT: one that came after
    # training (a machine fast enough to finish 300 epochs in 0.5 s) must not stop pytest.
    late = []
    previous = signal.signal(signal.SIGINT, lambda *args: late.append(1))
    try:
        timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT))
        timer.start()
        with pytest.raises(KeyboardInterrupt) as e:
            twotower.train(config, overrides=dict(settings, **{"output.dir": str(cut)}),
                           progress=False)
        timer.join()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert not late
    assert "training interrupted" in str(e.value)
    (run_dir,) = [str(p) for p in cut.iterdir()]
    done = open(os.path.join(run_dir, "metrics.csv"), encoding="utf-8").read().count("\n") - 1
    assert 1 <= done < 300, "the interrupt came before the first or after the last epoch"
    resumed = twotower.train(resume=run_dir, progress=False)
    whole = twotower.train(config, overrides=dict(settings, **{"output.dir": str(tmp_path / "w")}),
                           progress=False)
    a = open(os.path.join(resumed.dir, "metrics.csv"), encoding="utf-8").read()
    b = open(os.path.join(whole.dir, "metrics.csv"), encoding="utf-8").read()
    assert a == b


def test_hostile_ids_and_sizes_get_clear_answers(lab):
    m = lab["model"]
    user = m.user_ids[0]
    # bytes are one id (UTF-8), not a list of byte values.
    a_ids, a_scores = m.recommend(user.encode(), k=3)
    b_ids, b_scores = m.recommend(user, k=3)
    assert list(a_ids) == list(b_ids) and np.array_equal(a_scores, b_scores)
    # A k far past the catalogue allocates by the catalogue, not by k.
    ids, scores = m.recommend([user, m.user_ids[1]], k=10**9, exclude_seen=False)
    assert ids.shape == (2, len(m.item_ids))
    idx = twotower.Index.build(m.encode_items(), m.item_ids)
    hit_scores, hit_ids = idx.search(m.encode_users([user]), k=10**9)
    assert hit_ids.shape == (1, len(m.item_ids))
    # Errors raised by the package itself carry .field as the engine's do.
    with pytest.raises(twotower.InvalidArgumentError) as e:
        m.score(user, "7")
    assert e.value.field == "item_ids"
    # An id is a string or an integer: None, a float or a bool is refused, not turned into the
    # text "None" / "42.0" / "True" that would match nothing (or the wrong thing).
    idx_ids = m.item_ids
    for bad, field, call in (
            (None, "exclude", lambda b: m.recommend(user, exclude=[b])),
            (42.0, "user_ids", lambda b: m.recommend([user, b])),
            (True, "user_id", lambda b: m.score(b, idx_ids[:2])),
            (None, "exclude", lambda b: idx.search(m.encode_users([user]), k=3, exclude=[b])),
            (b"\xff", "item_ids", lambda b: m.similar(b))):
        with pytest.raises(ValueError, match="an id") as e:
            call(bad)
        assert e.value.field == field
    assert len(m.recommend(np.int64(int(user)) if user.isdigit() else user, k=2)[0]) == 2
    # Complex queries or embeddings are refused, not cut to their real parts.
    q = m.encode_users([user]).astype(np.complex64)
    with pytest.raises(ValueError, match="expected real numbers, got complex") as e:
        idx.search(q, k=3)
    assert e.value.field == "queries"
    with pytest.raises(ValueError, match="expected real numbers, got complex"):
        twotower.Index.build(m.encode_items() + 1j, m.item_ids)


def test_training_from_python_and_from_the_cli_write_the_same_metrics_bytes(lab, tmp_path):
    # The same config, seed and threads through both front ends: metrics.csv byte for byte
    # (the columns that are not wall-clock times).
    sets = dict(SMALL, **{"data.dir": str(lab["data"])})
    py_run = twotower.train(os.path.join(REPO, "config", "ranking_config.yaml"),
                            overrides=dict(sets, **{"output.dir": str(tmp_path / "py")}),
                            progress=False)
    args = ["train", "--config", os.path.join(REPO, "config", "ranking_config.yaml"), "--quiet",
            "--output-dir", str(tmp_path / "cli")]
    for key, value in sets.items():
        args += ["--set", f"{key}={value if not isinstance(value, list) else json.dumps(value)}"]
    cli(*args)
    (cli_dir,) = [os.path.join(tmp_path / "cli", d) for d in os.listdir(tmp_path / "cli")]

    def without_times(path):
        lines = open(path, encoding="utf-8").read().splitlines()
        header = lines[0].split(",")
        keep = [i for i, h in enumerate(header) if "seconds" not in h and h != "time"]
        return [[row.split(",")[i] for i in keep] for row in lines]

    ours = without_times(os.path.join(py_run.dir, "metrics.csv"))
    theirs = without_times(os.path.join(cli_dir, "metrics.csv"))
    assert ours == theirs and len(ours) == SMALL["training.epochs"] + 1


def test_threads_search_one_index_at_once(lab):
    # The GIL is released during search: several Python threads on one index each get the
    # answer a lone call gives.
    import threading

    m = lab["model"]
    idx = twotower.Index.build(m.encode_items(), m.item_ids, kind="hnsw", M=16)
    queries = m.encode_users()
    alone = idx.search(queries, k=10)
    results, errors = [None] * 4, []

    def work(t):
        try:
            results[t] = [idx.search(queries, k=10) for _ in range(5)]
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for per_thread in results:
        for scores, ids in per_thread:
            assert np.array_equal(scores, alone[0]) and np.array_equal(ids, alone[1])


def test_index_add_appends_and_replaces_like_the_cli(lab, tmp_path):
    m = lab["model"]
    v = m.encode_items()
    idx = twotower.Index.build(v[:100], m.item_ids[:100], kind="flat")
    # 20 new items and 5 replaced ones (the replacement: another item's vector).
    new = np.vstack([v[100:120], v[:5][::-1]])
    assert idx.add(new, m.item_ids[100:120] + m.item_ids[:5]) == {"added": 20, "updated": 5}
    assert len(idx) == 120 and idx.ids[:100] == m.item_ids[:100]
    # Searched exactly as a fresh index over the same rows (numpy: the expected top 3).
    rows = np.vstack([v[:5][::-1], v[5:120]])
    q = m.encode_users(m.user_ids[:3])
    scores, ids = idx.search(q, k=3)
    exact = q.astype(np.float64) @ rows.astype(np.float64).T
    for r in range(3):
        top = np.argsort(-exact[r], kind="stable")[:3]
        assert list(ids[r]) == [(m.item_ids[:120])[t] for t in top]
    with pytest.raises(ValueError):  # a non-finite row: nothing added
        idx.add(np.full((1, m.dim), np.nan, dtype=np.float32), ["x"])
    assert len(idx) == 120


def test_queries_are_read_in_place_and_other_layouts_converted(lab):
    m = lab["model"]
    idx = twotower.Index.build(m.encode_items(), m.item_ids, kind="flat")
    q = np.ascontiguousarray(m.encode_users(m.user_ids[:4]))
    # A Fortran-ordered float64 copy of the same queries gives the same answer (converted once).
    f64 = np.asfortranarray(q.astype(np.float64))
    a, b = idx.search(q, k=5), idx.search(f64, k=5)
    assert np.array_equal(a[0], b[0]) and (a[1] == b[1]).all()
    with pytest.raises(ValueError, match=r"queries: expected shape \(n, %d\)" % m.dim):
        idx.search(np.zeros((2, m.dim + 1), dtype=np.float32), k=5)


def test_arguments_are_checked_not_coerced(lab):
    m = lab["model"]
    user = m.user_ids[0]
    for bad in (2.7, "5", True):
        with pytest.raises(ValueError, match="k: expected an integer"):
            m.recommend(user, k=bad)
    with pytest.raises(ValueError, match="exclude_seen: expected True or False"):
        m.recommend(user, exclude_seen="no")
    assert len(m.recommend(user, k=np.int64(3))[0]) == 3  # numpy integers are integers
    with pytest.raises(ValueError, match="user_hidden_dims"):
        twotower.train(os.path.join(REPO, "config", "ranking_config.yaml"),
                       overrides={"model.user_hidden_dims": [32.9]}, progress=False)


def test_build_info_is_what_the_command_line_reports():
    info = twotower.build_info()
    assert list(info) == ["version", "compiled_for", "fp32_training_products",
                          "bf16_training_products", "index_scan_kernels"]
    out = subprocess.run([CLI, "--version"], capture_output=True, text=True, check=True).stdout
    lines = out.strip().split("\n")
    assert lines[0] == "twotower " + info["version"]
    # The module and the CLI are built from the same tree with the same flags, and choose their
    # kernels on the same CPU.
    assert lines[1:] == [
        "compiled for: " + info["compiled_for"],
        "fp32 training products: " + info["fp32_training_products"],
        "bf16 training products: " + info["bf16_training_products"],
        "index scan kernels: " + info["index_scan_kernels"],
    ]
    assert info["index_scan_kernels"] in {"avx512", "avx512_vnni", "avx512_bf16"} or \
        info["index_scan_kernels"].startswith("build (")
