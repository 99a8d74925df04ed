"""`pdfleet calibrate` and `pdfleet profile import` through the CLI."""

import itertools
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from pdfleet import calibrate, spec
from pdfleet.cli import main
from pdfleet.measured import TIDY_COLUMNS
from pdfleet.perf import roofline
from pdfleet.perf.roofline import Efficiency

DATA = Path(__file__).parent / "data"
TRUE = Efficiency(eta_compute=0.45, eta_memory=0.8, eta_link=0.6, c_prefill_s=0.02, c_decode_s=0.008,
                  alpha_link_s=8e-6, c_decode_seq_s=1.5e-4, c_layer_s=2e-5, eta_attn=0.6)
STEPS = "6000"  # recovers TRUE (9 parameters since issue #8) from noise-free rows; 3000 left c_layer_s 5.6% off
# once the all-reduce latency became 2 log2(tp) alpha (it shares the per-layer term with c_layer_s)


def one_line_error(result, *needles):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for n in needles:
        assert n in lines[0], lines[0]


# ---------------------------------------------------------------- calibrate


def synthetic_csv(path):
    """Rows predicted by the roofline itself at TRUE, for catalog models on H100-SXM."""
    rows = []
    for model, tp in itertools.product(("llama-3.1-70b", "llama-3.1-8b"), (1, 2, 4, 8)):
        base = dict(model=model, sku="H100-SXM", tp=tp, engine="synthetic", source="synthetic")
        for L, b in itertools.product((128, 512, 2048, 8192), (1, 4)):
            rows.append(dict(base, kind="prefill", batch=b, input_tokens=L, output_tokens=0, context_tokens=L))
        for B, ctx in itertools.product((1, 8, 64, 256, 1024), (512, 4096)):
            rows.append(dict(base, kind="decode", batch=B, input_tokens=ctx, output_tokens=0, context_tokens=ctx))
    df = pd.DataFrame(rows)
    df["time_s"] = 1.0
    df["time_s"] = calibrate.predict(df, TRUE)
    df[TIDY_COLUMNS].to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    d = tmp_path_factory.mktemp("calib")
    csv = synthetic_csv(d / "synthetic.csv")
    out = d / "out.json"
    result = CliRunner().invoke(main, ["calibrate", "--data", str(csv), "-o", str(out), "--steps", STEPS])
    assert result.exit_code == 0, result.output
    return csv, out, result.stdout


def test_calibrate_recovers_known_efficiencies(fitted):
    _, out, stdout = fitted
    data = json.loads(out.read_text())
    assert data["format"] == calibrate.FORMAT
    entry = data["skus"]["H100-SXM"]["*"]
    assert entry["rows"] == 144
    # bf16 rows only: no fp8/fp4 GEMM measured; dense models only: no routed expert read
    assert entry["not_identified"] == ["eta_compute_lowp", "eta_expert", "c_moe_layer_s"]
    for name in Efficiency._fields:
        if name not in entry["not_identified"]:
            assert entry["params"][name] == pytest.approx(getattr(TRUE, name), rel=0.05), name
    # what no row measured is unset where it is used: eta_compute serves fp8/fp4 (TRUE has it unset too)
    served = calibrate.lookup("H100-SXM", path=out)
    assert served.efficiency.eta_compute_lowp == 0.0 == TRUE.eta_compute_lowp
    assert served.efficiency.eta_expert == 0.0 == TRUE.eta_expert and served.efficiency.c_moe_layer_s == 0.0
    assert "H100-SXM" in stdout and "rows=  144" in stdout and "fit MAPE=" in stdout and "wrote" in stdout


def test_estimate_uses_the_calibration_file(fitted):
    _, out, _ = fitted
    args = ["estimate", "--model", "llama-3.1-70b", "--sku", "H100-SXM", "--tp", "4", "--input-tokens", "2048",
            "--output-tokens", "256", "--batch", "32", "--json"]
    (default,) = json.loads(CliRunner().invoke(main, args).stdout)
    (mine,) = json.loads(CliRunner().invoke(main, [*args, "--calibration", str(out)]).stdout)
    assert mine["tpot_ms"] != pytest.approx(default["tpot_ms"], rel=1e-3)
    assert mine["prefill_s"] != pytest.approx(default["prefill_s"], rel=1e-3)
    # ... and its numbers are the roofline at the recovered (= TRUE) efficiencies
    from pdfleet import catalog

    model = roofline.model_shape_from_catalog(catalog.load_models()["llama-3.1-70b"])
    hw = roofline.hardware_from_sku(catalog.load_skus()["H100-SXM"], 4)
    assert mine["tpot_ms"] == pytest.approx(float(roofline.decode_step_s(32, 2176, model, hw, TRUE)) * 1e3, rel=0.01)
    assert mine["prefill_s"] == pytest.approx(float(roofline.prefill_time_s(2048, model, hw, TRUE)), rel=0.01)


