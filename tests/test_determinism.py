"""The same input and seed give the same plan: every solver twice, and one XLA CPU thread against the default
thread pool (parquet bytes compared) (issue #10, determinism)."""

import os
import subprocess
import sys

import pandas as pd
import pytest

from pdfleet import optimize
from pdfleet import spec as S

from conftest import CONFIGS, ROOT


@pytest.mark.parametrize("solver", ["exact", "lagrangian", "evolution", "milp"])
def test_every_solver_gives_the_same_plan_twice(solver):
    fleet = S.load(CONFIGS / "procurement.yaml")
    first, second = optimize.run(fleet, solver=solver), optimize.run(fleet, solver=solver)
    assert first.manifest["solver"] == second.manifest["solver"] == solver
    pd.testing.assert_frame_equal(first.plan, second.plan)
    pd.testing.assert_frame_equal(first.fleet, second.fleet)


def _plan_bytes(out, env_extra: dict) -> dict:
    env = {**os.environ, **env_extra}
    run = subprocess.run([sys.executable, "-m", "pdfleet", "optimize", "configs/example-fleet.yaml", "-o", str(out),
                          "-q"], capture_output=True, text=True, cwd=ROOT, env=env)
    assert run.returncode == 0, run.stderr
    return {name: (out / name).read_bytes() for name in ("plan.parquet", "fleet.parquet")}


def test_one_cpu_thread_gives_the_same_bytes_as_many(tmp_path):
    single = {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
              "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    assert _plan_bytes(tmp_path / "one", single) == _plan_bytes(tmp_path / "many", {})
