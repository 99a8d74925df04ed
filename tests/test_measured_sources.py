"""Readers of the current-engine tables (pdfleet.measured_sources): units, hand-calculated rows, refusals."""

import numpy as np
import pandas as pd
import pytest

from pdfleet import catalog, measured, measured_sources as ms
from pdfleet.measured import EXTRA_COLUMNS, TIDY_COLUMNS

PERF = measured.DEFAULT_PERF_DIR
pytestmark = pytest.mark.skipif(
    not (PERF / "trtllm_perf_overview_throughput.csv").exists(), reason=f"shared measured data not found in {PERF}"
)
GIB = 1024.0**3


@pytest.fixture(scope="module")
def current():
    return ms.read_current()


def test_tidy_columns_and_every_row_sane(current):
    rows, refused = current
    assert list(rows.columns) == TIDY_COLUMNS + EXTRA_COLUMNS
    assert set(rows["kind"]) <= {"prefill", "decode", "e2e", "itl"}
    assert (rows["time_s"] > 0).all() and (rows["batch"] >= 1).all() and (rows["tp"] >= 1).all()
    assert set(rows["engine"]) <= {"tensorrt-llm", "vllm", "sglang", "nim"}
    skus, models = catalog.load_skus(), catalog.load_models()
    assert rows["sku"].isin(list(skus)).all() and rows["model"].isin(list(models)).all()
    assert list(refused.columns) == ms.REFUSED_COLUMNS and refused["reason"].str.len().gt(0).all()


