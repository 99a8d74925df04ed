"""scripts/gen_fleet.py (synthetic fleets at scale) and scripts/bench_optimize.py (every solver on them)."""

import re
import subprocess
import sys

import pandas as pd
import pytest

from pdfleet import io, optimize, spec
from pdfleet.cli import main as cli_main

from conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import gen_fleet  # noqa: E402

ROWS = 200


@pytest.fixture(scope="module")
def fleet_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("gen") / "fleet.yaml"
    assert gen_fleet.main(["--rows", str(ROWS), "--seed", "3", "-o", str(path)]) == 0
    return path


def test_gen_fleet_validates_and_has_the_asked_shape(fleet_file, capsys):
    from click.testing import CliRunner

    out = CliRunner().invoke(cli_main, ["validate", str(fleet_file)])
    assert out.exit_code == 0, out.output
    fleet = spec.load(fleet_file)
    assert len(fleet.planning.quarters) == 4 and len(fleet.workloads) * 4 == ROWS
    assert fleet.planning.roofline is False
    assert len(fleet.skus) == 12 and len(fleet.models) >= 6
    per_model: dict[str, set] = {}
    for p in fleet.profiles:
        per_model.setdefault(p.model, set()).add((p.sku, p.gpus_per_instance))
        assert p.prefill is not None and p.decode
    assert {w.model for w in fleet.workloads.values()} <= set(per_model)
    for model, deployed in per_model.items():
        assert len(deployed) <= gen_fleet.MAX_PROFILES_PER_MODEL
        assert 3 <= len({s for s, _ in deployed}) <= 6, model
    econ = [s for s in fleet.skus.values()]
    assert sum(s.owned is not None for s in econ) >= 2 and sum(s.inventory is not None for s in econ) >= 3
    assert sum(s.purchase_usd_per_gpu is not None for s in econ) >= 3 and sum(s.rent_max is not None for s in econ) >= 2
    assert any(w.slo.ttft_quantile == 0.9 for w in fleet.workloads.values())


def test_gen_fleet_is_deterministic_for_a_seed(fleet_file, tmp_path, capsys):
    again, other = tmp_path / "again.yaml", tmp_path / "other.yaml"
    gen_fleet.main(["--rows", str(ROWS), "--seed", "3", "-o", str(again)])
    gen_fleet.main(["--rows", str(ROWS), "--seed", "4", "-o", str(other)])
    assert again.read_bytes() == fleet_file.read_bytes()
    assert other.read_bytes() != fleet_file.read_bytes()
    assert f"50 workloads x 4 quarters = {ROWS} rows" in capsys.readouterr().err


def test_gen_fleet_plans_within_inventory(fleet_file, tmp_path):
    fleet = spec.load(fleet_file)
    result = optimize.run(fleet, solver="lagrangian", source=fleet_file)
    io.write_outputs(tmp_path, result.plan, result.fleet, result.manifest)
    frame = pd.read_parquet(tmp_path / "fleet.parquet")
    capped = frame["inventory_gpus"].notna()
    assert capped.any()
    assert (frame.loc[capped, "gpus"] <= frame.loc[capped, "inventory_gpus"] + 1e-9).all()
    assert (frame.loc[capped, "owned"] + frame.loc[capped, "rented"] <= frame.loc[capped, "inventory_gpus"] + 1e-9).all()
    assert (frame["gpus"] <= frame["owned"] + frame["rented"] + 1e-9).all()
    assert not result.manifest["breaks_limits"]
    # every workload has a sku with unlimited rent, so the plan serves every row with demand
    assert result.serves_everything, result.manifest["status_counts"]


def test_bench_optimize_runs_end_to_end():
    cmd = [sys.executable, str(ROOT / "scripts" / "bench_optimize.py"), "--sizes", str(ROWS), "--result-rows",
           str(ROWS), "--solvers", "exact,lagrangian,milp", "--milp-time-limit", "5"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    # gap is nan when HiGHS finds no plan within its 5 s (a loaded machine): the line must still be well formed
    lines = out.stdout.strip().splitlines()
    assert re.fullmatch(rf"RESULT rows={ROWS} lagrangian_s=[0-9.]+ milp_s=[0-9.]+ speedup=[0-9.]+ gap=(-?[0-9.]+|nan)",
                        lines[-1]), lines[-1]
    for solver in ("exact", "lagrangian", "milp"):
        assert re.search(rf"^\s+{ROWS} {solver}\s+[0-9.]+\s+[0-9.]+", out.stdout, re.M), solver
    assert "end-to-end optimize.run(solver=auto)" in out.stdout


def test_bench_scale_prints_stages_and_result():
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_scale.py"), "--rows", "400"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    m = re.fullmatch(r"RESULT rows=400 seconds=([0-9.]+) peak_rss_gib=([0-9.]+)", lines[-1])
    assert m, lines[-1]
    assert 0 < float(m.group(2)) < 24
    for stage in ("generate", "validate", "capacity", "search", "tables"):
        assert re.search(rf"^{stage}\s+[0-9.]+\s+[0-9.]+$", out.stdout, re.M), stage
