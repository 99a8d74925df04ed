"""dstack readers (pdfleet.measured_sources.read_dstack_405b / read_dstack_r1) on the real files: the online time
per token, the KV dtype, the loaded-weights KV capacity and the saturated-batch refusal, each by hand."""

import pandas as pd
import pytest

from pdfleet import catalog, measured, measured_sources as ms

PERF = measured.DEFAULT_PERF_DIR
SERVING = PERF / "dstack_llama31_405b_h100_mi300x_vllm_serving.csv"
OFFLINE = PERF / "dstack_llama31_405b_h100_mi300x_vllm_offline.csv"
pytestmark = pytest.mark.skipif(not SERVING.exists(), reason=f"shared measured data not found in {PERF}")
GIB = 1024.0**3
SATURATED = "offline batch saturated: doubling it did not cut the time per request (ran in waves or preempted)"


@pytest.fixture(scope="module")
def dstack405():
    return ms.read_dstack_405b()


def test_online_rows_batch_by_the_token_weighted_itl(dstack405):
    """The batch is Little's law with the mean ITL (the mean TPOT, 1351 ms for 4xMI300X at 16 req/s, is a mean of
    per-request ratios). MI300X runs (multi-step 15, chunked prefill off) are decode steps timed by the median ITL;
    H100 runs (chunked prefill, one scheduler step) keep the mean ITL as 'itl'."""
    rows, _ = dstack405
    on = rows[(rows["sku"] == "MI300X") & (rows["tp"] == 4) & (rows["kind"] != "e2e")].sort_values("batch")
    assert set(on["kind"]) == {"decode"} and len(on) == 3
    row = on.iloc[-1]  # 4xMI300X at 16 req/s: mean ITL 377.436 ms, median 199.314 ms, 1035.27 tok/s
    assert row["time_s"] == pytest.approx(0.199313628)
    assert row["batch"] == pytest.approx(1035.272798 * 0.377436468)
    assert row["input_tokens"] == pytest.approx(215196 / 1000) and row["output_tokens"] == pytest.approx(179.716)
    assert row["context_tokens"] == pytest.approx(215196 / 1000 + 179.716 / 2)
    h100 = rows[(rows["sku"] == "H100-SXM") & (rows["kind"] != "e2e")]
    assert set(h100["kind"]) == {"itl"} and h100["time_s"].max() == pytest.approx(0.102327084)


def test_kv_cache_is_bf16_on_every_row(dstack405):
    rows, _ = dstack405
    assert (rows["kv_dtype"] == "").all()  # no --kv-cache-dtype in the source's commands, AMD's -FP8-KV included


