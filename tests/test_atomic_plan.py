"""A plan folder is written whole or not at all: a writer SIGKILLed at any point leaves the previous plan
intact and readable, with plan.parquet, fleet.parquet and manifest.json all from one run."""

import json
import os
import signal
import subprocess
import sys

import pandas as pd
import pyarrow as pa
import pytest

from pdfleet import io

# The child writes plan set `run` into `out`, stopping (and saying so) at one point of the write: after the
# k-th file is on disk in the temporary folder, just before the swap, or just after it.
CHILD = r"""
import os, sys, time
import pandas as pd
import pyarrow as pa
from pdfleet import io

point, out, run = sys.argv[1], sys.argv[2], int(sys.argv[3])


def stop(tag):
    if tag == point:
        print(tag, flush=True)
        time.sleep(120)


real_fsync, real_exchange, written = os.fsync, io._exchange, [0]


def fsync(fd):
    real_fsync(fd)
    written[0] += 1
    stop(f"file{written[0]}")


def exchange(a, b):
    stop("before-swap")
    real_exchange(a, b)
    stop("after-swap")


os.fsync, io._exchange = fsync, exchange
io._parquet_bytes = lambda frame, name=None: io._table_bytes(pa.Table.from_pandas(frame, preserve_index=False))
frame = pd.DataFrame({"run": [run] * 3})
io.write_outputs(out, frame, frame, {"run": run})
print("done", flush=True)
"""


@pytest.fixture(autouse=True)
def untyped_tables(monkeypatch):
    """These tests write a one-column stand-in for the plan tables: skip the declared schemas."""
    monkeypatch.setattr(io, "_parquet_bytes",
                        lambda frame, name=None: io._table_bytes(pa.Table.from_pandas(frame, preserve_index=False)))


def _write(out, run: int) -> None:
    frame = pd.DataFrame({"run": [run] * 3})
    io.write_outputs(out, frame, frame, {"run": run})


def _run_of(out) -> int:
    """The run every file of the plan set comes from (fails if they disagree or a file is missing)."""
    assert sorted(os.listdir(out)) == sorted(io.PLAN_FILES)
    runs = {int(pd.read_parquet(out / "plan.parquet")["run"].iloc[0]),
            int(pd.read_parquet(out / "fleet.parquet")["run"].iloc[0]),
            json.loads((out / "manifest.json").read_text())["run"]}
    assert len(runs) == 1, runs
    return runs.pop()


@pytest.mark.parametrize("point,survivor", [("file1", 1), ("file2", 1), ("file3", 1), ("before-swap", 1),
                                            ("after-swap", 2)])
def test_sigkill_at_any_point_leaves_one_whole_plan(tmp_path, point, survivor):
    out = tmp_path / "plans"
    _write(out, 1)
    child = subprocess.Popen([sys.executable, "-c", CHILD, point, str(out), "2"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == point, child.stderr.read()
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    assert _run_of(out) == survivor  # the previous plan before the swap, the new one after, never a mix
    _write(out, 3)  # the next run replaces it and removes the killed run's temporary folder
    assert _run_of(out) == 3
    assert sorted(os.listdir(tmp_path)) == ["plans"]


def test_uninterrupted_child_writes_the_new_plan(tmp_path):
    out = tmp_path / "plans"
    _write(out, 1)
    proc = subprocess.run([sys.executable, "-c", CHILD, "never", str(out), "2"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "done", proc.stderr
    assert _run_of(out) == 2 and sorted(os.listdir(tmp_path)) == ["plans"]


def test_stale_simulation_goes_with_the_old_plan(tmp_path):
    out = tmp_path / "plans"
    _write(out, 1)
    (out / "simulate.parquet").write_bytes(b"of plan 1")
    _write(out, 2)
    assert _run_of(out) == 2  # no simulate.parquet of plan 1 beside plan 2


def test_folder_with_other_files_is_never_swapped_away(tmp_path):
    (tmp_path / "notes.txt").write_text("mine\n")
    _write(tmp_path, 1)
    _write(tmp_path, 2)
    assert (tmp_path / "notes.txt").read_text() == "mine\n"
    assert json.loads((tmp_path / "manifest.json").read_text())["run"] == 2
    assert int(pd.read_parquet(tmp_path / "plan.parquet")["run"].iloc[0]) == 2
    assert sorted(os.listdir(tmp_path)) == sorted(io.PLAN_FILES + ("notes.txt",))


def test_exchange_swaps_two_folders(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x").write_text("a")
    (b / "x").write_text("b")
    io._exchange(a, b)
    assert (a / "x").read_text() == "b" and (b / "x").read_text() == "a"


def test_exchange_without_renameat2_falls_back_to_renames(tmp_path, monkeypatch):
    class NoRenameat2:
        def __init__(self, *args, **kwargs):
            pass

    monkeypatch.setattr(io.ctypes, "CDLL", NoRenameat2)
    test_exchange_swaps_two_folders(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["a", "b"]
