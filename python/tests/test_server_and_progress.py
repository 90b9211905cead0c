"""twotower.Server against the twotower command's answers, Index.search's ef against a numpy
brute force, the progress bars train draws from Python, and the arrays the module returns
holding the engine's memory (no copy). Run by scripts/test.sh."""

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import numpy as np
import pytest

import twotower

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMALL = {
    "model.embedding_dim": 16,
    "model.user_hidden_dims": [32],
    "model.item_hidden_dims": [32],
    "training.batch_size": 128,
    "training.epochs": 2,
    "threads": 1,
    "seed": 5,
}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab")
    data = root / "data"
    twotower.generate(data, users=200, movies=80, interactions=2500, seed=11)
    overrides = dict(SMALL, **{"data.dir": str(data), "output.dir": str(root / "runs")})
    run = twotower.train(os.path.join(REPO, "config", "ranking_config.yaml"), overrides=overrides,
                         progress=False)
    return {"root": root, "data": data, "run": run, "model": run.model}


def post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_server_answers_what_the_model_answers_and_stops(lab, tmp_path):
    m = lab["model"]
    user = m.user_ids[3]
    want_ids, want_scores = m.recommend(user, k=5, exclude_seen=False)
    events = tmp_path / "events.jsonl"
    srv = twotower.Server(model=lab["run"].model_path, port=0, threads=2, events=str(events))
    assert not srv.running
    with srv:
        assert srv.running and srv.port > 0
        with urllib.request.urlopen(srv.url + "/healthz", timeout=10) as r:
            assert r.status == 200
        status, body = post(srv.url + "/v1/recommend", {"user_id": user, "k": 5})
        assert status == 200, body
        assert [i["item_id"] for i in body["items"]] == list(want_ids)
        assert np.allclose([i["score"] for i in body["items"]], want_scores, rtol=0, atol=1e-6)
        # Bad input is the server's 4xx, and it keeps serving.
        status, body = post(srv.url + "/v1/recommend", {"user_id": user, "k": 0})
        assert status == 400 and body["field"] == "k"
        assert post(srv.url + "/v1/recommend", {"user_id": user, "k": 5})[0] == 200
        srv.reload()  # the same files again: succeeds
        # A port another server holds: a ConflictError naming it, not a bad argument.
        other = twotower.Server(model=lab["run"].model_path, port=srv.port,
                                events=str(tmp_path / "other.jsonl"))
        with pytest.raises(twotower.ConflictError, match=f"cannot bind .*:{srv.port}"):
            other.start()
        assert post(srv.url + "/v1/recommend", {"user_id": user, "k": 5})[0] == 200
    assert not srv.running
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(srv.url + "/healthz", timeout=2)
    with pytest.raises(twotower.ConflictError, match="was stopped"):
        srv.start()
    srv.stop()  # a second stop does nothing
    # The stopped server let go of its events log: a new one opens it at once, while it is held
    # a second one is refused, and a server whose start failed lets go too.
    again = twotower.Server(model=lab["run"].model_path, port=0, events=str(events))
    with pytest.raises(twotower.ConflictError, match="events log is in use"):
        twotower.Server(model=lab["run"].model_path, port=0, events=str(events))
    again.stop()  # never started: closes its files all the same
    failed = twotower.Server(model=lab["run"].model_path, host="no-such-host.invalid", port=0,
                             events=str(events))
    with pytest.raises(ValueError, match="no-such-host.invalid"):
        failed.start()
    with twotower.Server(model=lab["run"].model_path, port=0, events=str(events)) as last:
        assert last.running


def test_server_arguments_are_checked_as_the_commands_flags(lab, tmp_path):
    model = lab["run"].model_path
    with pytest.raises(ValueError, match="give model"):
        twotower.Server(port=0)
    with pytest.raises(ValueError, match="candidates is how many retrieved items rerank"):
        twotower.Server(model=model, candidates=50, port=0)
    with pytest.raises(ValueError, match="no serve setting 'prot'.*port") as e:
        twotower.Server(model=model, prot=0)
    assert e.value.field == "prot"
    with pytest.raises(ValueError, match=r"Server\(port=70000\)"):
        twotower.Server(model=model, port=70000)
    with pytest.raises(FileNotFoundError):
        twotower.Server(model=str(tmp_path / "missing.safetensors"), port=0)
    config = tmp_path / "serve.yaml"
    config.write_text("serve:\n  port: 0\n  events: %s\n  variants:\n    - name: a\n"
                      "      model: %s\n" % (tmp_path / "ev.jsonl", model))
    with pytest.raises(ValueError, match="config names the variants"):
        twotower.Server(config=config, model=model)
    with twotower.Server(config=config) as srv:
        status, body = post(srv.url + "/v1/recommend", {"user_id": lab["model"].user_ids[0]})
        assert status == 200 and body["variant"] == "a"


