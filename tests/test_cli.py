"""The CLI as a user meets it: errors, validate, schema, determinism, warnings."""

import json
import subprocess
import sys

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from pdfleet.cli import main

from conftest import CONFIGS, tiny_fleet


def write(tmp_path, doc, name="fleet.yaml"):
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False))
    return path


BAD = {
    "missing field": (tiny_fleet(**{"workloads.chat.input_tokens": None}), "workloads.chat.input_tokens"),
    "wrong type": (tiny_fleet(**{"workloads.chat.output_tokens": "many"}), "workloads.chat.output_tokens"),
    "negative rate": (tiny_fleet(**{"workloads.chat.rate_rps": -3}), "workloads.chat.rate_rps"),
    "unknown model": (tiny_fleet(**{"workloads.chat.model": "gpt-9"}), "workloads.chat.model"),
    "unknown sku": (tiny_fleet(**{"profiles.1.sku": "tpu"}), "profiles[1].sku"),
    "unknown key": (tiny_fleet(**{"skus.fast.colour": "red"}), "skus.fast.colour"),
    "missing quarter": (tiny_fleet(**{"workloads.chat.rate_rps": {"q1": 3}}), "workloads.chat.rate_rps"),
    "bad quantile": (tiny_fleet(**{"workloads.chat.slo": {"ttft_s": 1, "tpot_ms": 50, "ttft_quantile": 2}}),
                     "workloads.chat.slo.ttft_quantile"),
}


def _drop_nones(doc):
    if isinstance(doc, dict):
        return {k: _drop_nones(v) for k, v in doc.items() if v is not None}
    if isinstance(doc, list):
        return [_drop_nones(v) for v in doc]
    return doc


@pytest.mark.parametrize("verb", ["validate", "optimize"])
@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_exits_2_with_one_line_naming_the_path(tmp_path, verb, case):
    doc, path = BAD[case]
    fleet = write(tmp_path, _drop_nones(doc))
    out = tmp_path / "out"
    args = [verb, str(fleet)] + (["-o", str(out)] if verb == "optimize" else [])
    proc = subprocess.run([sys.executable, "-m", "pdfleet.cli", *args], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}"), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()


