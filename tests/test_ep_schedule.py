"""How trtllm-bench's offline runs of the DEPn rows are scheduled (measured_sources.trtllm_bench_settings,
offline_mean_batch: the running batch read_trtllm_ep gives the expert-parallel check), pinned by hand."""

import pytest

from pdfleet import measured_sources as ms


def test_trtllm_bench_settings_by_hand():
    """DeepSeek-R1 NVFP4 on 4 B200 at 1024/1024, FP8 KV: trtllm-bench's heuristic counts an MLA config as 128 KV
    heads of hidden/heads = 56 dims, 2·61·128·56·1 B per token; the checkpoint's elements: 16.55B unrouted + 654.45B
    routed · (1/2 + 1/16); 0.9 of (4·180 GiB − those·0.5 B) holds 291.8 requests of 2048 tokens -> 384 (128s), tokens
    583.7 -> 2048, at least 1024 + 384."""
    from pdfleet import catalog

    models, skus = catalog.load_models(), catalog.load_skus()
    routed = 256 * (671 - 37) / (256 - 8) * 1e9
    elements = 671e9 - routed + routed * (0.5 + 1 / 16)
    per_seq = 2 * 61 * 128 * 56 * 1 * 2048 / 1024**3
    requests = 0.9 * (4 * 180 - elements * 0.5 / 1024**3) / per_seq
    assert 256 < requests < 384
    assert ms.trtllm_bench_settings(models["deepseek-v3"], skus["B200"], 4, "fp4", "fp8", 1024, 1024) == (384, 2048)
    # 8192/1024: requests 4.5x fewer (64.8) -> 96; tokens 96·9 = 864 -> 2048, then at least 8192 + 96
    assert ms.trtllm_bench_settings(models["deepseek-v3"], skus["B200"], 4, "fp4", "fp8", 8192, 1024) == (96, 8288)
    # gpt-oss's MXFP4 is not a quantization the heuristic tunes: BuildConfig's 2048 / 8192 (at least ISL + 2048)
    assert ms.trtllm_bench_settings(models["gpt-oss-120b"], skus["B200"], 2, "", "fp8", 1024, 1024) == (2048, 8192)
    assert ms.trtllm_bench_settings(models["gpt-oss-120b"], skus["B200"], 2, "", "fp8", 32768, 1024) == (2048, 34816)


def test_offline_mean_batch_by_hand():
    # 5 requests, 2 at a time, ISL 4 / OSL 3: three waves of a context iteration and 2 decodes, 15 tokens in 9
    assert ms.offline_mean_batch(5, 2, 10, 4, 3) == (pytest.approx(15 / 9), 9)
    # token budget 9: two contexts of 4 in the first iteration, the third beside their 2 decode tokens in the second
    assert ms.offline_mean_batch(3, 8, 9, 4, 2) == (pytest.approx(6 / 3), 3)
    # a long run skips the idle iterations exactly: 1 request of OSL 1000 is 1000 iterations at batch 1
    assert ms.offline_mean_batch(1, 4, 100, 10, 1000) == (pytest.approx(1.0), 1000)


def test_reader_batch_is_the_runs_mean_batch_on_the_real_file():
    """DeepSeek-R1 on 4 B200 at 1024/1024: 3000 requests, 750 per attention-DP rank, each rank at most
    min(384, its KV capacity) running and 2048 tokens per iteration."""
    from pdfleet import catalog

    models, skus = catalog.load_models(), catalog.load_skus()
    table, _ = ms.read_trtllm_ep()
    r = table[(table["model"] == "deepseek-v3") & (table["sku"] == "B200") & (table["input_tokens"] == 1024)
              & (table["output_tokens"] == 1024)].iloc[0]
    cap = ms.kv_capacity(models["deepseek-v3"], skus["B200"], 1, "fp4", "fp8", 2048, "tensorrt-llm", dp=4) // 4
    assert cap > 384  # the heuristic's batch cap binds, not the KV cache
    mean, iters = ms.offline_mean_batch(750, 384, 2048, 1024, 1024)
    assert r["batch"] == pytest.approx(4 * mean) and iters > 2 * 1024  # two waves and a ramp of one context a step
    assert r["time_s"] == pytest.approx(4 * mean * 1024 / (6430.0 * 4))
