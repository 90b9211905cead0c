"""twotower from Python: train, evaluate, embed, index and recommend with the same engine as the
``twotower`` command and server (the C++ app core, through the ``_twotower`` extension).

    import twotower
    twotower.generate("data/lab", users=1000, movies=500)
    run = twotower.train("config/ranking_config.yaml",
                         overrides={"data.dir": "data/lab", "training.epochs": 5})
    print(run.test_metrics["auc"])
    m = run.model                           # the best (or refitted) weights
    ids, scores = m.recommend("42", k=10)   # the same ids and score bits as the CLI
    v = m.encode_items()                    # float32 (items, dim), no copy
    idx = twotower.Index.build(v, m.item_ids, kind="hnsw", M=32)
    hit_scores, hit_ids = idx.search(m.encode_users()[:5], k=10, ef=128)  # faiss order
    with twotower.Server(model=run.model_path, port=0) as srv:  # `twotower serve`, in-process
        print(srv.url)

Errors are twotower.Error subclasses by kind: InvalidArgumentError (also a ValueError),
NotFoundError (also a LookupError), MissingFileError (also a FileNotFoundError), IoError (also an
OSError), CorruptDataError (CorruptFileError), ConflictError,
UnavailableError, InternalError; ``.field`` names the argument or setting concerned.
"""

import csv
import json
import os

import numpy as np

from ._twotower import (  # noqa: F401  (the exception classes are the public API)
    ConflictError,
    CorruptDataError,
    Error,
    InternalError,
    InvalidArgumentError,
    IoError,
    MissingFileError,
    NotFoundError,
    UnavailableError,
)
from . import _twotower as _core

# Errors raised here (not by the engine) carry the same attributes as the engine's.
# A file that fails its own format's checks (model, index, Parquet, npy): the name faiss and
# pandas users look for.
CorruptFileError = CorruptDataError

for _cls in (Error, InvalidArgumentError, NotFoundError, MissingFileError, CorruptDataError,
             IoError, ConflictError, UnavailableError, InternalError):
    _cls.field = ""
    _cls.code = _cls.__name__

__all__ = [
    "generate", "movielens", "read_table", "write_table", "train", "Run", "Model", "Index", "Server", "set_threads", "settings", "build_info", "Error", "InvalidArgumentError",
    "NotFoundError", "MissingFileError", "CorruptDataError", "CorruptFileError", "IoError", "ConflictError", "UnavailableError",
    "InternalError",
]


def generate(out_dir, users=1000, movies=500, interactions=10000, seed=42, format="csv"):
    """Writes the synthetic lab data set (users, movies, train / val / test interactions) to
    out_dir, as ``twotower generate`` does; returns the split sizes and the liked rate."""
    return _core.generate(os.fspath(out_dir), _int(users, "users"), _int(movies, "movies"),
                          _int(interactions, "interactions"), _int(seed, "seed"), format)


def movielens(src, out, split="random", val=0.15, test=0.15, seed=0, like_threshold=4.0,
              format="csv"):
    """Converts a MovieLens release (ml-100k, ml-1m, ml-10m, ml-latest, ...) in folder src into
    twotower's layout in out, with its training config out/twotower.yaml, as ``twotower data
    movielens`` does (README "Real data: MovieLens"); returns the counts and split sizes."""
    return _core.movielens(os.fspath(src), os.fspath(out), split, float(val), float(test),
                           int(seed), float(like_threshold), format)


# Whether train's bars use tqdm when it is installed (the tests turn it off to see plain lines).
_use_tqdm = True


def _invalid(message, field):
    e = InvalidArgumentError(message)
    e.field = field
    return e


def _int(value, name):
    # An integer argument: int or a numpy integer; 2.7, "5" or True are refused, not truncated.
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise _invalid(f"{name}: expected an integer, got {type(value).__name__} {value!r}", name)
    return int(value)


def _bool(value, name):
    # A flag: True / False (or numpy's); "no" or 0 are refused, not read as truthy or falsy.
    if not isinstance(value, (bool, np.bool_)):
        raise _invalid(f"{name}: expected True or False, got {type(value).__name__} {value!r}",
                       name)
    return bool(value)


