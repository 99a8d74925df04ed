"""`pdfleet estimate`: roofline numbers against a hand formula, profile lookups, CSV/JSON I/O, errors."""

import json
import math

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from pdfleet import calibrate
from pdfleet.cli import main
from pdfleet.perf import roofline

from conftest import CONFIGS

GIB = 1024.0**3
PAPER = str(CONFIGS / "paper.yaml")
LLAMA = ["--model", "llama-3.1-70b", "--sku", "H100-SXM", "--tp", "4"]
LLAMA_Q = LLAMA + ["--input-tokens", "2048", "--output-tokens", "256", "--batch", "32"]

# Shipped calibration of H100-SXM (data/calibration/default.json, skus.H100-SXM."*".params), written out.
H100_EFF = dict(
    eta_compute=0.609214,
    eta_memory=0.833555,
    eta_link=0.545039,
    c_prefill_s=0.00793725,
    c_decode_s=0.00181425,
    alpha_link_s=1.20219e-05,
    c_decode_seq_s=1.30957e-05,
    c_layer_s=3.68592e-07,
    eta_attn=0.714891,
    eta_compute_lowp=0.602015,
)


def run(args, ok=True):
    result = CliRunner().invoke(main, ["estimate", *args])
    if ok:
        assert result.exit_code == 0, result.output
    return result


def records(args):
    return json.loads(run([*args, "--json"]).stdout)


def one_line_error(result, *needles):
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def test_written_out_efficiencies_are_the_shipped_ones():
    eff = calibrate.load_calibration("H100-SXM")
    for k, v in H100_EFF.items():
        assert getattr(eff, k) == pytest.approx(v, rel=1e-9), f"{k}: default.json was refit; update H100_EFF"


def test_roofline_numbers_match_the_hand_formula():
    (r,) = records(LLAMA_Q)
    # catalog: llama-3.1-70b (70.6 B, 80 layers, hidden 8192, 64 heads x 128, 8 KV heads, bf16);
    # H100-SXM: 989.4 TFLOP/s bf16, 3.35 TB/s HBM, 450 GB/s link, 80 GiB.
    N, W, KV = 70.6e9, 70.6e9 * 2.0, 2.0 * 80 * 8 * 128 * 2.0
    layers, hidden, d_attn = 80, 8192, 64 * 128
    tp, peak, bw, link = 4, 989.4e12, 3.35e12, 450e9
    e = H100_EFF

    def comm(tokens):  # 2 all-reduces per layer of tokens x hidden x 2 bytes: 2·log2(tp) latency steps, ring bandwidth
        return 2 * layers * (2 * math.log2(tp) * e["alpha_link_s"] + 2 * (tp - 1) * tokens * hidden * 2 / (tp * link * e["eta_link"]))

    L, out, B = 2048, 256, 32
    overhead = e["c_layer_s"] * layers  # per-layer cost of every forward pass
    t_c = (2 * N * L + 2 * layers * L * L * d_attn) / (tp * peak * e["eta_compute"])
    t_m = (W + L * KV) / (tp * bw * e["eta_memory"])
    # compute and memory combined by the 1.5-norm (roofline.prefill_roofline_s)
    prefill = (t_c**1.5 + t_m**1.5) ** (1 / 1.5) + comm(L) + e["c_prefill_s"] + overhead
    ctx = L + out / 2
    attn_flops = B * ctx * 4 * layers * d_attn  # QK^T and AV over the KV cache
    linear = max(2 * N * B / (tp * peak * e["eta_compute"]), W / (tp * bw * e["eta_memory"]))
    attention = max(attn_flops / (tp * peak * e["eta_compute"]), B * ctx * KV / (tp * bw * e["eta_attn"]))
    step = linear + attention + comm(B) + e["c_decode_s"] + e["c_decode_seq_s"] * B + overhead
    b_mem = math.floor((0.9 * tp * 80 * GIB - W) / (KV * (L + out)))

    assert r["prefill_source"] == r["tpot_source"] == "roofline"
    assert r["precision"] == "bf16" and r["note"] == ""
    assert r["prefill_s"] == pytest.approx(prefill, rel=1e-4)
    assert r["tpot_ms"] == pytest.approx(step * 1e3, rel=1e-4)
    assert r["decode_tokens_per_s"] == pytest.approx(B / step, rel=1e-4)
    assert r["max_batch_memory"] == b_mem
    assert r["weights_gib"] == pytest.approx(70.6e9 * 2 / GIB, rel=0.01)
    assert r["kv_gib_per_request"] == 327_680 * 2304 / GIB