def test_kv_capacity_with_the_loaded_weights():
    skus, models = catalog.load_skus(), catalog.load_models()
    # 8 x H100 (80 GiB), vLLM: 0.9 x 640 GiB - 8 x 56.7677 GiB (Meta's FP8 checkpoint as loaded), bf16 KV:
    # 126 layers x K,V x 8 KV heads x 128 x 2 bytes per token, 32784 + 2048 tokens per sequence
    free = 0.9 * 8 * 80 * GIB - 8 * 56.7677 * GIB
    per_seq = 126 * 2 * 8 * 128 * 2 * (32784 + 2048)
    cap = ms.kv_capacity(models["llama-3.1-405b"], skus["H100-SXM"], 8, "fp8", "", 32784 + 2048,
                         loaded_weight_bytes=8 * 56.7677 * GIB)
    assert cap == int(free // per_seq) == 7
    # the catalog's 405 GB of fp8 weights would have let 11 such sequences in
    assert ms.kv_capacity(models["llama-3.1-405b"], skus["H100-SXM"], 8, "fp8", "", 32784 + 2048) == 11


def test_offline_h100_rows_beyond_the_capacity_refused(dstack405):
    rows, refused = dstack405
    e2e = rows[(rows["kind"] == "e2e") & (rows["sku"] == "H100-SXM")]
    assert sorted(e2e.loc[e2e["input_tokens"] == 32784, "batch"]) == [4.0]  # 8 and 16 exceed 7 sequences
    assert sorted(e2e.loc[e2e["input_tokens"] == 128, "batch"]) == [4.0, 8.0, 16.0, 32.0, 64.0]
    waves = refused[(refused["sku"] == "H100-SXM") & refused["reason"].str.contains("KV capacity")]
    assert len(waves) == 7


def test_saturated_batches_by_hand():
    df = pd.DataFrame({"s": ["a"] * 4 + ["b"] * 3, "b": [4, 8, 16, 32, 4, 8, 16],
                       "t": [10.0, 12.0, 23.0, 50.0, 10.0, 15.0, 25.0]})
    # a: per request 2.5, 1.5, 1.4375 (>= 0.95 x 1.5: saturated), 1.5625 (larger: refused too); b: 2.5, 1.875, 1.5625
    assert ms.saturated_batches(df, ["s"], "b", "t").tolist() == [False, False, True, True, False, False, False]


def test_saturated_offline_batches_refused_on_the_real_file(dstack405):
    rows, refused = dstack405
    off = pd.read_csv(OFFLINE)
    four = off[off["gpu"].str.startswith("4x") & (off["input_len"] == 128)].set_index("batch_size")["elapsed_time"]
    # 4xMI300X, 128/2048: batch 128 takes 195.5 s, batch 256 431.6 s: 1.69 s per request against 1.53 s
    assert four[256] / 256 >= ms.SATURATION_RATIO * four[128] / 128
    e2e = rows[(rows["kind"] == "e2e") & (rows["sku"] == "MI300X") & (rows["tp"] == 4)]
    assert 256.0 not in set(e2e.loc[e2e["input_tokens"] == 128, "batch"])
    assert 128.0 in set(e2e.loc[e2e["input_tokens"] == 128, "batch"])
    assert (refused["reason"] == SATURATED).sum() == 3
    # 8xMI300X keeps gaining up to batch 256 at 128/2048 (131.6 s -> 227.3 s): kept
    e8 = rows[(rows["kind"] == "e2e") & (rows["sku"] == "MI300X") & (rows["tp"] == 8) & (rows["input_tokens"] == 128)]
    assert 256.0 in set(e8["batch"])


def test_2fp8_offline_rows_are_the_4x_runs_aggregated(dstack405):
    off = pd.read_csv(OFFLINE)
    two = off[off["gpu"].str.contains("2FP8")].set_index(["input_len", "batch_size"])
    four = off[off["gpu"].str.startswith("4x")].set_index(["input_len", "batch_size"])
    # same elapsed time, twice the tokens: not a run of their own
    assert (two["elapsed_time"] == four.loc[two.index, "elapsed_time"]).all()
    assert (two["total_num_tokens"] == 2 * four.loc[two.index, "total_num_tokens"]).all()
    _, refused = dstack405
    assert (refused["reason"] == "'2FP8' offline rows: two 4xMI300X runs aggregated, not a measurement").sum() == len(two)


def test_r1_trtllm_offline_engine_refused():
    off = pd.read_csv(PERF / "dstack_deepseek_r1_h200_mi300x_offline.csv")
    rows, refused = ms.read_dstack_r1()
    assert not ((rows["kind"] == "e2e") & (rows["engine"] == "tensorrt-llm")).any()
    n_trt = int((off["backend"] == "trt-llm").sum())
    assert n_trt == 12 and (refused["reason"] == ms.R1_TRTLLM_BF16_ENGINE).sum() == n_trt
    # the online TensorRT-LLM rows (trtllm-serve, pytorch backend) are kept
    assert ((rows["kind"] == "itl") & (rows["engine"] == "tensorrt-llm")).sum() == 9


def test_rows_carry_the_loaded_weights_and_the_fit_reads_them(dstack405):
    """Every dstack-405b row names the bytes vLLM loaded (Meta's FP8 checkpoint keeps attention and the first and
    last layers in bf16: 8 x 56.7677 GiB = 487.6 GB, not the 405 GB of params x 1 byte), and calibrate.prepare
    builds that row's ModelShape with them; a row without the column keeps the catalog's bytes."""
    from pdfleet import calibrate

    rows, _ = dstack405
    assert rows["weight_bytes"].notna().all()
    h100 = rows[rows["sku"] == "H100-SXM"]
    assert h100["weight_bytes"].unique().tolist() == [pytest.approx(8 * 56.7677 * GIB)]
    amd4 = rows[(rows["sku"] == "MI300X") & (rows["tp"] == 4)]
    assert amd4["weight_bytes"].unique().tolist() == [pytest.approx(4 * 97.4347 * GIB)]
    one = h100[h100["kind"] == "itl"].head(1)
    plain = one.assign(weight_bytes=float("nan"))
    got = calibrate.prepare(pd.concat([one, plain], ignore_index=True), screen=False)[0].model.weight_bytes
    assert float(got[0]) == pytest.approx(8 * 56.7677 * GIB, rel=1e-6)
    assert float(got[1]) == pytest.approx(405e9, rel=1e-6)  # 405 B params at fp8
