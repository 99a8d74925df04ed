"""The example fleet plans from measured data, and its profile file matches the measurements."""

import subprocess
import sys

import pandas as pd
import pytest
from click.testing import CliRunner

from pdfleet.cli import main

from conftest import CONFIGS, ROOT, SHARED_DATA


def test_example_fleet_plans_every_row_on_owned_a100s_within_inventory(tmp_path):
    out = tmp_path / "ex"
    result = CliRunner().invoke(main, ["optimize", str(CONFIGS / "example-fleet.yaml"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    plan = pd.read_parquet(out / "plan.parquet")
    assert len(plan) == 4 * 6 * 2
    assert set(plan["status"]) == {"ok"}
    llama = plan[plan["model"] == "llama-2-70b"]
    assert llama["gpus_per_instance"].nunique() >= 2  # a real choice of TP
    # the owned A100s (only $0.40/hour to run) serve every workload they can before any H100 is rented
    assert set(plan.loc[plan["model"] != "deepseek-v3.1", "sku"]) == {"A100-SXM-80GB"}
    fleet = pd.read_parquet(out / "fleet.parquet").set_index(["quarter", "sku"])
    assert not fleet["over_inventory"].any()
    assert (fleet["gpus"] <= fleet["inventory_gpus"]).all()
    a100 = fleet.xs("A100-SXM-80GB", level="sku")
    assert (a100["owned"] == 256).all() and (a100["rented"] == 0).all()
    assert a100["cost_usd_per_hour"].tolist() == pytest.approx((a100["gpus"] * 0.40).tolist())


@pytest.mark.skipif(not (SHARED_DATA / "perf" / "splitwise_perf_model.csv").exists(), reason="no ../shared/data")
def test_splitwise_profiles_are_built_from_the_measurements():
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_profiles.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_splitwise_profile_values_by_hand():
    import yaml

    profs = yaml.safe_load((ROOT / "data" / "profiles" / "splitwise.yaml").read_text())
    h100_tp4 = next(p for p in profs if p["model"] == "llama-2-70b" and p["sku"] == "H100-SXM"
                    and p["gpus_per_instance"] == 4)
    pre = dict(zip(h100_tp4["prefill"]["input_tokens"], h100_tp4["prefill"]["max_tokens_per_s"]))
    assert pre[512] == pytest.approx(512 / 0.0610, rel=0.01)  # ~61 ms mean batch-1 prompt time at 512 tokens
    dec = dict(zip(h100_tp4["decode"][0]["batch"], h100_tp4["decode"][0]["tpot_ms"]))
    assert dec[64] == pytest.approx(51.99, abs=0.01)