def test_precision_changes_weights_and_compute():
    (bf16,) = records(LLAMA_Q)
    (fp8,) = records(LLAMA_Q + ["--precision", "fp8"])
    assert fp8["precision"] == "fp8"
    assert fp8["weights_gib"] == pytest.approx(bf16["weights_gib"] / 2)
    assert fp8["tpot_ms"] < bf16["tpot_ms"] and fp8["prefill_s"] < bf16["prefill_s"]
    assert fp8["max_batch_memory"] > bf16["max_batch_memory"]
    assert fp8["kv_gib_per_request"] == bf16["kv_gib_per_request"]  # KV dtype stays the model's


QUERIES = [
    ("llama-3.1-70b", "H100-SXM", 4, "", 2048, 256, 32),
    ("llama-3.1-8b", "A100-SXM-80GB", 1, "fp8", 512, 128, 8),
    ("deepseek-v3.1", "H200-SXM", 8, "", 6144, 512, 30),
]


def _flags(q):
    model, sku, tp, prec, i, o, b = q
    args = ["--model", model, "--sku", sku, "--tp", str(tp), "--input-tokens", str(i),
            "--output-tokens", str(o), "--batch", str(b)]
    return args + (["--precision", prec] if prec else [])


def _queries_csv(tmp_path, rows=QUERIES, columns=("model", "sku", "tp", "precision", "input_tokens",
                                                  "output_tokens", "batch")):
    path = tmp_path / "queries.csv"
    pd.DataFrame([dict(zip(("model", "sku", "tp", "precision", "input_tokens", "output_tokens", "batch"), q))
                  for q in rows])[list(columns)].to_csv(path, index=False)
    return path


@pytest.mark.parametrize("fleet", [[], ["--fleet", PAPER]], ids=["catalog", "paper-fleet"])
def test_csv_of_queries_equals_single_runs(tmp_path, fleet):
    path = _queries_csv(tmp_path)
    many = records(["--queries", str(path), *fleet])
    single = [records([*_flags(q), *fleet])[0] for q in QUERIES]
    assert len(many) == 3
    for m, s in zip(many, single):
        assert m.keys() == s.keys()
        for k in m:
            if isinstance(m[k], float):
                assert m[k] == pytest.approx(s[k], rel=1e-6), k
            else:
                assert m[k] == s[k], k
    assert many[1]["precision"] == "fp8" and many[1]["note"].startswith("sku A100-SXM-80GB lists no fp8 tflops")
    assert many[2]["tpot_source"] == ("profile" if fleet else "roofline")


def test_csv_output_file_and_table(tmp_path):
    path = _queries_csv(tmp_path)
    out = tmp_path / "sub" / "est.csv"
    result = run(["--queries", str(path), "-o", str(out)])
    assert "wrote" in result.stdout
    df = pd.read_csv(out, keep_default_na=False)
    assert len(df) == 3 and list(df.columns[:7]) == ["model", "sku", "tp", "precision", "input_tokens",
                                                     "output_tokens", "batch"]
    assert {"prefill_s", "prefill_source", "tpot_ms", "tpot_source", "max_batch_memory", "weights_gib",
            "kv_gib_per_request", "note"} <= set(df.columns)
    table = run(LLAMA_Q).stdout
    assert "tpot_ms" in table and "roofline" in table and "llama-3.1-70b" in table


