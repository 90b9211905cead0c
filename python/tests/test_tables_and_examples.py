"""read_table / write_table against independent readings (Python's csv module, hand-written
files and values), and examples/lab.py run end to end as a user runs it."""

import csv
import math
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import twotower

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_read_table_types_a_csv_as_the_cli_does(tmp_path):
    path = tmp_path / "t.csv"
    # Written by hand: an integer column, a number column, ids that look numeric but would not
    # come back as the same text (0042, 1.10), and a column with an empty cell. ("1e-07" would
    # be a string too: the writers print 1e-7.)
    path.write_text("n,x,id,note\n1,0.5,0042,a\n-7,2.25,1.10,\n30,1e-7,x,\"c,d\"\n")
    df = twotower.read_table(path)
    assert list(df.columns) == ["n", "x", "id", "note"]
    assert df["n"].dtype == np.int64 and df["n"].tolist() == [1, -7, 30]
    assert df["x"].dtype == np.float64 and df["x"].tolist() == [0.5, 2.25, 1e-7]
    assert df["id"].tolist() == ["0042", "1.10", "x"]
    assert df["note"].tolist() == ["a", None, "c,d"]


def test_write_table_csv_is_read_back_by_pythons_csv_module(tmp_path):
    df = pd.DataFrame({
        "user_id": ["1", "2", "x,y"],
        "label": [1.0, 0.0, 1.0],  # floats that are whole: written as integers' text
        "weight": [0.1, 2.5, 1e-7],
        "count": pd.array([3, None, 5], dtype="Int64"),
        "flag": [True, False, True],
        "note": ["a", None, "\"q\""],
    }, index=[10, 11, 12])
    path = tmp_path / "out.csv"
    twotower.write_table(df, path)
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["user_id", "label", "weight", "count", "flag", "note"]  # no index column
    assert rows[1:] == [["1", "1", "0.1", "3", "true", "a"],
                        ["2", "0", "2.5", "", "false", ""],
                        ["x,y", "1", "1e-7", "5", "true", "\"q\""]]


def test_parquet_round_trip_keeps_types_nulls_and_bytes(tmp_path):
    df = pd.DataFrame({
        "i64": np.array([1, -(2**62), 7], dtype=np.int64),
        "i32": np.array([1, 2, -3], dtype=np.int32),
        "f32": np.array([0.5, 1.25, -2.0], dtype=np.float32),
        "f64": [0.1, math.inf, -0.0],
        "nullable": pd.array([None, 2, 3], dtype="Int64"),
        "fnull": pd.array([1.5, None, 3.0], dtype="Float64"),
        "s": ["a", None, "caf\u00e9"],
        "b": [True, True, False],
    })
    path = tmp_path / "t.parquet"
    twotower.write_table(df, path)
    back = twotower.read_table(path)
    assert back["i64"].tolist() == df["i64"].tolist()
    assert back["i32"].tolist() == [1, 2, -3]
    assert back["f32"].tolist() == [0.5, 1.25, -2.0]
    assert back["f64"].tolist() == [0.1, math.inf, 0.0] and math.copysign(1, back["f64"][2]) < 0
    assert back["nullable"].isna().tolist() == [True, False, False]
    assert back["nullable"][1:].tolist() == [2, 3]
    assert back["fnull"].isna().tolist() == [False, True, False]
    assert back["s"].tolist() == ["a", None, "caf\u00e9"]
    assert back["b"].tolist() == [True, True, False]


def test_bytes_that_are_not_utf8_round_trip_through_csv_and_are_refused_by_parquet(tmp_path):
    # PEP 383: a byte that is not UTF-8 is kept as a lone surrogate, and written back as the byte.
    (tmp_path / "in.csv").write_bytes(b"id\nab\xffc\n")
    df = twotower.read_table(tmp_path / "in.csv")
    assert df["id"].tolist() == ["ab\udcffc"]
    twotower.write_table(df, tmp_path / "out.csv")
    assert (tmp_path / "out.csv").read_bytes() == b"id\nab\xffc\n"
    # Parquet's STRING is UTF-8 (its logical type): refused, the byte shown escaped.
    with pytest.raises(ValueError, match=r"\\xff"):
        twotower.write_table(df, tmp_path / "out.parquet")


def test_write_table_refuses_what_it_cannot_keep(tmp_path):
    with pytest.raises(ValueError, match="column 'when'.*datetime"):
        twotower.write_table(pd.DataFrame({"when": pd.to_datetime(["2024-01-01"])}),
                             tmp_path / "a.csv")
    with pytest.raises(ValueError, match="column 'mixed', row 1: int"):
        twotower.write_table(pd.DataFrame({"mixed": ["a", 5]}), tmp_path / "b.csv")
    with pytest.raises(ValueError, match="uint64"):
        twotower.write_table(pd.DataFrame({"u": np.array([1], dtype=np.uint64)}),
                             tmp_path / "c.csv")
    assert not os.listdir(tmp_path)  # nothing half-written


def test_the_lab_example_runs_end_to_end(tmp_path):
    env = dict(os.environ)
    out = subprocess.run(
        [sys.executable, os.path.join(REPO, "examples", "lab.py"), "--out", str(tmp_path),
         "--epochs", "3"], capture_output=True, text=True, env=env, cwd=REPO, check=False)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("generated ") and "test AUC" in out.stdout
    auc = float(out.stdout.split("test AUC ")[1].split()[0])
    assert 0.5 < auc <= 1.0  # better than chance after 3 epochs on the lab's data
    recs = twotower.read_table(tmp_path / "recommendations.parquet")
    assert list(recs.columns) == ["user_id", "rank", "item_id", "score"]
    assert len(recs) == 1000 * 10