def read_table(path):
    """Reads a CSV or Parquet table (by suffix) through twotower's own readers into a pandas
    DataFrame, with the types the CLI gives its columns: a Parquet file's schema types; a CSV
    file's inferred from its cells as ``twotower convert`` infers them (integers -> int64, numbers
    whose text comes back the same -> float64, else str; "0042" stays the string "0042").
    Nulls (a CSV's empty cells) become pandas' nullable values: Int64 / boolean / Float64 columns
    with <NA>, None in string columns. Strings that are not UTF-8 keep their bytes as lone
    surrogates (PEP 383), so write_table writes them back unchanged."""
    import pandas as pd

    data = {}
    for name, kind, values, valid in _core.read_table(os.fspath(path)):
        if kind == "STRING":
            column = pd.Series(values, dtype=object)
        elif valid is None:
            column = pd.Series(values)
        else:
            nullable = {"BOOLEAN": "boolean", "FLOAT": "Float64", "DOUBLE": "Float64"}.get(
                kind, "UInt64" if values.dtype == np.uint64 else "Int64")
            column = pd.Series(pd.array(values, dtype=nullable))
            column[~valid] = pd.NA
        data[name] = column
    return pd.DataFrame(data)


def _column_for_writing(name, column):
    # (name, Parquet type, values, valid mask or None) for _core.write_table, from a pandas
    # column; dtypes with no lossless Parquet type of ours are refused naming the column.
    import pandas as pd

    dtype = column.dtype
    valid = None
    if isinstance(dtype, pd.api.extensions.ExtensionDtype) and not isinstance(
            dtype, pd.StringDtype):
        mask = column.isna().to_numpy()
        if mask.any():
            valid = ~mask
        kind = dtype.kind
        fill = {"b": False, "i": 0, "u": 0, "f": 0.0}.get(kind)
        if fill is None:
            raise _invalid(f"write_table: column {name!r}: dtype {dtype} is not written "
                           f"(expected bool, integer, float or str values)", name)
        values = column.to_numpy(dtype=dtype.numpy_dtype, na_value=fill)
        dtype = values.dtype
    else:
        values = column.to_numpy()
    if dtype.kind == "b":
        return name, "BOOLEAN", values.astype(np.int64), valid
    if dtype.kind == "i" or (dtype.kind == "u" and dtype.itemsize < 8):
        return name, "INT32" if dtype.itemsize <= 4 and dtype.kind == "i" else "INT64", \
            values.astype(np.int64), valid
    if dtype.kind == "f":
        return name, "FLOAT" if dtype.itemsize == 4 else "DOUBLE", values.astype(np.float64), valid
    if dtype.kind in ("O", "U") or isinstance(dtype, pd.StringDtype):
        texts, mask = [], []
        for row, v in enumerate(column.tolist()):
            if v is None or v is pd.NA or (isinstance(v, float) and v != v):
                texts.append(None)
                mask.append(False)
            elif isinstance(v, str):
                texts.append(v)
                mask.append(True)
            else:
                raise _invalid(f"write_table: column {name!r}, row {row}: {type(v).__name__} "
                               f"{v!r} in a column of strings (expected str, or None / NaN for "
                               f"a null)", name)
        return name, "STRING", texts, None if all(mask) else np.array(mask, dtype=bool)
    raise _invalid(f"write_table: column {name!r}: dtype {dtype} is not written (expected bool, "
                   f"integer, float or str values; uint64: cast it to int64 or str)", name)


def write_table(df, path):
    """Writes a pandas DataFrame to a CSV or Parquet table (by suffix) through twotower's own
    writers, atomically (a temporary name, then a rename): bool -> BOOLEAN, int8..int32 -> INT32,
    int64 and smaller unsigned -> INT64, float32 -> FLOAT, float64 -> DOUBLE, str -> STRING;
    nullable columns (pandas <NA>, None or NaN among strings) become OPTIONAL with nulls (empty
    cells in CSV). The index is not written (reset_index() first to keep it). Other dtypes
    (datetimes, categoricals, uint64, objects that are not str) are refused with a
    ValueError naming the column. CSV numbers are written as ``twotower convert`` writes them:
    integers in full, floats in their shortest round-trip text."""
    if not hasattr(df, "columns"):
        raise _invalid(f"write_table: expected a pandas DataFrame, got {type(df).__name__}", "df")
    names = [str(c) for c in df.columns]
    if len(set(names)) != len(names):
        raise _invalid(f"write_table: repeated column names in {names}", "df")
    columns = [_column_for_writing(str(n), df[n]) for n in df.columns]
    _core.write_table(os.fspath(path), columns)