def test_paper_profile_is_used():
    (r,) = records(["--fleet", PAPER, "--model", "deepseek-v3.1", "--sku", "H200-SXM", "--tp", "8",
                    "--input-tokens", "6144", "--output-tokens", "512", "--batch", "30"])
    assert r["prefill_source"] == r["tpot_source"] == "profile"
    assert r["tpot_ms"] == pytest.approx(18.8, rel=1e-6)
    assert r["prefill_s"] == pytest.approx(6144 / 28309, rel=1e-6)
    assert r["precision"] == "fp8" and r["note"] == ""
    # MLA keeps the whole latent on each of the 8 GPUs (memory.kv_replication): 8 copies per token
    assert r["kv_gib_per_request"] == pytest.approx(8 * 61 * (512 + 64) * 2 * 6656 / GIB)
    # interpolation between measured batches (25 -> between 16.4 at 20 and 18.8 at 30)
    (mid,) = records(["--fleet", PAPER, "--model", "deepseek-v3.1", "--sku", "H200-SXM", "--tp", "8",
                      "--input-tokens", "6144", "--output-tokens", "512", "--batch", "25"])
    assert mid["tpot_ms"] == pytest.approx(17.6, rel=1e-6)


def test_batch_above_profile_falls_back_to_roofline():
    args = ["--fleet", PAPER, "--model", "deepseek-v3.1", "--sku", "H200-SXM", "--tp", "8",
            "--input-tokens", "6144", "--output-tokens", "512"]
    (r,) = records([*args, "--batch", "100"])
    assert r["prefill_source"] == "profile" and r["tpot_source"] == "roofline"
    assert "above the profile's largest measured batch 60" in r["note"]
    (no_fleet,) = records([*args[2:], "--batch", "100"])  # the catalog's deepseek-v3.1 is the same shape
    assert no_fleet["tpot_source"] == "roofline"
    assert r["tpot_ms"] == pytest.approx(no_fleet["tpot_ms"], rel=1e-6)
    # other precisions skip the profile (profiles do not record one)
    (bf16,) = records([*args, "--batch", "30", "--precision", "bf16"])
    assert bf16["tpot_source"] == bf16["prefill_source"] == "roofline" and "profile skipped" in bf16["note"]


def test_one_batched_call_per_kernel(tmp_path, monkeypatch):
    calls = {}

    def counting(name):
        real = getattr(roofline, name)

        def wrapper(*a, **k):
            calls[name] = calls.get(name, 0) + 1
            return real(*a, **k)

        monkeypatch.setattr(roofline, name, wrapper)

    for name in ("prefill_time_s_batched", "decode_step_s_batched", "max_batch_memory_batched"):
        counting(name)
    assert len(records(["--queries", str(_queries_csv(tmp_path))])) == 3
    assert calls == {"prefill_time_s_batched": 1, "decode_step_s_batched": 1, "max_batch_memory_batched": 1}


def _no_tflops_fleet(tmp_path):
    doc = {
        "skus": {"mystery": {"memory_gib": 80, "price_usd_per_gpu_hour": 1.0, "hbm_tbps": 2.0}},
        "models": ["llama-3.1-8b"],
        "profiles": [{"model": "llama-3.1-8b", "sku": "mystery", "gpus_per_instance": 1,
                      "prefill": {"max_tokens_per_s": 10000},
                      "decode": [{"input_tokens": 1000, "output_tokens": 200, "batch": [1, 16],
                                  "tpot_ms": [10, 14]}]}],
        "workloads": {"w": {"model": "llama-3.1-8b", "rate_rps": 1, "input_tokens": 1000, "output_tokens": 200,
                            "slo": {"ttft_s": 1, "tpot_ms": 50}}},
    }
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_sku_without_tflops(tmp_path):
    fleet = str(_no_tflops_fleet(tmp_path))
    base = ["--fleet", fleet, "--model", "llama-3.1-8b", "--sku", "mystery", "--input-tokens", "1000",
            "--output-tokens", "200"]
    (r,) = records([*base, "--tp", "1", "--batch", "8"])  # a profile covers both numbers: fine
    assert r["prefill_source"] == r["tpot_source"] == "profile" and r["tpot_ms"] == pytest.approx(10 + 4 * 7 / 15)
    one_line_error(run([*base, "--tp", "1", "--batch", "32"], ok=False), "mystery", "tflops")
    one_line_error(run([*base, "--tp", "2", "--batch", "8"], ok=False), "mystery", "tflops")