def test_calibrate_by_sku_and_engine(tmp_path, fitted):
    csv, _, _ = fitted
    out = tmp_path / "by_engine.json"
    result = CliRunner().invoke(main, ["calibrate", "--data", str(csv), "--by", "sku,engine", "-o", str(out),
                                       "--steps", "50"])
    assert result.exit_code == 0, result.output
    assert set(json.loads(out.read_text())["skus"]["H100-SXM"]) == {"synthetic"}
    assert "H100-SXM / synthetic" in result.stdout
    est = ["estimate", "--model", "llama-3.1-8b", "--sku", "H100-SXM", "--tp", "1", "--input-tokens", "512",
           "--output-tokens", "128", "--batch", "8", "--calibration", str(out), "--json"]
    one_line_error(CliRunner().invoke(main, est), "only by engine (synthetic)", "--engine")
    result = CliRunner().invoke(main, [*est, "--engine", "synthetic"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["tpot_source"] == "roofline"


def test_calibrate_errors(tmp_path):
    runner = CliRunner()
    one_line_error(runner.invoke(main, ["calibrate", "--data", str(tmp_path / "nope.csv")]), "--data")
    one_line_error(runner.invoke(main, ["calibrate", "--data", "splitwise", "--by", "engine"]), "--by")
    one_line_error(runner.invoke(main, ["calibrate", "--data", "splitwise", "--steps", "0"]), "--steps")
    bad = tmp_path / "bad.csv"
    bad.write_text("model,sku,time_s\nllama-3.1-8b,H100-SXM,1.0\n")
    one_line_error(runner.invoke(main, ["calibrate", "--data", str(bad), "-o", str(tmp_path / "o.json")]),
                   "missing columns")
    one_line_error(runner.invoke(main, ["calibrate", "--data", "splitwise", "--perf-dir", str(tmp_path)]),
                   "--data splitwise")
    assert not (tmp_path / "o.json").exists()


# ---------------------------------------------------------------- profile import


def fleet_with(profiles, model, sku):
    return {
        "skus": [sku],
        "models": [model],
        "profiles": profiles,
        "workloads": {"w": {"model": model, "rate_rps": 1, "input_tokens": 1000, "output_tokens": 200,
                            "slo": {"ttft_s": 2, "tpot_ms": 50}}},
    }


def test_profile_import_vllm_dir_is_a_valid_profiles_entry():
    args = ["profile", "import", "--vllm", str(DATA / "vllm_bench"), "--model", "llama-3.1-8b", "--sku",
            "H100-SXM", "--gpus-per-instance", "1"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    entries = yaml.safe_load(result.stdout)
    assert isinstance(entries, list) and len(entries) == 1
    fleet = spec.from_dict(fleet_with(entries, "llama-3.1-8b", "H100-SXM"))
    (p,) = fleet.profiles
    assert (p.model, p.sku, p.gpus_per_instance) == ("llama-3.1-8b", "H100-SXM", 1)
    assert p.prefill is not None and list(p.decode[0].batch) == [1, 8, 16, 32]


def test_profile_import_repeated_vllm_files(tmp_path):
    files = sorted((DATA / "vllm_bench").glob("*.json"))[:2]
    out = tmp_path / "p.yaml"
    args = ["profile", "import", "--model", "llama-3.1-8b", "--sku", "H100-SXM", "--gpus-per-instance", "1",
            "-o", str(out)] + [a for f in files for a in ("--vllm", str(f))]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    (p,) = spec.from_dict(fleet_with(yaml.safe_load(out.read_text()), "llama-3.1-8b", "H100-SXM")).profiles
    assert len(p.decode[0].batch) == 2


def test_profile_import_csv_to_file_with_warnings(tmp_path):
    out = tmp_path / "paper_profile.yaml"
    args = ["profile", "import", "--csv", str(DATA / "profile_bench.csv"), "--model", "deepseek-v3.1", "--sku",
            "H200-SXM", "--gpus-per-instance", "8", "-o", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "wrote" in result.stdout
    assert any(line.startswith("warning: ") and "prefill omitted" in line for line in result.stderr.splitlines())
    (p,) = spec.from_dict(fleet_with(yaml.safe_load(out.read_text()), "deepseek-v3.1", "H200-SXM")).profiles
    assert p.prefill is None
    assert list(p.decode[0].batch) == [10, 20, 30, 40, 50, 60]
    assert list(p.decode[0].tpot_ms) == [12.8, 16.4, 18.8, 21.6, 23.9, 26.2]


def test_profile_import_errors(tmp_path):
    runner = CliRunner()
    base = ["profile", "import", "--model", "m", "--sku", "s", "--gpus-per-instance", "1"]
    one_line_error(runner.invoke(main, [*base, "--csv", str(tmp_path / "nope.csv")]), "not found")
    one_line_error(runner.invoke(main, base), "--vllm", "--csv")
    one_line_error(runner.invoke(main, [*base, "--csv", str(DATA / "profile_bench.csv"),
                                        "--vllm", str(DATA / "vllm_bench")]), "one of the two")
    one_line_error(runner.invoke(main, ["profile", "import", "--csv", str(DATA / "profile_bench.csv")]),
                   "missing --model")
    one_line_error(runner.invoke(main, [*base[:-1], "0", "--csv", str(DATA / "profile_bench.csv")]),
                   "--gpus-per-instance")
    bad = tmp_path / "bad.csv"
    bad.write_text("concurrency,mean_tpot_ms\n1,10\n")
    one_line_error(runner.invoke(main, [*base, "--csv", str(bad)]), "missing column")
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line_error(runner.invoke(main, [*base, "--vllm", str(empty)]))


def test_an_unnamed_engine_is_not_offered_to_pick(tmp_path, fitted):
    """A file fitted by engine whose only engine is Splitwise's 'unspecified' cannot be asked for with --engine, so
    the error says to refit by sku instead of listing it as a choice."""
    csv, _, _ = fitted
    rows = pd.read_csv(csv).assign(engine="unspecified")
    rows.to_csv(tmp_path / "unnamed.csv", index=False)
    out = tmp_path / "unnamed.json"
    result = CliRunner().invoke(main, ["calibrate", "--data", str(tmp_path / "unnamed.csv"), "--by", "sku,engine",
                                       "-o", str(out), "--steps", "20"])
    assert result.exit_code == 0, result.output
    est = ["estimate", "--model", "llama-3.1-8b", "--sku", "H100-SXM", "--tp", "1", "--input-tokens", "512",
           "--output-tokens", "128", "--batch", "8", "--calibration", str(out)]
    one_line_error(CliRunner().invoke(main, est), "unnamed engine", "--by sku")