def test_kv_capacity_hand_calculation():
    skus, models = catalog.load_skus(), catalog.load_models()
    # llama-3-70b fp8 weights + fp8 KV on one H200 (141 GiB), TensorRT-LLM rule: 0.9 x (memory - weights)
    free = 0.9 * (141 * GIB - 70.6e9)
    per_seq = 2 * 80 * 8 * 128 * 1 * 2000  # K and V, 80 layers, 8 KV heads, head_dim 128, 1 byte, 2000 tokens
    assert ms.kv_capacity(models["llama-3-70b"], skus["H200-SXM"], 1, "fp8", "fp8", 2000, "tensorrt-llm") == int(free // per_seq)
    # vLLM rule on 4 x H100 (80 GiB), bf16: 0.9 x 320 GiB - 141.2 GB
    free = 0.9 * 4 * 80 * GIB - 70.6e9 * 2
    per_seq = 2 * 80 * 8 * 128 * 2 * 4096
    assert ms.kv_capacity(models["llama-3.1-70b"], skus["H100-SXM"], 4, "bf16", "", 4096, "vllm") == int(free // per_seq)
    # 405B bf16 does not fit one 8 x H100 node
    assert ms.kv_capacity(models["llama-3.1-405b"], skus["H100-SXM"], 8, "bf16", "", 1000) == 0


def test_trtllm_running_batch_caps_by_hand():
    # trtllm-bench's caps (tensorrt_llm/bench/build/tuning.py): 4096 sequences, 32768 tokens per iteration
    assert ms.trtllm_running_batch(221.4, 1000, 1000) == 221  # the KV cache binds
    assert ms.trtllm_running_batch(50000, 128, 128) == 4096  # the sequence cap binds
    assert ms.trtllm_running_batch(50000, 2048, 128) == 1927  # 32768 / (1 + 2048/128) = 1927.5
    assert ms.trtllm_running_batch(0, 128, 128) == 0


def test_mlperf_offline_table_by_hand():
    m = ms.read_mlperf_offline().set_index("sku")
    assert sorted(m.index) == sorted(ms.MLPERF_SKUS)
    # B200 in v5.1: ten closed 1-node 8-GPU fp4 submissions, median 101,521.5 tokens/s (the ten CSV rows, by hand)
    assert m.loc["B200", "round"] == "mlperf-v5.1" and m.loc["B200", "weight_dtype"] == "fp4"
    assert m.loc["B200", "submissions"] == 10 and m.loc["B200", "tokens_per_s"] == pytest.approx(101521.5)
    # H100-SXM in v5.1: Cisco's 2- and 4-node runs, 62,351.6 / 2 and 124,879 / 4 tokens/s per node
    assert m.loc["H100-SXM", "tokens_per_s"] == pytest.approx((62351.6 / 2 + 124879 / 4) / 2)
    assert m.loc["MI300X", "engine"] == "vllm" and m.loc["H200-SXM", "engine"] == "tensorrt-llm"
    assert (m["output_tokens"].between(270, 305)).all() and (m["input_tokens"] == ms.MLPERF_INPUT_TOKENS).all()


def test_trtllm_throughput_row_by_hand(current):
    rows, _ = current
    r = rows[(rows["source"] == "trtllm-perf") & (rows["model"] == "llama-3-70b") & (rows["sku"] == "H200-SXM")
             & (rows["tp"] == 1) & (rows["input_tokens"] == 1000) & (rows["output_tokens"] == 1000)]
    assert len(r) == 1
    r = r.iloc[0]
    assert r["kind"] == "e2e" and r["weight_dtype"] == "fp8" and r["kv_dtype"] == "fp8"
    model, sku = catalog.load_models()["llama-3-70b"], catalog.load_skus()["H200-SXM"]
    # the KV cache holds floor(0.9 x (141 GiB - 70.6 GB) / (163,840 B x 2000)) = 221 sequences; trtllm-bench's
    # heuristic sizes max_batch 224 (rounded up to 32s) and max_num_tokens 2048 (its floor); the page ran 3000
    # requests of 1000/1000, scheduled by offline_mean_batch: 3000 x 1000 output tokens in 14,126 iterations
    assert ms.kv_capacity(model, sku, 1, "fp8", "fp8", 2000, "tensorrt-llm") == 221
    assert ms.trtllm_bench_settings(model, sku, 1, "fp8", "fp8", 1000, 1000) == (224, 2048)
    mean, iterations = ms.offline_mean_batch(3000, 221, 2048, 1000, 1000)
    assert iterations == 14126 and mean == pytest.approx(3000 * 1000 / 14126)
    assert r["batch"] == pytest.approx(mean)  # below 221: the ramp (one 1000-token context per iteration) and tail
    assert r["time_s"] == pytest.approx(mean * 1000 / 2594.2199, rel=1e-6)  # v0.14 table: 2594.2199 tok/s


def test_trtllm_tp_batch_falls_back_to_the_steady_state_for_unlisted_lengths():
    """1024/2048 (the v0.20 page) is not in the pages' request table: the steady-state running batch."""
    model, sku = catalog.load_models()["llama-3-70b"], catalog.load_skus()["H200-SXM"]
    assert (1024, 2048) not in ms.TRTLLM_PERF_REQUESTS
    cap = ms.kv_capacity(model, sku, 1, "fp8", "fp8", 1024 + 2048, "tensorrt-llm")
    assert ms.trtllm_tp_batch(model, sku, 1, "fp8", "fp8", 1024, 2048) == ms.trtllm_running_batch(cap, 1024, 2048)


def test_trtllm_online_littles_law_and_ttft(current):
    rows, refused = current
    on = rows[(rows["source"] == "trtllm-online") & (rows["model"] == "llama-3.1-70b") & (rows["sku"] == "H100-SXM")]
    itl = on[(on["kind"] == "itl") & (on["input_tokens"] == 467) & (on["output_tokens"] == 256)]
    # QPS 2: 498 output tok/s, mean ITL 21 ms -> B = 498 x 0.021
    first = itl.sort_values("batch").iloc[0]
    assert first["batch"] == pytest.approx(498 * 0.021) and first["time_s"] == pytest.approx(0.021)
    assert first["context_tokens"] == 467 + 128
    assert len(on[on["kind"] == "itl"]) == 18  # 3 length pairs x 6 rates
    pre = on[on["kind"] == "prefill"]  # TTFT only at the lowest rate, where nothing queues
    assert len(pre) == 3 and set(pre["batch"]) == {1.0}
    assert pre.loc[pre["input_tokens"] == 202, "time_s"].iloc[0] == pytest.approx(0.048)
    why = refused[refused["source"] == "trtllm-online"]["reason"]
    assert (why == "TTFT under load includes queueing").sum() > 0


def test_itl_rows_predict_one_batch_prefill_plus_its_steps_per_token():
    """kind 'itl' = (prefill of the batch + OSL decode steps) / OSL, by hand through calibrate.predict."""
    from pdfleet import calibrate
    from pdfleet.perf import roofline

    eff = roofline.Efficiency(0.5, 0.8, 0.7, 0.01, 0.005, 5e-6, 1e-4, 1e-5)
    base = dict(model="llama-3.1-70b", sku="H100-SXM", tp=4, engine="x", batch=16.0, input_tokens=467.0,
                output_tokens=256.0, context_tokens=467 + 128.0, time_s=1.0, source="s", weight_dtype="", kv_dtype="")
    df = pd.DataFrame([dict(base, kind="itl"), dict(base, kind="e2e")])
    itl, e2e = calibrate.predict(df, eff)
    assert itl == pytest.approx(e2e / 256.0, rel=1e-6)
    # fewer than one sequence in the engine (concurrency 0.25, batch clipped to 1): a quarter of one prefill
    one = dict(base, batch=1.0)
    df = pd.DataFrame([dict(one, kind="itl", concurrency=0.25), dict(one, kind="decode", context_tokens=467 + 128.0),
                       dict(one, kind="prefill", output_tokens=0.0, context_tokens=467.0)])
    itl, step, pre = calibrate.predict(df, eff)
    assert itl == pytest.approx(step + 0.25 * pre / 256.0, rel=1e-6)


def test_online_rows_keep_the_unclipped_concurrency(current):
    rows, _ = current
    on = rows[(rows["source"] == "trtllm-online") & (rows["kind"] == "itl") & (rows["model"] == "llama-3.1-8b")
              & (rows["sku"] == "H100-SXM") & (rows["input_tokens"] == 467) & (rows["output_tokens"] == 16)]
    # QPS 2: 32 output tok/s, mean ITL 7 ms -> 0.224 sequences in the engine; the running batch is clipped to 1
    first = on.sort_values("concurrency").iloc[0]
    assert first["concurrency"] == pytest.approx(32 * 0.007) and first["batch"] == 1.0
    assert rows.loc[rows["kind"] != "itl", "concurrency"].isna().all()


def test_refusals_named_and_counted(current):
    _, refused = current
    by = refused.groupby(["source", "reason"]).size()
    assert by[("mlperf-v4.1",)].sum() == 197 and by[("mlperf-v5.1",)].sum() == 412
    assert by[("trtllm-perf", "pipeline or attention-DP/expert parallel (roofline models TP only)")] > 0
    assert by[("dstack-r1", "shared-prefix workload (prefix cache hits)")] == 9
    assert by[("dstack-r1", "offline batch larger than the KV capacity (ran in waves)")] > 0


def test_no_row_faster_than_the_datasheet_roofline(current):
    """η = 1, no overheads: a row faster than that is a misread (wrong batch, precision or unit)."""
    from pdfleet import calibrate
    from pdfleet.perf.roofline import Efficiency

    rows, _ = current
    bound = calibrate.predict(rows, Efficiency(1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0))
    assert np.all(rows["time_s"].to_numpy() >= bound)


def test_lib_batches_beyond_the_kv_capacity_are_refused_by_hand():
    # Llama-2-7B bf16 on one MI300X (vLLM), L = 1024 in + 1024 out: KV room 0.9 x 192 GiB - 6.74e9 x 2 B of weights,
    # 2 x 32 layers x 32 kv heads x 128 x 2 B = 524,288 B per token, 2,048 tokens per sequence -> 160 sequences.
    room = 0.9 * 192 * 2**30 - 6.74e9 * 2
    cap = int(room // (524288 * 2048))
    assert cap == 160
    base = dict(model="llama-2-7b", sku="MI300X", tp=1, engine="vllm", kind="e2e", input_tokens=1024.0,
                output_tokens=1024.0, context_tokens=1536.0, time_s=1.0, source="llm-inference-bench")
    old = pd.DataFrame([dict(base, batch=float(cap)), dict(base, batch=float(cap + 1)),
                        dict(base, batch=256.0, source="splitwise")])  # other sources are not screened here
    kept, refused = ms.refuse_lib_waves(old)
    assert kept["batch"].tolist() == [float(cap), 256.0]
    assert len(refused) == 1 and "KV capacity" in refused["reason"].iloc[0]


def test_a_gpu_outclasses_another_only_in_every_roofline_resource():
    skus = catalog.load_skus()
    assert ms.outclasses(skus["B200"], skus["H100-SXM"]) and not ms.outclasses(skus["H100-SXM"], skus["B200"])
    assert ms.outclasses(skus["H200-SXM"], skus["H100-SXM"])  # same FLOP/s and link, more HBM bandwidth
    assert not ms.outclasses(skus["MI300X"], skus["H100-SXM"])  # more HBM bandwidth, less link bandwidth
    assert not ms.outclasses({"tflops_bf16": 2000, "hbm_tbps": 9.0}, skus["H100-SXM"])  # no link bandwidth known


def test_mlenergy_runs_slower_than_on_a_weaker_gpu_are_host_bound_by_hand():
    skus = catalog.load_skus()
    run = dict(model_id="m", task="t", num_gpus=1, tensor_parallel=1, expert_parallel=1, data_parallel=1)
    raw = pd.DataFrame([
        dict(run, gpu_model="H100", max_num_seqs=8, avg_batch_size=8.0, median_itl_ms=14.0),
        dict(run, gpu_model="B200", max_num_seqs=8, avg_batch_size=8.0, median_itl_ms=15.0),  # slower: flagged
        dict(run, gpu_model="H100", max_num_seqs=64, avg_batch_size=40.0, median_itl_ms=20.0),
        # 24 ms at 48 sequences against 20 ms at 40: within the batch allowance 20 x 48/40 = 24
        dict(run, gpu_model="B200", max_num_seqs=64, avg_batch_size=48.0, median_itl_ms=24.0),
        dict(run, gpu_model="B200", max_num_seqs=128, avg_batch_size=128.0, median_itl_ms=9.0),
        dict(run, gpu_model="H100", max_num_seqs=128, avg_batch_size=128.0, median_itl_ms=30.0),  # H100: never
        dict(run, gpu_model="B200", max_num_seqs=256, avg_batch_size=256.0, median_itl_ms=99.0),  # no twin
    ])
    assert ms.mlenergy_host_bound(raw, skus).tolist() == [False, True, False, False, False, False, False]


def test_host_bound_mlenergy_runs_are_refused():
    """On the shipped file: every refused run is a B200 run slower than the H100 run of its configuration, among
    them Qwen3-14B gpqa at 8 sequences (33.6 ms against 14.4 ms on H100, at 32 % of the B200's power)."""
    df, refused = ms.read_everything()
    mine = refused[refused["reason"].str.contains("outclasses")]
    assert len(mine) >= 10 and set(mine["sku"]) == {"B200"} and set(mine["source"]) == {"mlenergy-v3"}
    assert "qwen3-14b" in set(mine["model"])
    gpqa = df[(df["source"] == "mlenergy-v3:gpqa") & (df["model"] == "qwen3-14b")]
    assert not ((gpqa["sku"] == "B200") & (gpqa["batch"] < 9)).any()  # its B200 run at 8 sequences is gone
    assert ((gpqa["sku"] == "H100-SXM") & (gpqa["batch"] < 9)).any()  # the H100 twin stays
