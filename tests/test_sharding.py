"""Rows sharded over several JAX devices give the same capacities as one device (jax.sharding on the
row axis; tested on CPU with XLA's forced host device count, as a multi-GPU box would run it)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import sys, numpy as np, jax
from pdfleet import spec as S, arrays, optimize
fleet = S.load(sys.argv[1])
problem, rows = arrays.build(fleet)
cap = optimize.capacities(problem, arrays.CHUNK)
sharded = optimize.shard_rows(problem.workloads, problem.profiles, problem.block_candidates)[2]
spread = len(sharded.sharding.device_set) if hasattr(sharded, "sharding") else 1
np.savez(sys.argv[2], devices=len(jax.local_devices()), spread=spread,
         **{k: np.asarray(v) for k, v in cap._asdict().items()})
"""


def _capacities(fleet: Path, out: Path, devices: int) -> dict:
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}", "JAX_PLATFORMS": "cpu"}
    run = subprocess.run([sys.executable, "-c", SCRIPT, str(fleet), str(out)], env=env, capture_output=True,
                         text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    return dict(np.load(out))


def test_four_devices_equal_one(tmp_path):
    fleet = tmp_path / "fleet.yaml"
    gen = subprocess.run([sys.executable, "scripts/gen_fleet.py", "--rows", "2000", "--seed", "1", "-o", str(fleet)],
                         capture_output=True, text=True, cwd=ROOT)
    assert gen.returncode == 0, gen.stderr
    one = _capacities(fleet, tmp_path / "one.npz", 1)
    four = _capacities(fleet, tmp_path / "four.npz", 4)
    assert (int(one["devices"]), int(four["devices"])) == (1, 4)
    assert (int(one["spread"]), int(four["spread"])) == (1, 4)  # the rows really were spread over 4 devices
    for key in one:
        if key not in ("devices", "spread"):
            np.testing.assert_array_equal(one[key], four[key], err_msg=key)