def settings():
    """One line per training setting: key, type, default, range, help (``--list-settings``)."""
    return list(_core.settings_help())


def build_info():
    """What this build is and what it computes with on this CPU, as ``twotower --version``
    prints it: a dict with version, compiled_for, fp32_training_products,
    bf16_training_products and index_scan_kernels (the instruction level chosen when the
    module loaded; README "One binary for every x86-64 CPU with AVX2")."""
    return dict(_core.build_info())


def _setting_text(value, name):
    # The text `--set key=value` takes for a Python value.
    if value is None:
        # str(None) would reach the engine as the text "None" (and "unknown value \"None\"").
        raise _invalid(f"overrides: '{name}' is None; give it a value, or leave it out to keep "
                       f"the config's", name)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        # Lists are of numbers (hidden_dims, k): written as given, so that the engine's own check
        # refuses 32.9 for a list of integers, rather than this wrapper truncating it to 32.
        for v in value:
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
                raise _invalid(f"overrides: a list setting holds numbers, got "
                               f"{type(v).__name__} {v!r}", "overrides")
        return "[" + ", ".join(repr(v.item() if isinstance(v, np.generic) else v)
                               for v in value) + "]"
    return str(value)


class Run:
    """A finished training run: its folder and what it wrote there."""

    def __init__(self, outcome):
        self.dir = outcome["run_dir"]
        self.best_epoch = outcome["best_epoch"]
        self.refit = outcome["refit"]
        self.ranker = outcome["ranker"]
        self.train_seconds = outcome["train_seconds"]
        with open(os.path.join(self.dir, "test_metrics.json"), encoding="utf-8") as f:
            self.test_metrics = json.load(f)
        self._model = None

    @property
    def metrics(self):
        """metrics.csv, one row per epoch: a pandas DataFrame when pandas is installed, else a
        list of dicts of floats."""
        path = os.path.join(self.dir, "metrics.csv")
        try:
            import pandas as pd
        except ImportError:
            with open(path, newline="", encoding="utf-8") as f:
                return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
        return pd.read_csv(path)

    @property
    def model_path(self):
        name = "model_refit.safetensors" if self.refit else "model_best.safetensors"
        return os.path.join(self.dir, name)

    @property
    def model(self):
        """The trained model (the refitted one when training.refit), loaded once."""
        if self.ranker:
            raise ConflictError("a ranker run: load it as the rerank= of a two-tower Model")
        if self._model is None:
            self._model = Model.load(self.model_path)
        return self._model

    def __repr__(self):
        return f"Run({self.dir!r}, best_epoch={self.best_epoch})"


_TABLES = {"users": "users.csv", "items": "items.csv", "train": "train.csv", "val": "val.csv",
           "test": "test.csv"}


def _write_frames(frames, overrides):
    # DataFrames become CSV files in a folder of their own beside the runs (the model file
    # records its data paths: recommend, evaluate and exclude_seen read them later), and the
    # overrides point data.dir / data.<table> at them. Paths given as str / PathLike pass as they
    # are.
    given = {k: v for k, v in frames.items() if v is not None}
    if not any(hasattr(v, "to_csv") for v in given.values()):
        for table, value in given.items():
            overrides[f"data.{table}"] = os.path.abspath(_path(value, table))
        return None
    import tempfile

    out_dir = overrides.get("output.dir", "experiments/runs")
    os.makedirs(out_dir, exist_ok=True)
    folder = tempfile.mkdtemp(prefix="dataframes_", dir=out_dir)
    try:
        for table, value in given.items():
            if hasattr(value, "to_csv"):
                # twotower's own CSV writer: integers stay integers, a float label 1.0 is
                # written "1" (pandas' to_csv writes "1.0", which the label column refuses), no
                # index column.
                path = os.path.join(folder, _TABLES[table])
                write_table(value, path)
            else:
                path = _path(value, table)
            overrides[f"data.{table}"] = os.path.abspath(path)
    except BaseException:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)  # a refused table leaves no folder behind
        raise
    return folder