def test_ef_widens_the_graph_search_towards_the_exact_answer():
    # 4,000 random unit vectors: large enough that the graph answers (not an exact scan).
    rng = np.random.default_rng(3)
    v = rng.standard_normal((4000, 16)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    q = rng.standard_normal((200, 16)).astype(np.float32)
    ids = [f"i{i}" for i in range(len(v))]
    idx = twotower.Index.build(v, ids, kind="hnsw", M=8, ef_construction=40, ef_search=64)
    exact = np.argsort(-(q.astype(np.float64) @ v.astype(np.float64).T), axis=1,
                       kind="stable")[:, :10]

    def recall(found):
        return np.mean([len(set(found[r]) & {ids[j] for j in exact[r]}) / 10
                        for r in range(len(q))])

    narrow = recall(idx.search(q, k=10, ef=10)[1])
    wide = recall(idx.search(q, k=10, ef=400)[1])
    assert wide >= 0.99 and narrow < wide, (narrow, wide)
    # ef=None is the index's own ef_search, and a call's ef does not stay.
    default = idx.search(q, k=10)
    same = idx.search(q, k=10, ef=64)
    assert np.array_equal(default[1], same[1]) and np.array_equal(default[0], same[0])
    idx.search(q, k=10, ef=5)
    again = idx.search(q, k=10)
    assert np.array_equal(default[1], again[1])
    flat = twotower.Index.build(v, ids, kind="flat")
    with pytest.raises(ValueError, match="ef: applies to an hnsw index"):
        flat.search(q, k=10, ef=64)
    for bad in (0, -3, 2_000_000):
        with pytest.raises(ValueError, match="ef: expected 1 .. 1000000"):
            idx.search(q, k=10, ef=bad)
    with pytest.raises(ValueError, match="ef: expected an integer"):
        idx.search(q, k=10, ef=True)


def test_training_draws_progress_bars_from_python(lab, tmp_path, capsys, monkeypatch):
    overrides = dict(SMALL, **{"data.dir": str(lab["data"]), "output.dir": str(tmp_path),
                               "training.epochs": 2})
    config = os.path.join(REPO, "config", "ranking_config.yaml")
    # Without tqdm: one plain line per finished bar on Python's sys.stderr.
    monkeypatch.setattr(twotower, "_use_tqdm", False)
    twotower.train(config, overrides=overrides, progress=True)
    lines = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    train_lines = [x for x in lines if x.startswith("train ")]
    val_lines = [x for x in lines if x.startswith("val ")]
    assert len(train_lines) == 2 and len(val_lines) == 2, lines
    done, total = train_lines[0].split()[1].split("/")
    assert done == total and int(total) > 0
    assert "loss " in train_lines[0]
    # With tqdm (Debian's python3-tqdm, which scripts/install_deps.sh installs).
    pytest.importorskip("tqdm")
    monkeypatch.setattr(twotower, "_use_tqdm", True)
    twotower.train(config, overrides=overrides, progress=True)
    err = capsys.readouterr().err
    assert "train: 100%" in err and "loss=" not in err and "loss " in err, err[-500:]
    # progress=False: nothing.
    twotower.train(config, overrides=overrides, progress=False)
    assert capsys.readouterr().err.strip() == ""


def test_a_failing_progress_bar_does_not_stop_training(lab, tmp_path, monkeypatch):
    class Broken:
        def start(self, *a):
            raise RuntimeError("broken bar")

    monkeypatch.setattr(twotower, "_Bars", lambda use_tqdm: Broken())
    overrides = dict(SMALL, **{"data.dir": str(lab["data"]), "output.dir": str(tmp_path)})
    seen = []
    monkeypatch.setattr("sys.unraisablehook", lambda u: seen.append(u.exc_value))
    run = twotower.train(os.path.join(REPO, "config", "ranking_config.yaml"),
                         overrides=overrides, progress=True)
    assert len(run.metrics) == SMALL["training.epochs"]
    assert len(seen) == 1 and "broken bar" in str(seen[0])


def test_arrays_returned_hold_the_engines_memory(lab):
    # Not copied into numpy: the array does not own its data; a capsule that frees the engine's
    # matrix does. Two calls give two buffers (each owns its own matrix).
    m = lab["model"]
    a, b = m.encode_items(), m.encode_items()
    for x in (a, b):
        assert x.dtype == np.float32 and x.flags.c_contiguous
        assert not x.flags.owndata and x.base is not None
    assert a.__array_interface__["data"][0] != b.__array_interface__["data"][0]
    assert np.array_equal(a, b)
    idx = twotower.Index.build(a, m.item_ids, kind="flat")
    scores, _ = idx.search(m.encode_users(), k=5)
    assert not scores.flags.owndata and scores.base is not None
    # Queries that are C-contiguous float32 are read in place: a view of a larger buffer works
    # and gives what a copy gives.
    big = np.zeros((2 * len(m.user_ids), m.dim), dtype=np.float32)
    big[::2] = m.encode_users()
    view = big[::2]
    assert not view.flags.c_contiguous  # converted once
    assert np.array_equal(idx.search(view, k=5)[1], idx.search(np.ascontiguousarray(view), k=5)[1])


def test_set_threads_sets_what_searches_use_and_is_checked():
    try:
        assert twotower.set_threads(1) == 1
        assert twotower.set_threads(0) == len(os.sched_getaffinity(0))
        with pytest.raises(ValueError, match="threads: expected 0"):
            twotower.set_threads(-2)
    finally:
        twotower.set_threads(0)


def test_a_dict_config_trains_what_the_same_yaml_file_trains(lab, tmp_path):
    settings = {
        "data": {"dir": str(lab["data"])},
        "model": {"embedding_dim": 8, "user_hidden_dims": [16], "item_hidden_dims": [16]},
        "training": {"epochs": 2, "batch_size": 128, "learning_rate": 0.003},
        "output": {"dir": str(tmp_path / "from_dict")},
        "seed": 9,
        "threads": 1,
    }
    from_dict = twotower.train(settings, progress=False)
    yaml = tmp_path / "same.yaml"
    yaml.write_text(
        f"data:\n  dir: {lab['data']}\n"
        "model:\n  embedding_dim: 8\n  user_hidden_dims: [16]\n  item_hidden_dims: [16]\n"
        "training:\n  epochs: 2\n  batch_size: 128\n  learning_rate: 0.003\n"
        f"output:\n  dir: {tmp_path / 'from_file'}\n"
        "seed: 9\nthreads: 1\n")
    from_file = twotower.train(str(yaml), progress=False)
    read = lambda run: open(os.path.join(run.dir, "metrics.csv"), "rb").read()  # noqa: E731
    assert read(from_dict) == read(from_file)
    with pytest.raises(ValueError, match="embeding_dim"):
        twotower.train({"model": {"embeding_dim": 8}}, progress=False)
    with pytest.raises(ValueError, match="config: a dict of settings holds"):
        twotower.train({"model": {"embedding_dim": object()}}, progress=False)
    with pytest.raises(ValueError, match="config: a dict of settings holds"):
        twotower.train({"training": {"learning_rate": float("nan")}}, progress=False)


def test_encoding_a_dataframe_gives_the_tables_rows(lab):
    m = lab["model"]
    users = twotower.read_table(lab["data"] / "users.csv")
    items = twotower.read_table(lab["data"] / "movies.csv")
    # The whole tables, in order: the same bits as encoding the model's own tables.
    assert np.array_equal(m.encode_users(users), m.encode_users())
    assert np.array_equal(m.encode_items(items), m.encode_items())
    # A few rows: the same users' rows, to float rounding (another block size).
    some = users.iloc[5:9].reset_index(drop=True)
    ids = [str(v) for v in some[some.columns[0]]]
    assert np.allclose(m.encode_users(some), m.encode_users(ids), rtol=0, atol=1e-6)
    # A column the tower needs is missing: the engine's message names it.
    with pytest.raises(ValueError, match=str(users.columns[1])):
        m.encode_users(users.drop(columns=[users.columns[1]]))


NO_COPY_CHILD = r"""
import resource, sys
import numpy as np
import twotower

def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

# An HNSW index reads each query where it lies (the flat index packs queries into tiles for its
# scan, an engine-internal copy that C++ callers pay too).
items = np.eye(8, dtype=np.float32)
idx = twotower.Index.build(items, [str(i) for i in range(8)], kind="hnsw")
if sys.argv[1] == "float32":
    q = np.ones((1_000_000, 8), dtype=np.float32)  # 32 MB, every page touched
else:
    q = np.ones((1_000_000, 8), dtype=np.float64, order="F")  # 64 MB: converted to 32 MB
before = peak_mib()
scores, ids = idx.search(q, k=1)
print(peak_mib() - before)
"""


def test_c_contiguous_float32_queries_are_not_copied(tmp_path):
    # The peak memory of a search over 32 MB of queries, in a fresh process: read in place, it
    # grows by the outputs only (1,000,000 x 1 labels, scores and ids: about 20 MB, the ids as
    # shared str objects); converted from float64 in Fortran order, by a 32 MB copy on top.
    script = tmp_path / "child.py"
    script.write_text(NO_COPY_CHILD)
    env = dict(os.environ, OMP_NUM_THREADS="1")

    def growth(layout):
        out = subprocess.run([sys.executable, str(script), layout], capture_output=True,
                             text=True, env=env, check=True)
        return float(out.stdout.strip())

    in_place, converted = growth("float32"), growth("fortran64")
    assert converted - in_place > 24, (in_place, converted)  # the measurement sees a copy
    assert in_place < 28, in_place


def test_an_index_built_in_python_records_its_model_and_is_served(lab, tmp_path):
    m = lab["model"]
    path = str(tmp_path / "items.index")
    twotower.Index.build(m.encode_items(), m.item_ids, kind="hnsw", model=m).save(path)
    assert twotower.Index.load(path).model_sha256 == m.sha256
    user = m.user_ids[2]
    served = twotower.Model.load(lab["run"].model_path, index=path)
    a, b = served.recommend(user, k=5), m.recommend(user, k=5)
    assert list(a[0]) == list(b[0]) and np.array_equal(a[1], b[1])
    with twotower.Server(model=lab["run"].model_path, index=path, port=0,
                         events=str(tmp_path / "ev.jsonl")) as srv:
        status, body = post(srv.url + "/v1/recommend", {"user_id": user, "k": 5})
        assert status == 200 and [i["item_id"] for i in body["items"]] == list(b[0])
    # Without model=, the index records no model and is refused, as the command refuses it.
    other = str(tmp_path / "anonymous.index")
    twotower.Index.build(m.encode_items(), m.item_ids).save(other)
    with pytest.raises(ValueError, match="records no model"):
        twotower.Model.load(lab["run"].model_path, index=other)
    with pytest.raises(ValueError, match="model: expected the twotower.Model"):
        twotower.Index.build(m.encode_items(), m.item_ids, model="m.safetensors")


def test_hostile_arguments_are_refused_by_name(lab, tmp_path):
    m = lab["model"]
    idx = twotower.Index.build(m.encode_items(), m.item_ids)
    for call, field in ((lambda: m.recommend(None), "user_ids"),
                        (lambda: m.recommend(1.5), "user_ids"),
                        (lambda: m.similar(None), "item_ids"),
                        (lambda: idx.search(m.encode_users([m.user_ids[0]]), k=3, exclude=5),
                         "exclude"),
                        (lambda: twotower.set_threads(2**31), "threads"),
                        (lambda: twotower.Server(model=5), "model"),
                        (lambda: twotower.Server(model=lab["run"].model_path + "\x00x"), "model"),
                        (lambda: twotower.train(None), "config")):
        with pytest.raises(ValueError) as e:
            call()
        assert e.value.field == field, (field, str(e.value))
    # A DataFrame table that cannot be written leaves no folder of DataFrames behind.
    out = tmp_path / "runs"
    users = twotower.read_table(lab["data"] / "users.csv")
    with pytest.raises(ValueError):
        twotower.train(os.path.join(REPO, "config", "ranking_config.yaml"),
                       overrides={"output.dir": str(out), "data.dir": str(lab["data"])},
                       users=users.assign(when=np.array(["2020-01-01"] * len(users),
                                                         dtype="datetime64[ns]")),
                       progress=False)
    assert not [p for p in os.listdir(out) if p.startswith("dataframes_")]
    # numpy scalars are settings values in a dict config, as in overrides.
    run = twotower.train({"data": {"dir": str(lab["data"])},
                          "training": {"epochs": np.int64(1), "learning_rate": np.float32(0.5)},
                          "output": {"dir": str(tmp_path / "np")}, "threads": 1},
                         progress=False)
    assert len(run.metrics) == 1
