"""How offline trtllm-bench runs of the DEPn rows are scheduled: attention-DP ranks that start their context phases
on their own stall the others (roofline.adp_context_stall_s, TensorRT-LLM's ADP Balance blog), pinned by hand."""

import math

import pytest

from pdfleet import measured_sources as ms, predicted
from pdfleet.perf import roofline

SHAPE = roofline.ModelShape(active_params=10e9, weight_bytes=40e9, kv_bytes_per_token=1e5, layers=10.0,
                            hidden_size=4096.0, attn_dim=4096.0, expert_bytes=30e9, experts=8.0,
                            experts_per_token=2.0, routed_active_params=6e9, moe_layers=10.0)
HW = roofline.Hardware(peak_flops=1e15, hbm_bw=4e12, link_bw=4e11, tp=4.0)
EFF = roofline.Efficiency(0.5, 0.8, 0.7, 0.01, 0.005)


def test_adp_context_stall_by_hand():
    """8 requests of 1000 tokens on DP4/EP4: per GPU F_a = (2·(10 − 6)e9·8000 + 2·10·8·1000²·4096) / 4 FLOP,
    Q_a = 10e9 B of dense weights (tp_a = 1) + 8000·1e5 / 4 B of KV; t_a their 1.5-norm at 0.5 PFLOP/s and 3.2 TB/s,
    and the three other ranks' contexts run after it: 3·t_a."""
    t_c = (2 * 4e9 * 8000 + 2 * 10 * 8 * 1000**2 * 4096) / 4 / (1e15 * 0.5)
    t_m = (10e9 + 8000 * 1e5 / 4) / (4e12 * 0.8)
    t_a = (t_c**1.5 + t_m**1.5) ** (1 / 1.5)
    assert float(roofline.adp_context_stall_s(1000.0, SHAPE, HW, EFF, 4.0, 8.0)) == pytest.approx(3 * t_a, rel=1e-5)
    # DP2 groups of tp_a = 2: half the dense weights per GPU, one other rank waits
    t_m2 = (10e9 / 2 + 8000 * 1e5 / 4) / (4e12 * 0.8)
    t_a2 = (t_c**1.5 + t_m2**1.5) ** (1 / 1.5)
    assert float(roofline.adp_context_stall_s(1000.0, SHAPE, HW, EFF, 2.0, 8.0)) == pytest.approx(t_a2, rel=1e-5)
    assert float(roofline.adp_context_stall_s(1000.0, SHAPE, HW, EFF, 1.0, 8.0)) == 0.0


def test_offline_batch_charges_the_stall_only_without_adp_balance():
    args = (8.0, 1000.0, 500.0, SHAPE, HW, EFF, 4.0, 4.0)
    balanced = float(predicted.ep_offline_batch_s(*args))
    unbalanced = float(predicted.ep_offline_batch_s(*args, adp_balance=0.0))
    assert balanced == float(predicted.ep_offline_batch_s(*args, adp_balance=1.0))
    stall = float(roofline.adp_context_stall_s(1000.0, SHAPE, HW, EFF, 4.0, 8.0))
    assert unbalanced - balanced == pytest.approx(stall, rel=1e-4) and stall > 0
    assert balanced == pytest.approx(float(roofline.ep_prefill_time_s(1000.0, SHAPE, HW, EFF, 4.0, 4.0, 8.0))
                                     + 500.0 * float(roofline.ep_decode_step_s(8.0, 1250.0, SHAPE, HW, EFF, 4.0, 4.0)),
                                     rel=1e-5)


def test_reader_marks_the_rows_run_with_adp_balance():
    """The page's DeepSeek R1 llm_options set attention_dp_config enable_balance; Qwen3 MoE and GPT-OSS do not."""
    table, _ = ms.read_trtllm_ep()
    assert set(table["model"]) == {"deepseek-v3", "gpt-oss-120b", "qwen3-235b-a22b"}
    assert (table["adp_balance"] == (table["model"] == "deepseek-v3").astype(float)).all()
    assert math.isclose(table["adp_balance"].sum(), (table["model"] == "deepseek-v3").sum())


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