def set_threads(threads):
    """Threads that index builds, searches, encoding and evaluation called from this Python
    thread share (as faiss.omp_set_num_threads); 0: all cores. Training takes its own from the
    config's ``threads`` and puts this back after. Other Python threads start from
    OMP_NUM_THREADS (all cores when unset). Returns the number in effect."""
    threads = _int(threads, "threads")
    if not 0 <= threads <= 1024:
        raise _invalid(f"threads: expected 0 (all cores) .. 1024, got {threads}", "threads")
    return _core.set_threads(threads)


class _Bars:
    """The engine's progress bars (one per epoch's training and validation, index builds) drawn
    from Python, so that they appear where the user looks: tqdm's bars (``tqdm.auto``: a widget
    in a notebook, a text bar in a terminal) when tqdm is installed (Debian's python3-tqdm),
    else one plain line per finished bar on sys.stderr (which notebooks show, unlike the
    process's own stderr)."""

    def __init__(self, use_tqdm=True):
        self._tqdm = None
        if use_tqdm:
            try:
                from tqdm.auto import tqdm
                self._tqdm = tqdm
            except ImportError:
                pass
        self._open = {}

    def start(self, bar, label, total):
        if self._tqdm is not None:
            self._open[bar] = self._tqdm(total=total, desc=label, unit="batch", leave=True,
                                         dynamic_ncols=True)
        else:
            self._open[bar] = (label, total)

    def update(self, bar, done, seconds, status):
        b = self._open.get(bar)
        if self._tqdm is not None and b is not None:
            b.n = done
            b.set_postfix_str(status, refresh=False)
            b.refresh()

    def finish(self, bar, done, seconds, status):
        b = self._open.pop(bar, None)
        if b is None:
            return
        if self._tqdm is not None:
            b.n = done
            b.set_postfix_str(status, refresh=False)
            b.close()
        else:
            import sys

            label, total = b
            print(f"{label} {done}/{total} in {seconds:.1f}s" + (f"  {status}" if status else ""),
                  file=sys.stderr, flush=True)


def _refuse_json(value):
    raise TypeError(f"Object of type {type(value).__name__} is not a setting value")


def _config_file(config):
    # A dict of settings as a YAML file: JSON, one key per line (YAML 1.2 reads JSON, and the
    # engine's messages then name a line that holds the key). Values must be what YAML holds.
    import tempfile

    try:
        text = json.dumps(config, indent=2, allow_nan=False,
                          default=lambda v: v.item() if isinstance(v, np.generic) else
                          _refuse_json(v))
    except (TypeError, ValueError) as e:
        raise _invalid(f"config: a dict of settings holds strings, numbers, booleans, lists "
                       f"and dicts only ({e})", "config") from None
    fd, path = tempfile.mkstemp(prefix="twotower-config-", suffix=".yaml")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text + "\n")
    return path


def train(config="config/ranking_config.yaml", overrides=None, progress=True, resume=None,
          users=None, items=None, train=None, val=None, test=None):
    """Trains as ``twotower train --config CONFIG --set key=value ...`` does and returns the Run.

    config: a YAML file, or a dict of the same settings ({"data": {"dir": "data/lab"},
    "training": {"epochs": 5}, ...}; sections the dict leaves out take their defaults), which is
    written as YAML to a temporary file for the call (relative paths stay relative to the working
    folder, as the file's are); the run folder's config.yaml holds the resolved settings either
    way. overrides: {"training.epochs": 5, "model.user_hidden_dims": [64], ...}, applied in order
    after the file (each key once). users / items / train / val / test: a path, or a pandas
    DataFrame (written as CSV into a folder under output.dir, Run.data_dir, which the model file
    then names) in place of the file the config names; column names as the config's features
    say. resume: a run folder to continue from its checkpoint (with its own settings: then
    config, overrides and tables are not used). progress: a bar per epoch's training and
    validation, drawn by tqdm when it is installed (in a notebook too), else a plain line per
    finished bar on sys.stderr; False: none. Ctrl-C stops before
    the next batch and raises KeyboardInterrupt; the run folder keeps the last completed epoch
    and train(resume=folder) finishes it."""
    overrides = dict(overrides or {})
    for k, v in overrides.items():
        _setting_text(v, str(k))  # refused here, before any DataFrame is written to disk
    tables = {"users": users, "items": items, "train": train, "val": val, "test": test}
    data_dir = None
    if resume is not None:
        given = [name for name, value in tables.items() if value is not None]
        if given:
            e = InvalidArgumentError(f"resume: the run continues with its own data; "
                                     f"{', '.join(given)} cannot be given with it")
            e.field = "resume"
            raise e
    else:
        data_dir = _write_frames(tables, overrides)
    pairs = [(str(k), _setting_text(v, str(k))) for k, v in overrides.items()]
    config_file = None
    try:
        progress = _bool(progress, "progress")
        if isinstance(config, dict):
            config_file = _config_file(config)
            config = config_file
        outcome = _core.train(_path(config, "config"), pairs,
                              _path(resume, "resume") if resume else "",
                              progress, _Bars(_use_tqdm) if progress else None)
    except KeyboardInterrupt:
        raise  # the run is resumable: its folder of DataFrames stays (its checkpoint names it)
    except BaseException:
        # A refused run leaves no folder of DataFrames behind.
        if data_dir is not None:
            import shutil

            shutil.rmtree(data_dir, ignore_errors=True)
        raise
    finally:
        if config_file is not None:
            os.unlink(config_file)
    run = Run(outcome)
    run.data_dir = data_dir
    return run