@pytest.mark.parametrize("args, needles", [
    (["--model", "gpt-9", *LLAMA_Q[2:]], ["unknown model 'gpt-9'", "llama-3.1-70b"]),
    (["--model", "llama-3.1-70b", "--sku", "TPU", *LLAMA_Q[4:]], ["unknown sku 'TPU'", "H100-SXM"]),
    ([*LLAMA[:4], "--tp", "0", *LLAMA_Q[6:]], ["--tp must be >= 1"]),
    ([*LLAMA[:4], "--tp", "two", *LLAMA_Q[6:]], ["--tp must be a number"]),
    ([*LLAMA_Q, "--precision", "fp2"], ["--precision"]),
    (LLAMA, ["missing --input-tokens"]),
    ([*LLAMA_Q, "--fleet", "nope.yaml"], ["cannot read"]),
    ([*LLAMA_Q, "--calibration", "nope.json"], ["calibration"]),
])
def test_bad_flags_exit_2_with_one_line(args, needles):
    one_line_error(run(args, ok=False), *needles)


def test_bad_csv_exits_2_with_one_line(tmp_path):
    path = _queries_csv(tmp_path, columns=("model", "sku", "tp", "input_tokens", "output_tokens"))
    one_line_error(run(["--queries", str(path)], ok=False), "missing column(s) batch")
    bad_tp = _queries_csv(tmp_path, rows=[QUERIES[0], ("llama-3.1-8b", "H100-SXM", 0, "", 10, 10, 1)])
    one_line_error(run(["--queries", str(bad_tp)], ok=False), "queries.csv:3", "tp must be")
    unknown = _queries_csv(tmp_path, rows=[("llama-9", "H100-SXM", 1, "", 10, 10, 1)])
    one_line_error(run(["--queries", str(unknown)], ok=False), "queries.csv:2", "unknown model 'llama-9'")
    one_line_error(run(["--queries", str(path), *LLAMA[:2]], ok=False), "not both")
    # precision column is optional (blank = the model's weight_dtype)
    no_prec = _queries_csv(tmp_path, columns=("model", "sku", "tp", "input_tokens", "output_tokens", "batch"))
    assert [r["precision"] for r in records(["--queries", str(no_prec)])] == ["bf16", "bf16", "fp8"]


def test_tp_beyond_a_node_is_noted():
    from click.testing import CliRunner

    from pdfleet.cli import main

    result = CliRunner().invoke(main, ["estimate", "--model", "llama-3.1-70b", "--sku", "H100-SXM", "--tp", "16",
                                       "--input-tokens", "2048", "--output-tokens", "256", "--batch", "32", "--json"])
    assert result.exit_code == 0, result.output
    assert "spans 2 nodes" in result.output


def test_refuses_what_cannot_run():
    """No numbers beside 'cannot run': NaN (JSON null) prefill, TPOT, tokens/s, batch limit and error band, and a
    note saying why."""
    base = ["--input-tokens", "2048", "--output-tokens", "256", "--batch", "8"]
    cases = [
        (["--model", "llama-3.1-70b", "--sku", "H100-SXM", "--tp", "3"], "tp 3 does not divide the 64 attention heads"),
        (["--model", "llama-3.1-70b", "--sku", "H100-SXM", "--tp", "16"], "tp 16 spans 2 nodes of 8 GPUs"),
        (["--model", "llama-3.1-405b", "--sku", "H100-SXM", "--tp", "1"], "the model does not fit"),
    ]
    for args, why in cases:
        (r,) = records(args + base)
        assert r["prefill_s"] is None and r["tpot_ms"] is None and r["decode_tokens_per_s"] is None, args
        assert r["max_batch_memory"] is None and r["prediction_error"] is None, args  # no batch, no band either
        assert f"cannot run: {why}" in r["note"], r["note"]
    table = run(cases[0][0] + base)  # the table prints them as nan too
    assert table.exit_code == 0 and "max_batch_memory" in table.output
    # a batch whose KV cache does not fit: prefill of one request is fine, the TPOT is not given
    (r,) = records(LLAMA + ["--input-tokens", "32000", "--output-tokens", "1000", "--batch", "512"])
    assert r["prefill_s"] > 0 and r["tpot_ms"] is None and "KV cache does not fit" in r["note"]


