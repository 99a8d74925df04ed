"""The example fleet plans from measured data, and its profile file matches the measurements."""

import subprocess
import sys

import pandas as pd
import pytest
from click.testing import CliRunner

from pdfleet.cli import main

from conftest import CONFIGS, ROOT, SHARED_DATA


def test_example_fleet_plans_every_row_and_uses_several_skus_and_tp(tmp_path):
    out = tmp_path / "ex"
    result = CliRunner().invoke(main, ["optimize", str(CONFIGS / "example-fleet.yaml"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    plan = pd.read_parquet(out / "plan.parquet")
    assert len(plan) == 4 * 6 * 2
    assert set(plan["status"]) == {"ok"}
    llama = plan[plan["model"] == "llama-2-70b"]
    assert llama["sku"].nunique() >= 2 and llama["gpus_per_instance"].nunique() >= 2  # a real choice
    fleet = pd.read_parquet(out / "fleet.parquet")
    assert fleet["over_inventory"].any() and "WARNING 2027Q4" in result.output


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