def _path(value, what):
    # A file path argument: str or os.PathLike, without NUL (the engine would cut it there).
    try:
        path = os.fspath(value)
    except TypeError:
        raise _invalid(f"{what}: expected a file path (str or os.PathLike), got "
                       f"{type(value).__name__} {value!r}", what) from None
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if "\x00" in path:
        raise _invalid(f"{what}: a path cannot hold a NUL character, got {path!r}", what)
    return path


def _is_frame(value):
    return type(value).__name__ == "DataFrame" and hasattr(value, "columns")


def _id(value, what="id"):
    # An id as the engine takes it: text (bytes as UTF-8; integers in decimal). Anything else
    # (None, 42.0, a list) is refused: str() would turn it into an id that silently matches
    # nothing, or the wrong thing.
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise _invalid(f"{what}: an id given as bytes must be UTF-8, got {value!r}",
                           what) from None
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return str(int(value))
    raise _invalid(f"{what}: an id is a string or an integer, got {type(value).__name__} "
                   f"{value!r}", what)


def _filter_lists(value, what):
    # None; one list of ids for every query ([ids]); or one list per query ([ids, ids, ...]).
    if value is None:
        return None
    if isinstance(value, (str, bytes)):
        raise _invalid(f"{what}: expected a list of ids or one list per query, got one string "
                       f"{value!r}", what)
    try:
        items = list(value)
    except TypeError:
        raise _invalid(f"{what}: expected a list of ids or one list per query, got "
                       f"{type(value).__name__} {value!r}", what) from None
    nested = [isinstance(x, (list, tuple, np.ndarray)) for x in items]
    if items and all(nested):
        return [_as_list(x, what) for x in items]
    if any(nested):
        raise _invalid(f"{what}: expected a list of ids or one list per query, got a mix of ids "
                       "and lists", what)
    return [_as_list(items, what)]


def _as_list(ids, what):
    if ids is None:
        return None
    if isinstance(ids, (str, bytes)):
        e = InvalidArgumentError(f"{what}: expected a list of ids, got one string {ids!r}")
        e.field = what
        raise e
    try:
        items = iter(ids)
    except TypeError:
        raise _invalid(f"{what}: expected a list of ids, got {type(ids).__name__} {ids!r}",
                       what) from None
    return [_id(i, what) for i in items]