def test_says_which_fit_served_and_whether_borrowed():
    (own,) = records(LLAMA_Q)
    assert own["fit"] == "H100-SXM/*"  # no engine asked: the sku's own fit pooled over its engines
    (h20,) = records(["--model", "llama-3.1-8b", "--sku", "H20", "--tp", "1", "--input-tokens", "512",
                      "--output-tokens", "128", "--batch", "4"])
    assert h20["fit"].endswith("(borrowed)")  # H20 was never measured: moved from the reference sku


def test_prediction_error_of_a_sku_never_measured_is_at_least_the_transfer_band():
    """L4 was never measured: its numbers are H100-SXM/tensorrt-llm's fit moved to it, and its band is at least the
    file's leave-one-sku-out error of moving a fit to another NVIDIA architecture (calibrate.transfer_band), the
    band the plan would take too."""
    data = json.loads(calibrate.DEFAULT_CALIBRATION.read_text())
    own = data["skus"]["H100-SXM"]["tensorrt-llm"]["cv_error"]
    moved = data[calibrate.TRANSFER_ERROR_KEY]["by_group"]["same_vendor"]
    q = ["--model", "llama-3.1-8b", "--tp", "1", "--input-tokens", "512", "--output-tokens", "128", "--batch", "4",
         "--engine", "tensorrt-llm"]
    (l4,) = records(q + ["--sku", "L4"])
    (h100,) = records(q + ["--sku", "H100-SXM"])
    assert l4["fit"] == "H100-SXM/tensorrt-llm (borrowed)" and h100["fit"] == "H100-SXM/tensorrt-llm"
    assert h100["prediction_error"] == pytest.approx(max(own["prefill"], own["decode"]))
    assert l4["prediction_error"] == pytest.approx(max(own["prefill"], own["decode"], moved["prefill"], moved["decode"]))
    assert l4["prediction_error"] > h100["prediction_error"]
    # a mixture-of-experts model on a moved Hopper sku: the MoE band (the move carries no MoE fit)
    moe = data[calibrate.TRANSFER_ERROR_KEY]["by_group_moe"]["same_family"]
    (m,) = records(["--model", "qwen3-30b-a3b", "--sku", "H100-PCIE", *q[2:]])
    assert m["prediction_error"] == pytest.approx(max(moe["decode"], moe["e2e"]))  # prefill: the group's e2e band


def test_prediction_error_is_the_serving_entrys_cross_validated_error():
    (r,) = records(LLAMA_Q)  # both numbers from the roofline, served by H100-SXM/*
    cv = json.loads(calibrate.DEFAULT_CALIBRATION.read_text())["skus"]["H100-SXM"]["*"]["cv_error"]
    assert r["prediction_error"] == pytest.approx(max(cv["prefill"], cv["decode"]))
    (v,) = records(LLAMA_Q + ["--engine", "vllm"])
    assert v["fit"] == "H100-SXM/vllm"