def test_yaml_syntax_error_names_line(tmp_path):
    fleet = write(tmp_path, "skus:\n  a: {memory_gib: 80\nmodels: [\n")
    result = CliRunner().invoke(main, ["validate", str(fleet)])
    assert result.exit_code == 2
    assert "fleet.yaml:" in result.output and "YAML syntax error" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_missing_file_is_a_clean_error(tmp_path):
    result = CliRunner().invoke(main, ["validate", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2 and "cannot read" in result.output


def test_validate_does_not_import_jax():
    code = ("import sys; from pdfleet.cli import main; "
            f"sys.argv=['pdfleet','validate',{str(CONFIGS / 'paper.yaml')!r}]\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "assert 'jax' not in sys.modules, 'validate imported jax'\nprint('no-jax')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "ok: 1 workloads" in proc.stdout and "no-jax" in proc.stdout


def test_schema_is_json_schema_with_every_section():
    result = CliRunner().invoke(main, ["schema"])
    schema = json.loads(result.output)
    assert set(schema["properties"]) == {"planning", "skus", "models", "profiles", "profile_files", "workloads",
                                         "workloads_file"}
    assert schema["additionalProperties"] is False


def test_help_on_every_verb():
    for verb in ([], ["optimize"], ["validate"], ["schema"]):
        result = CliRunner().invoke(main, [*verb, "--help"])
        assert result.exit_code == 0 and "Usage" in result.output


def test_same_input_same_bytes(tmp_path):
    fleet = write(tmp_path, tiny_fleet())
    for out in ("a", "b"):  # two processes: nothing shared but the input
        proc = subprocess.run([sys.executable, "-m", "pdfleet.cli", "optimize", str(fleet), "-o", str(tmp_path / out),
                               "-q"], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    for name in ("plan.parquet", "fleet.parquet"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_inventory_is_enforced_and_a_starved_row_exits_3(tmp_path):
    # q2 needs more 'fast' GPUs than its inventory of 8 and 'slow' has none in q2: no pair fits
    doc = tiny_fleet(**{"skus.fast.inventory": {"q1": 1000, "q2": 8}, "skus.slow.inventory": {"q1": 1000, "q2": 0}})
    fleet = write(tmp_path, doc)
    result = CliRunner().invoke(main, ["optimize", str(fleet), "-o", str(tmp_path / "o")])
    assert result.exit_code == 3, result.output
    fl = pd.read_parquet(tmp_path / "o" / "fleet.parquet").set_index(["quarter", "sku"])
    assert not fl["over_inventory"].any()
    assert (fl["gpus"] <= fl["inventory_gpus"].fillna(float("inf"))).all()
    plan = pd.read_parquet(tmp_path / "o" / "plan.parquet").set_index(["quarter", "role"])
    assert set(plan.loc["q2", "status"]) == {"inventory"} and set(plan.loc["q1", "status"]) == {"ok"}
    assert "WARNING chat prefill (q2): inventory" in result.output
    assert "binding in q2: fast inventory 8 GPUs" in result.output
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    (limit,) = [x for x in manifest["binding_limits"] if x["quarter"] == "q2"]
    assert limit["sku"] == "fast" and limit["starves"] == ["chat"]


def test_exact_solver_ignores_limits_and_says_so(tmp_path):
    doc = tiny_fleet(**{"skus.fast.inventory": {"q1": 1000, "q2": 8}, "skus.slow.inventory": {"q1": 1000, "q2": 0}})
    result = CliRunner().invoke(main, ["optimize", str(write(tmp_path, doc)), "-o", str(tmp_path / "o"),
                                       "--solver", "exact"])
    assert result.exit_code == 3, result.output
    fl = pd.read_parquet(tmp_path / "o" / "fleet.parquet")
    over = fl[fl["over_inventory"]]
    assert list(over["quarter"]) == ["q2"]
    assert (over["gpus_short"] == over["gpus"] - over["inventory_gpus"]).all()
    assert "WARNING q2: plan needs" in result.output and "--solver exact ignores shared limits" in result.output
    assert json.loads((tmp_path / "o" / "manifest.json").read_text())["breaks_limits"]


def test_infeasible_workload_gets_a_status_not_a_crash(tmp_path):
    doc = tiny_fleet(**{"workloads.chat.slo": {"ttft_s": 0.05, "tpot_ms": 5}})
    fleet = write(tmp_path, doc)
    result = CliRunner().invoke(main, ["optimize", str(fleet), "-o", str(tmp_path / "o")])
    assert result.exit_code == 3, result.output  # unserved demand: exit 3, the plan still written
    plan = pd.read_parquet(tmp_path / "o" / "plan.parquet").set_index("role")
    assert set(plan.loc["prefill", "status"]) == {"ttft_unreachable"}
    assert set(plan.loc["decode", "status"]) == {"tpot_unreachable"}
    assert (plan["instances"] == 0).all() and plan["sku"].isna().all()
    assert plan["pd_ratio"].isna().all()
    assert "ttft_unreachable" in result.output


def test_plan_has_the_promised_columns(tmp_path):
    fleet = write(tmp_path, tiny_fleet())
    assert CliRunner().invoke(main, ["optimize", str(fleet), "-o", str(tmp_path / "o"), "-q"]).exit_code == 0
    plan = pd.read_parquet(tmp_path / "o" / "plan.parquet")
    promised = ("quarter workload model role sku gpus_per_instance instances instances_fractional gpus "
                "cost_usd_per_hour demand_rps capacity_rps capacity_tokens_per_s utilization decode_batch "
                "predicted_ttft_s predicted_tpot_ms slo_ttft_s slo_tpot_ms status").split()
    assert set(promised) <= set(plan.columns)
    assert len(plan) == 2 * 2  # quarters x workloads x roles
    fl = pd.read_parquet(tmp_path / "o" / "fleet.parquet")
    assert {"quarter", "sku", "gpus", "cost_usd_per_hour", "inventory_gpus"} <= set(fl.columns)
    assert fl["cost_usd_per_hour"].sum() == pytest.approx(plan["cost_usd_per_hour"].sum())


def test_catalog_names_and_overrides(tmp_path):
    doc = tiny_fleet()
    doc["skus"] = {"H100-SXM": {"price_usd_per_gpu_hour": 2.0}, "A100-SXM-80GB": None}
    doc["models"] = {}
    for p, sku in zip(doc["profiles"], ["H100-SXM", "A100-SXM-80GB"]):
        p["model"], p["sku"] = "llama-3.1-70b", sku
    doc["workloads"]["chat"]["model"] = "llama-3.1-70b"  # taken from the catalog without listing it
    from pdfleet import catalog, spec

    f = spec.from_dict(_drop_nones(doc) | {"skus": doc["skus"]})
    assert f.skus["H100-SXM"].price_usd_per_gpu_hour == 2.0  # override wins
    assert f.skus["H100-SXM"].memory_gib == catalog.load_skus()["H100-SXM"]["memory_gib"]
    assert f.models["llama-3.1-70b"].layers == 80
    listed = spec.from_dict(_drop_nones(doc) | {"skus": ["H100-SXM", "A100-SXM-80GB"]})
    assert listed.skus["A100-SXM-80GB"].price_usd_per_gpu_hour == catalog.load_skus()["A100-SXM-80GB"][
        "price_usd_per_gpu_hour"]


def test_profile_file_errors_name_the_file(tmp_path):
    (tmp_path / "profs.yaml").write_text("- model: m\n  sku: nowhere\n  gpus_per_instance: 1\n"
                                         "  prefill: {max_tokens_per_s: 100}\n")
    doc = tiny_fleet()
    doc["profile_files"] = ["profs.yaml", "missing.yaml"]
    fleet = write(tmp_path, doc)
    result = CliRunner().invoke(main, ["validate", str(fleet)])
    assert result.exit_code == 2
    assert result.output.startswith("error: profile_files[1]") and "cannot read" in result.output
    doc["profile_files"] = ["profs.yaml"]
    result = CliRunner().invoke(main, ["validate", str(write(tmp_path, doc))])
    assert result.exit_code == 2 and result.output.startswith("error: profile_files[0]:profs.yaml[0].sku")


MALFORMED = {
    "workloads is a list": "workloads: []\n",
    "workloads is a number": "workloads: 3\n",
    "sku list of mappings": "skus: [{a: 1}]\n",
    "models list of lists": "models: [[1]]\n",
    "top-level list": "- 1\n- 2\n",
    "duplicate key": "planning: {rounding: ceil}\nplanning: {rounding: nearest}\n",
    "deep nesting": "a: " + "[" * 3000 + "]" * 3000 + "\n",
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_files_exit_2_without_traceback(tmp_path, case):
    fleet = write(tmp_path, MALFORMED[case])
    proc = subprocess.run([sys.executable, "-m", "pdfleet.cli", "validate", str(fleet)], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_not_utf8_and_nul_paths_are_clean_errors(tmp_path):
    bad = tmp_path / "fleet.yaml"
    bad.write_bytes(b"skus: \xff\xfe\n")
    result = CliRunner().invoke(main, ["validate", str(bad)])
    assert result.exit_code == 2 and "UTF-8" in result.output
    doc = tiny_fleet()
    doc["profile_files"] = ["a\0b"]
    result = CliRunner().invoke(main, ["validate", str(write(tmp_path, doc))])
    assert result.exit_code == 2 and result.output.startswith("error: profile_files[0]")


@pytest.mark.parametrize("field,value", [("profiles.0.gpus_per_instance", True), ("workloads.chat.rate_rps", "5"),
                                         ("profiles.0.gpus_per_instance", 10**23),
                                         ("skus.fast.price_usd_per_gpu_hour", 1e39)])
def test_no_silent_coercion_or_overflow(tmp_path, field, value):
    result = CliRunner().invoke(main, ["validate", str(write(tmp_path, tiny_fleet(**{field: value})))])
    assert result.exit_code == 2, result.output
    path = field.replace(".0.", "[0].")
    assert result.output.startswith(f"error: {path}")


def test_names_survive_in_error_paths_and_report(tmp_path):
    doc = tiny_fleet()
    doc["workloads"] = {"int": doc["workloads"]["chat"] | {"slo": {"ttft_s": -1, "tpot_ms": 50}}}
    result = CliRunner().invoke(main, ["validate", str(write(tmp_path, doc))])
    assert result.output.startswith("error: workloads.int.slo.ttft_s")
    doc["workloads"] = {"chat[/]": tiny_fleet()["workloads"]["chat"]}
    result = CliRunner().invoke(main, ["optimize", str(write(tmp_path, doc)), "-o", str(tmp_path / "o")])
    assert result.exit_code == 0 and "chat[/]" in result.output


def test_overhead_error_names_the_field(tmp_path):
    result = CliRunner().invoke(main, ["validate", str(write(tmp_path, tiny_fleet(**{"workloads.chat.overhead_s": 2})))])
    assert result.exit_code == 2 and result.output.startswith("error: workloads.chat.overhead_s")


def test_quiet_still_warns_on_stderr(tmp_path):
    fleet = write(tmp_path, tiny_fleet(**{"skus.fast.inventory": {"q1": 1000, "q2": 8},
                                          "skus.slow.inventory": {"q1": 1000, "q2": 0}}))
    proc = subprocess.run([sys.executable, "-m", "pdfleet.cli", "optimize", str(fleet), "-o", str(tmp_path / "o"), "-q"],
                          capture_output=True, text=True)
    assert proc.returncode == 3
    assert "WARNING chat prefill (q2): inventory" in proc.stderr and "WARNING" not in proc.stdout


def test_failure_reason_is_the_specific_one(tmp_path):
    doc = tiny_fleet()
    doc["profiles"][0].pop("decode")  # profile 0 measures prefill only
    doc["profiles"][1].pop("prefill")  # profile 1 decode only, and too slow for the SLO below
    doc["workloads"]["chat"]["slo"]["tpot_ms"] = 10
    result = CliRunner().invoke(main, ["optimize", str(write(tmp_path, doc)), "-o", str(tmp_path / "o"), "-q"])
    assert result.exit_code == 3, result.output
    plan = pd.read_parquet(tmp_path / "o" / "plan.parquet").set_index("role")
    assert set(plan.loc["decode", "status"]) == {"tpot_unreachable"}
    # a workload is served by a (prefill, decode) pair or not at all: prefill alone is not planned
    assert set(plan.loc["prefill", "status"]) == {"no_partner"}
    assert (plan["instances"] == 0).all()


def test_noisy_decode_table_never_breaks_the_slo_under_ceil(tmp_path):
    doc = tiny_fleet()
    doc["profiles"] = [doc["profiles"][0]]
    doc["profiles"][0]["decode"] = [{"input_tokens": 1024, "output_tokens": 100, "batch": [1, 2, 3, 4],
                                     "tpot_ms": [10, 12, 11, 13]}]
    doc["workloads"]["chat"].update(output_tokens=100, rate_rps=1.2 * 272.7 / 100,
                                    slo={"ttft_s": 1.0, "tpot_ms": 11.5})
    result = CliRunner().invoke(main, ["optimize", str(write(tmp_path, doc)), "-o", str(tmp_path / "o"), "-q"])
    assert result.exit_code == 0, result.output
    dec = pd.read_parquet(tmp_path / "o" / "plan.parquet").query("role == 'decode'")
    assert (dec["status"] == "ok").all() and (dec["predicted_tpot_ms"] <= 11.5).all()
    assert (dec["decode_batch_max"] == 1).all()  # the envelope: batch 2 (12 ms) misses, so 3 cannot count


def test_prompt_that_does_not_fit_makes_prefill_kv_memory(tmp_path):
    # 70B bf16 on 4 x 80 GiB at 0.9: 288 GiB - 140 GB leaves ~169 GB; 600k tokens x 327,680 B = 197 GB
    doc = tiny_fleet(**{"workloads.chat.input_tokens": 600_000, "workloads.chat.slo": {"ttft_s": 600, "tpot_ms": 50}})
    result = CliRunner().invoke(main, ["optimize", str(write(tmp_path, doc)), "-o", str(tmp_path / "o"), "-q"])
    assert result.exit_code == 3, result.output
    plan = pd.read_parquet(tmp_path / "o" / "plan.parquet").set_index("role")
    assert set(plan.loc["prefill", "status"]) == {"kv_memory"}


def test_bad_calibration_file_is_one_line(tmp_path):
    doc = tiny_fleet(**{"planning.calibration": "nope.json"})
    result = CliRunner().invoke(main, ["validate", str(write(tmp_path, doc))])
    assert result.exit_code == 2 and result.output.startswith("error: planning.calibration: no file")
    (tmp_path / "cal.json").write_text('{"skus": {}}')
    doc = tiny_fleet(**{"planning.calibration": "cal.json", "skus.fast.hbm_tbps": 3.35, "skus.fast.tflops_bf16": 989})
    doc["models"]["m"].update(hidden_size=8192, heads=64)
    result = CliRunner().invoke(main, ["optimize", str(write(tmp_path, doc)), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2 and result.output.startswith("error: planning.calibration")
    assert not (tmp_path / "o").exists()


def test_unserved_model_says_why_the_roofline_could_not_help(tmp_path):
    doc = tiny_fleet()
    doc["profiles"] = []
    doc["models"]["m"].pop("params_b")
    doc["models"]["m"]["params_b"] = 7
    proc = subprocess.run([sys.executable, "-m", "pdfleet.cli", "optimize", str(write(tmp_path, doc)), "-o",
                           str(tmp_path / "o"), "-q"], capture_output=True, text=True)
    assert proc.returncode == 3, proc.stderr  # nothing can serve the demand: the plan says why, exit 3
    assert "no_profile" in proc.stderr and "roofline could not predict m on fast: model needs hidden_size" in proc.stderr