class Model:
    """A trained two-tower model with its users and items tables (``Model.load``)."""

    def __init__(self, core):
        self._core = core

    @classmethod
    def load(cls, path, index=None, embeddings=None, users=None, items=None, rerank=None,
             candidates=200, load_seen=True):
        """Opens a model file. index: an index file made for it (default: exact search over its
        items); embeddings: pre-computed item embeddings; users / items: tables replacing those
        the model records; rerank: a ranker re-ordering the top `candidates`; load_seen: read
        the train and val files so that exclude_seen works."""
        core = _core.Model(os.fspath(path), os.fspath(index or ""), os.fspath(embeddings or ""),
                           os.fspath(users or ""), os.fspath(items or ""),
                           os.fspath(rerank or ""), int(candidates), bool(load_seen))
        return cls(core)

    @property
    def sha256(self):
        return self._core.sha256

    @property
    def config(self):
        """The training settings the model file records (a dict)."""
        return json.loads(self._core.config_json)

    @property
    def dim(self):
        return self._core.dim

    @property
    def user_ids(self):
        return list(self._core.user_ids)

    @property
    def item_ids(self):
        return list(self._core.item_ids)

    def recommend(self, user_ids, k=10, exclude_seen=True, exclude=None, allow=None):
        """Top k items for one user id (returns ids, scores: 1-D arrays) or a list of user ids
        (returns ids (n, k) object array padded with None, scores (n, k) float64 padded with
        NaN). exclude: item ids never returned; allow: only these item ids."""
        ex = _as_list(exclude, "exclude") or []
        al = _as_list(allow, "allow")
        if not hasattr(user_ids, "__iter__"):
            _id(user_ids, "user_ids")  # None, 1.5, ...: refused naming the argument
        if isinstance(user_ids, (str, bytes, int, np.integer)):
            r = self._core.recommend(_id(user_ids, "user_ids"), _int(k, "k"),
                                     _bool(exclude_seen, "exclude_seen"), ex, al)
            return np.array(r.ids, dtype=object), np.array(r.scores, dtype=np.float64)
        users = _as_list(user_ids, "user_ids")
        k = _int(k, "k")
        exclude_seen = _bool(exclude_seen, "exclude_seen")
        # No row holds more than the catalogue: the arrays are (n, min(k, items)), whatever k.
        width = max(0, min(k, self._core.num_items))
        return self._core.recommend_batch(users, k, exclude_seen, ex, al, width)

    def recommend_for(self, features, history=None, k=10, exclude=None, allow=None):
        """Top k for a user given by its feature columns ({"age": 31, ...}; a new user), with
        the items it liked (oldest first) for a model whose user tower reads a history."""
        row = [(str(c), str(v)) for c, v in features.items()]
        r = self._core.recommend_features(row, _as_list(history, "history"), _int(k, "k"),
                                          _as_list(exclude, "exclude") or [],
                                          _as_list(allow, "allow"))
        return np.array(r.ids, dtype=object), np.array(r.scores, dtype=np.float64)

    def score(self, user_id, item_ids):
        """The shown score of each item for the user (float64 array)."""
        return np.array(self._core.score(_id(user_id, "user_id"), _as_list(item_ids, "item_ids")),
                        dtype=np.float64)

    def similar(self, item_ids, k=10):
        """The k items nearest to an item by their embeddings' inner product, the item itself
        left out: for one id, (ids, scores) 1-D arrays; for a list of ids, (n, k') arrays,
        k' = min(k, items - 1), padded with None / NaN as recommend's."""
        k = _int(k, "k")
        if not hasattr(item_ids, "__iter__"):
            _id(item_ids, "item_ids")  # None, 1.5, ...: refused naming the argument
        if isinstance(item_ids, (str, bytes, int, np.integer)):
            r = self._core.similar(_id(item_ids, "item_ids"), k)
            return np.array(r.ids, dtype=object), np.array(r.scores, dtype=np.float64)
        items = _as_list(item_ids, "item_ids")
        width = max(0, min(k, self._core.num_items - 1))
        ids = np.full((len(items), width), None, dtype=object)
        scores = np.full((len(items), width), np.nan)
        for row, item in enumerate(items):
            r = self._core.similar(item, k)
            ids[row, :len(r.ids)] = r.ids[:width]
            scores[row, :len(r.scores)] = r.scores[:width]
        return ids, scores

    def _rows(self, all_ids, ids, what):
        if ids is None:
            return None
        where = {v: i for i, v in enumerate(all_ids)}
        rows = []
        for i in _as_list(ids, what):
            if i not in where:
                raise NotFoundError(f"{what}: unknown id {i!r}")
            rows.append(where[i])
        return np.array(rows, dtype=np.int64)

    def encode_users(self, user_ids=None):
        """User embeddings, float32 (n, dim): every user of the users table in its order, the
        given ids' rows, or the rows of a pandas DataFrame of user features (columns as the
        model's users table; new users too: an id the model never trained on contributes
        nothing learned). The bits `recommend` searches with."""
        if _is_frame(user_ids):
            return self._encode_frame(user_ids, True)
        u = self._core.encode_users()
        rows = self._rows(self._core.user_ids, user_ids, "user_ids")
        return u if rows is None else u[rows]

    def encode_items(self, item_ids=None):
        """Item embeddings, float32 (n, dim): every item of the items table in its order (what
        ``twotower embed`` writes), the given ids' rows, or the rows of a pandas DataFrame of
        item features (columns as the model's items table; what ``embed --items`` gives)."""
        if _is_frame(item_ids):
            return self._encode_frame(item_ids, False)
        v = self._core.encode_items()
        rows = self._rows(self._core.item_ids, item_ids, "item_ids")
        return v if rows is None else v[rows]

    def _encode_frame(self, frame, users):
        # Through a CSV file, as the command reads its tables (the same type inference).
        import tempfile

        with tempfile.TemporaryDirectory(prefix="twotower-encode-") as folder:
            path = os.path.join(folder, "users.csv" if users else "items.csv")
            write_table(frame, path)
            return self._core.encode_table(path, users)

    def evaluate(self, interactions, exclude=None):
        """AUC and Recall / NDCG / HitRate / MRR / coverage @K of an interactions file, beside
        MostPop, as ``twotower evaluate`` computes them (exclude: history files; default: the
        model's train and val)."""
        if isinstance(exclude, (str, bytes, os.PathLike)):
            exclude = [exclude]
        return dict(self._core.evaluate(os.fspath(interactions),
                                        [os.fspath(p) for p in (exclude or [])]))

    def __repr__(self):
        return f"Model(sha256={self.sha256[:12]}, dim={self.dim})"