def test_prediction_error_is_the_band_the_plan_uses():
    """estimate's band is calibrate.role_error's, as the plan's column and the 'auto' margin take it: an entry
    with no cross-validated error of its own (H100-SXM/sglang, 2 rows) gives its sku's pooled one, not NaN; a dp/ep
    shape gives at least the error measured on expert-parallel runs, not the tensor-parallel fit's."""
    data = json.loads(calibrate.DEFAULT_CALIBRATION.read_text())
    assert "cv_error" not in data["skus"]["H100-SXM"]["sglang"]
    sku_pool = data["skus"]["H100-SXM"]["*"]["cv_error"]
    (s,) = records(LLAMA_Q + ["--engine", "sglang"])
    assert s["fit"] == "H100-SXM/sglang"
    assert s["prediction_error"] == pytest.approx(max(sku_pool["prefill"], sku_pool["decode"]))
    ep = ["--model", "deepseek-v3", "--sku", "H200-SXM", "--tp", "1", "--dp", "8", "--ep", "8",
          "--input-tokens", "2000", "--output-tokens", "500", "--batch", "256"]
    (r,) = records(ep)
    band = data[calibrate.EP_ERROR_KEY]["error"]
    own = data["skus"]["H200-SXM"]["*"]["cv_error"]
    assert band > max(own["prefill"], own["decode"])  # else this test would not tell the two apart
    assert r["prediction_error"] == pytest.approx(band)
    served = calibrate.lookup("H200-SXM", None)
    assert r["prediction_error"] == pytest.approx(max(calibrate.role_error(served, role, expert_parallel=True)[0]
                                                      for role in ("prefill", "decode")))


def test_unknown_engine_is_one_line_error():
    single = ["--model", "llama-2-70b", "--sku", "H100-SXM", "--tp", "4", "--input-tokens", "100",
              "--output-tokens", "100", "--batch", "8"]
    line = one_line_error(run([*single, "--engine", "trt"], ok=False), "--engine", "'trt'", "tensorrt-llm")
    assert "vllm, sglang, tensorrt-llm, any" in line
    assert records([*single, "--engine", "tensorrt-llm"])[0]["model"] == "llama-2-70b"


def _ep_csv(tmp_path, rows):
    path = tmp_path / "ep.csv"
    cols = ("model", "sku", "tp", "precision", "input_tokens", "output_tokens", "batch", "dp", "ep")
    pd.DataFrame([dict(zip(cols, r)) for r in rows]).to_csv(path, index=False)
    return path


def test_data_parallel_attention_with_expert_parallel_moe(tmp_path):
    """dp/ep queries (CSV columns, optional): numbers from roofline.ep_* with the shipped H200 fit, the weights
    counted once per attention group, the MLA latent no longer copied to 8 ranks (a larger KV batch)."""
    from pdfleet import catalog

    path = _ep_csv(tmp_path, [("deepseek-v3", "H200-SXM", 8, "", 3200, 800, 64, 1, 1),
                              ("deepseek-v3", "H200-SXM", 1, "", 3200, 800, 64, 8, 8),
                              ("deepseek-v3", "H200-SXM", 8, "", 3200, 800, 64, "", "")])
    tp8, dep8, blank = records(["--queries", str(path)])
    assert (dep8["dp"], dep8["ep"], blank["dp"], blank["ep"]) == (8, 8, 1, 1)
    assert {k: v for k, v in blank.items()} == {k: v for k, v in tp8.items()}
    eff = calibrate.lookup("H200-SXM", None).efficiency
    m = roofline.model_shape_from_catalog(catalog.load_models()["deepseek-v3"], tp=1)
    hw = roofline.hardware_from_sku(catalog.load_skus()["H200-SXM"], 8, "fp8")
    assert dep8["tpot_ms"] == pytest.approx(1e3 * float(roofline.ep_decode_step_s(64.0, 3600.0, m, hw, eff, 8.0, 8.0)),
                                            rel=1e-5)
    assert dep8["prefill_s"] == pytest.approx(float(roofline.ep_prefill_time_s(3200.0, m, hw, eff, 8.0, 8.0)), rel=1e-5)
    dense = float(m.weight_bytes - m.expert_bytes)
    assert dep8["weights_gib"] == pytest.approx((float(m.weight_bytes) + 7 * dense) / GIB, rel=1e-6)
    assert dep8["max_batch_memory"] > 4 * tp8["max_batch_memory"]  # 8 latent copies per token -> 1
    flags = ["--model", "deepseek-v3", "--sku", "H200-SXM", "--tp", "1", "--input-tokens", "3200",
             "--output-tokens", "800", "--batch", "64"]
    assert records([*flags, "--dp", "8", "--ep", "8"]) == [dep8]  # the single-query flags ask the same
    one_line_error(run([*flags, "--dp", "8", "--ep", "4"], ok=False), "ep must be 1")
    one_line_error(run(["--queries", str(path), "--dp", "8"], ok=False), "--dp", "not both")


