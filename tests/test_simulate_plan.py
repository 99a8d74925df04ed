"""`pdfleet simulate` and `optimize --simulate`: plans checked by the discrete-event engine.

References: the paper's measurements (3P4D holds at 4.8 M tokens per minute and not at 5.5 M), and the
Azure conversation trace replayed through the plan made from it, for each queue model."""

import copy
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pdfleet import optimize
from pdfleet import spec as S
from pdfleet.simulate import from_plan

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "pdfleet", *args], capture_output=True, text=True, cwd=cwd)


@pytest.fixture(scope="module")
def paper_plan(tmp_path_factory):
    out = tmp_path_factory.mktemp("paper")
    run = _cli("optimize", "configs/paper.yaml", "--rounding", "nearest", "-o", str(out), "--simulate")
    assert run.returncode == 0, run.stderr
    return out


def test_optimize_simulate_writes_the_table(paper_plan):
    sim = pd.read_parquet(paper_plan / "simulate.parquet")
    assert list(sim.columns[:11]) == list(from_plan.COLUMNS)
    row = sim.iloc[0]
    assert (row["prefill_instances"], row["decode_instances"]) == (3, 4)
    assert row["slo_met"] and row["requests"] > 15_000
    assert row["ttft_p50_s"] <= row["ttft_p90_s"] <= row["ttft_p99_s"]


def test_simulate_demand_scale_finds_the_papers_limit(paper_plan, tmp_path):
    """The plan is for 5 M TPM; the paper measured 3P4D to hold up to about 4.8 M. At 0.96 x (4.8 M) it
    meets both SLOs; at 1.1 x (5.5 M) it misses, and the command exits 3."""
    ok = _cli("simulate", str(paper_plan), "--demand-scale", "0.96", "--duration-s", "1200", "-q",
              "-o", str(tmp_path / "ok.parquet"))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    miss = _cli("simulate", str(paper_plan), "--demand-scale", "1.1", "--duration-s", "1200",
                "-o", str(tmp_path / "miss.parquet"))
    assert miss.returncode == 3
    assert not pd.read_parquet(tmp_path / "miss.parquet")["slo_met"].any()
    assert "missed" in miss.stdout


def test_simulate_is_deterministic(paper_plan, tmp_path):
    for name in ("a", "b"):
        assert _cli("simulate", str(paper_plan), "--duration-s", "300", "--seed", "7", "-q",
                    "-o", str(tmp_path / f"{name}.parquet")).returncode == 0
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "a.parquet"), pd.read_parquet(tmp_path / "b.parquet"))


@pytest.mark.parametrize("args,needle", [
    (["simulate", "configs"], "manifest.json"),
    (["simulate", "{plan}", "--demand-scale", "0"], "--demand-scale"),
    (["simulate", "{plan}", "--trace", "README.md"], "cannot simulate"),
    (["simulate", "{plan}", "--fleet", "missing.yaml"], "missing.yaml"),
])
def test_bad_simulate_input_exits_2_with_one_line(paper_plan, args, needle):
    run = _cli(*[a.format(plan=paper_plan) for a in args])
    assert run.returncode == 2 and needle in run.stderr
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) <= 4


AZURE = yaml.safe_load((ROOT / "configs" / "azure-conv.yaml").read_text())


@pytest.mark.parametrize("queue", ["mm1", "mg1", "mmc"])
def test_a_plan_for_the_azure_trace_meets_its_slos_when_the_trace_is_replayed(queue):
    d = copy.deepcopy(AZURE)
    d["planning"]["queue"] = queue
    fleet = S.from_dict(d, ROOT / "configs")
    result = optimize.run(fleet)
    plan = result.plan
    sim = from_plan.simulate_plan(fleet, plan)
    assert sim["arrivals"].str.startswith("trace AzureLLMInferenceTrace_conv.csv x1 ").all()
    assert sim["slo_met"].all(), sim.T
    gpus = int(plan.loc[plan["role"] == "prefill", "gpus"].sum())
    expected = {"mm1": 6, "mg1": 6, "mmc": 4}  # prefill GPUs: the pooled queue needs one 2-GPU instance less
    assert gpus == expected[queue]
    pooled = result.manifest["pooled_prefill"]
    assert (pooled is None) == (queue != "mmc")
    if pooled:
        assert (pooled["split_instances"], pooled["prefill_instances"], pooled["gpus_saved"]) == (3, 2, 2)


def _deployed(tpm: float, prefill: int, decode: int):
    d = yaml.safe_load((ROOT / "configs" / "paper.yaml").read_text())
    w = d["workloads"]["paper-case"]
    w["tokens_per_minute"] = tpm
    w["deploy"] = {"prefill": {"sku": "H200-SXM", "gpus_per_instance": 8, "instances": prefill},
                   "decode": {"sku": "H200-SXM", "gpus_per_instance": 8, "instances": decode}}
    return d


@pytest.mark.parametrize("tpm,prefill,decode,meets", [(4.8e6, 3, 4, True), (4.4e6, 3, 3, False)])
def test_deploy_what_if_reports_the_running_deployment(tmp_path, tpm, prefill, decode, meets):
    """The paper's deployments, pinned: 3P4D at 4.8 M TPM is enough (headroom >= 0, simulation meets);
    3P3D at 4.4 M is not (decode headroom < 0 predicted, TPOT missed in simulation): optimize and simulate
    both exit 3."""
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(_deployed(tpm, prefill, decode)))
    out = tmp_path / "plan"
    run = _cli("optimize", str(path), "-o", str(out), "-q")
    assert run.returncode == (0 if meets else 3), run.stderr
    plan = pd.read_parquet(out / "plan.parquet").set_index("role")
    assert plan["deployed"].all()
    assert (plan.loc["prefill", "instances"], plan.loc["decode", "instances"]) == (prefill, decode)
    assert (plan["headroom"] >= 0).all() == meets
    sim = _cli("simulate", str(out), "-q")
    assert sim.returncode == (0 if meets else 3)
    row = pd.read_parquet(out / "simulate.parquet").iloc[0]
    assert row["slo_met"] == meets and row["ttft_met"]


def test_deploy_naming_an_unknown_shape_is_one_line(tmp_path):
    d = _deployed(4.8e6, 3, 4)
    d["workloads"]["paper-case"]["deploy"]["decode"]["gpus_per_instance"] = 4
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(d))
    run = _cli("optimize", str(path), "-o", str(tmp_path / "plan"))
    assert run.returncode == 2 and "workloads.paper-case.deploy.decode" in run.stderr
    assert "Traceback" not in run.stderr and not (tmp_path / "plan").exists()