class Index:
    """An exact (flat) or HNSW index over item embeddings, the one the server searches."""

    def __init__(self, core):
        self._core = core

    @classmethod
    def build(cls, embeddings, ids, kind="flat", M=32, ef_construction=200, ef_search=64,
              storage="fp32", model=None):
        """embeddings: (n, d) numbers (read in place when C-contiguous float32); ids: n ids.
        storage: "fp32", or "bf16" / "int8": flat's scan reads 2x / 4x fewer bytes and a
        shortlist is re-scored in fp32, so the results are the same as fp32's; hnsw's graph
        holds the codes (its traversal reads fewer bytes) and re-scores every candidate in fp32.
        model: the twotower.Model whose item tower made the embeddings (``m.encode_items()``):
        the index records its SHA-256, as ``twotower index build`` does from ``embed``'s file,
        so that Model.load(..., index=), Server(index=) and ``recommend --index`` accept it
        (they refuse an index of another or of no recorded model)."""
        if model is not None and not isinstance(model, Model):
            raise InvalidArgumentError(
                f"model: expected the twotower.Model that made the embeddings, got "
                f"{type(model).__name__}")
        if kind in ("flat", "hnsw") and storage not in ("fp32", "bf16", "int8"):
            raise InvalidArgumentError(
                f"storage: expected 'fp32', 'bf16' or 'int8', got {storage!r}")
        if kind == "flat":
            spec = "flat" if storage == "fp32" else f"flat:storage={storage}"
        elif kind == "hnsw":
            spec = (f"hnsw:M={_int(M, 'M')},ef_construction={_int(ef_construction, 'ef_construction')},"
                    f"ef_search={_int(ef_search, 'ef_search')}")
            if storage != "fp32":
                spec += f",storage={storage}"
        else:
            raise InvalidArgumentError(f"kind: expected 'flat' or 'hnsw', got {kind!r}")
        core = _core.Index.build(embeddings, _as_list(ids, "ids"), spec)
        if model is not None:
            if model.dim != core.dim:
                raise _invalid(f"model: its embeddings have {model.dim} dimensions, these "
                               f"{core.dim}", "model")
            core.set_model_fingerprint(model.sha256)
        return cls(core)

    @classmethod
    def load(cls, path):
        return cls(_core.Index.load(os.fspath(path)))

    def save(self, path):
        self._core.save(os.fspath(path))

    def search(self, queries, k=10, ef=None, exclude=None, allow=None):
        """Top k of each query row, in faiss's order: inner products (n, k') float32 and ids
        (n, k') object array of str, k' = min(k, len(index)); "" and -inf pad a row whose filters
        allow fewer than k' items. A 1-d query gives (k',) arrays.
        ef: an HNSW index's candidate list for this call (as hnswlib's set_ef, for this call
        only; at least k is used); None: the index's ef_search. A flat index refuses it.
        exclude: ids never returned; allow: only these ids may be returned (exclude still
        applies). Each is a list of ids for every query, or one list per query (a list of n
        lists); ids the index does not hold are skipped. Safe from many threads at once (the
        GIL is released while the index searches)."""
        q = np.asarray(queries)
        single = q.ndim == 1
        k = _int(k, "k")
        if k >= 1:
            k = min(k, max(len(self), 1))  # no row holds more than the index: (n, min(k, size))
        if ef is None:
            ef = 0  # the index's own ef_search
        else:
            ef = _int(ef, "ef")
            if not 1 <= ef <= 1_000_000:
                raise _invalid(f"ef: expected 1 .. 1000000 candidates, got {ef}", "ef")
            if self._core.spec.split(":")[0] != "hnsw":
                raise _invalid(f"ef: applies to an hnsw index; this one is {self._core.spec!r} "
                               "(an exact scan, no candidate list)", "ef")
        ids, scores = self._core.search(q.reshape(1, -1) if single else q, k, ef,
                                        _filter_lists(exclude, "exclude") or [],
                                        _filter_lists(allow, "allow"))
        if single:
            return scores[0], ids[0]
        return scores, ids

    def add(self, embeddings, ids):
        """Adds (n, d) embeddings with their n ids (read in place when C-contiguous float32); an
        id already in the index has its vector replaced (its label kept). Returns
        {"added": new ids, "updated": replaced ones}. Nothing is added when any row or id is
        refused (a non-finite value, an empty or repeated id). The index's model fingerprint
        stays: add vectors of the model that made it."""
        return self._core.add(embeddings, _as_list(ids, "ids"))

    @property
    def ids(self):
        return list(self._core.ids)

    @property
    def dim(self):
        return self._core.dim

    @property
    def spec(self):
        return self._core.spec

    @property
    def model_sha256(self):
        """The SHA-256 of the model whose embeddings these are, or "" when none is recorded."""
        return self._core.model_fingerprint

    def __len__(self):
        return self._core.size

    def __repr__(self):
        return f"Index({self.spec!r}, size={len(self)}, dim={self.dim})"