@pytest.mark.parametrize("row,needle", [
    (("deepseek-v3", "H200-SXM", 2, "", 100, 10, 4, 4, 4), "ep must be 1"),
    (("deepseek-v3", "H200-SXM", 2, "", 100, 10, 4, 4, 1), "separate instances"),
    (("deepseek-v3", "H200-SXM", 2, "", 100, 10, 4, 0, 1), "dp must be a whole number"),
])
def test_bad_dp_ep_exit_2_with_one_line(tmp_path, row, needle):
    one_line_error(run(["--queries", str(_ep_csv(tmp_path, [row]))], ok=False), needle)


def test_expert_parallel_needs_experts_and_one_node(tmp_path):
    path = _ep_csv(tmp_path, [("llama-3.1-70b", "H100-SXM", 4, "", 100, 10, 4, 1, 4),
                              ("deepseek-v3", "H200-SXM", 8, "", 100, 10, 4, 2, 16)])
    dense, two_nodes = records(["--queries", str(path)])
    assert "no routed experts" in dense["note"] and dense["tpot_ms"] is None  # NaN in JSON
    assert "tp 8 x dp 2 spans 2 nodes" in two_nodes["note"] and two_nodes["prefill_s"] is None


def test_with_a_fleet_its_engine_and_calibration_answer_unless_flags_say_otherwise(tmp_path):
    """A planner checks a plan row with `estimate --fleet`: the fleet's planning.engine and planning.calibration
    serve the query, as they serve the plan; --engine and --calibration still override."""
    import shutil

    doc = yaml.safe_load((CONFIGS / "mixed-skus.yaml").read_text())
    doc["planning"].update(engine="vllm", calibration="cal.json")
    shutil.copy(calibrate.DEFAULT_CALIBRATION, tmp_path / "cal.json")
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(yaml.safe_dump(doc))
    (r,) = records(["--fleet", str(fleet), *LLAMA_Q])
    assert r["fit"] == "H100-SXM/vllm"
    (t,) = records(["--fleet", str(fleet), *LLAMA_Q, "--engine", "tensorrt-llm"])
    assert t["fit"] == "H100-SXM/tensorrt-llm"
    (tmp_path / "cal.json").write_text("{}")  # the fleet's file is the one read: a bad one is refused
    one_line_error(run(["--fleet", str(fleet), *LLAMA_Q], ok=False), "cal.json")
    (d,) = records(["--fleet", str(fleet), *LLAMA_Q, "--calibration", str(calibrate.DEFAULT_CALIBRATION)])
    assert d["fit"] == "H100-SXM/vllm"


def test_engine_flag_is_checked_against_the_fleets_calibration(tmp_path):
    """--engine may name an engine the --fleet's calibration file was fitted for, though the shipped one lacks it."""
    doc = yaml.safe_load((CONFIGS / "mixed-skus.yaml").read_text())
    data = json.loads(calibrate.DEFAULT_CALIBRATION.read_text())
    data["skus"]["H100-SXM"]["lmdeploy"] = data["skus"]["H100-SXM"]["vllm"]
    (tmp_path / "cal.json").write_text(json.dumps(data))
    doc["planning"]["calibration"] = "cal.json"
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(yaml.safe_dump(doc))
    one_line_error(run([*LLAMA_Q, "--engine", "lmdeploy"], ok=False), "--engine", "'lmdeploy'")
    (r,) = records(["--fleet", str(fleet), *LLAMA_Q, "--engine", "lmdeploy"])
    assert r["fit"] == "H100-SXM/lmdeploy"