class Server:
    """``twotower serve`` inside this process, for notebooks and tests: the same HTTP routes,
    limits and answers as the command (README "Serving"), on threads of its own.

        with twotower.Server(model="runs/x/model_best.safetensors", port=0) as srv:
            requests.post(srv.url + "/v1/recommend", json={"user_id": "42"})

    Give config (a YAML file with a ``serve:`` section naming the variants) or model (with index,
    rerank and candidates: one variant), and any serve setting by name (``twotower serve
    --list-settings``): host, port (the command's default 8080; 0 picks a free port),
    threads, events, live_history, max_k, ... The models load when the Server is made (errors
    then, as the command's); start() binds and serves, stop() finishes the requests in flight
    and stops. Ctrl-C stays with Python."""

    def __init__(self, config=None, model=None, index=None, rerank=None, candidates=None,
                 **settings):
        pairs = [(str(k), _setting_text(v, str(k))) for k, v in settings.items()]
        self._core = _core.Server(_path(config, "config") if config is not None else "",
                                  _path(model, "model") if model is not None else "",
                                  _path(index, "index") if index is not None else "",
                                  _path(rerank, "rerank") if rerank is not None else "",
                                  -1 if candidates is None else _int(candidates, "candidates"),
                                  pairs)

    def start(self):
        """Binds host:port and serves; returns self (port tells the port bound)."""
        self._core.start()
        return self

    def stop(self):
        """Answers the requests in flight, flushes the event log and stops."""
        self._core.stop()

    def reload(self):
        """Rereads every variant's files and swaps them in (as SIGHUP does to the command);
        raises UnavailableError with the reason when that fails (the old ones keep serving)."""
        problem = self._core.reload()
        if problem:
            raise UnavailableError(f"reload failed, still serving the previous models: {problem}")

    @property
    def port(self):
        return self._core.port

    @property
    def url(self):
        host = self._core.host
        return f"http://[{host}]:{self._core.port}" if ":" in host else \
            f"http://{host}:{self._core.port}"

    @property
    def running(self):
        return self._core.running

    @property
    def notes(self):
        """What the start found worth saying (e.g. events of arms the config does not list)."""
        return list(self._core.notes)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def __repr__(self):
        state = f"serving on {self.url}" if self.running else "not serving"
        return f"Server({state})"
