"""Attention priced at the KV cache's precision (roofline.attention_flop_scale) against hand calculations, in the
tensor-parallel decode step and prefill and in the expert-parallel paths."""

import pytest
from jax import enable_x64

from pdfleet import catalog
from pdfleet.perf import roofline
from pdfleet.perf.roofline import Efficiency, Hardware, ModelShape

# gpt-oss-120b's attention (config.json): 36 layers, 64 heads x 64, 8 KV heads; bf16 KV cache.
GPTOSS = dict(
    active_params=5.1e9,
    weight_bytes=60e9,
    kv_bytes_per_token=2 * 36 * 8 * 64 * 2,  # 73,728 B
    layers=36.0,
    hidden_size=2880.0,
    attn_dim=64 * 64.0,
    attn_flops_per_ctx_token=4 * 36 * 64 * 64.0,  # 589,824
)
ONE_GPU = dict(peak_flops=1000e12, hbm_bw=2e12, link_bw=400e9, tp=1.0)
# No overheads, no link: the roofline terms alone.
BARE = Efficiency(eta_compute=0.5, eta_memory=0.8, eta_link=1.0, c_prefill_s=0.0, c_decode_s=0.0, alpha_link_s=0.0)


def test_attention_flop_scale_hand():
    skus = catalog.load_skus()
    eff = BARE._replace(eta_compute_lowp=0.4)
    bf16_kv = ModelShape(**GPTOSS)
    fp8_kv = bf16_kv._replace(kv_low_precision=1.0)
    with enable_x64():
        # fp8 weights (DeepSeek-V3) on H100: GEMMs 1978.9e12·0.4, bf16 attention 989.4e12·0.5 -> 1.6000
        h100 = roofline.hardware_from_sku(skus["H100-SXM"], 8, "fp8")
        assert float(roofline.attention_flop_scale(bf16_kv, h100, eff)) == pytest.approx(1978.9 * 0.4 / (989.4 * 0.5))
        # an fp8 KV cache: attention at the GEMMs' fp8 rate
        assert float(roofline.attention_flop_scale(fp8_kv, h100, eff)) == pytest.approx(1.0)
        # MXFP4 weights (gpt-oss) on B200: fp4 GEMMs 9000e12·0.4 against bf16 attention 2250e12·0.5 -> 3.2
        b200 = roofline.hardware_from_sku(skus["B200"], 2, "fp4")
        assert float(roofline.attention_flop_scale(bf16_kv, b200, eff)) == pytest.approx(9000 * 0.4 / (2250 * 0.5))
        # ... and with an fp8 KV cache, fp8 attention (4500e12·0.4): 2
        assert float(roofline.attention_flop_scale(fp8_kv, b200, eff)) == pytest.approx(2.0)
        # bf16 weights and KV: 1; an fp8 KV cache on an A100 (no fp8 peak) falls back to bf16's rate: 1
        assert float(roofline.attention_flop_scale(bf16_kv, roofline.hardware_from_sku(skus["H100-SXM"], 1), eff)) == 1.0
        a100 = roofline.hardware_from_sku(skus["A100-SXM-80GB"], 1)
        assert float(roofline.attention_flop_scale(fp8_kv, a100, eff)) == 1.0
        # a Hardware without per-precision peaks: 1 (attention at peak_flops, the design's formula)
        assert float(roofline.attention_flop_scale(bf16_kv, Hardware(**ONE_GPU), eff)) == 1.0


def test_decode_and_prefill_attention_priced_at_kv_precision():
    # MLA-like compute-bound step: fp8 GEMMs at 1000e12·0.5, bf16 attention at 500e12·0.5 FLOP/s
    m = ModelShape(active_params=37e9, weight_bytes=1e9, kv_bytes_per_token=1.0, layers=61.0, hidden_size=7168.0,
                   attn_dim=128 * 128.0, attn_flops_per_ctx_token=2 * 61 * 128 * (2 * 512 + 64.0))
    hw = Hardware(**ONE_GPU, low_precision=1.0, peak_flops_bf16=500e12, peak_flops_fp8=1000e12)
    lin = 2 * 37e9 * 256
    att = 256 * 4096 * 2 * 61 * 128 * (2 * 512 + 64)  # 1.7815e13 FLOP
    expected = lin / 500e12 + att / 250e12  # 37.9 ms + 71.3 ms (at the fp8 rate the attention took 35.6 ms)
    assert expected == pytest.approx(0.10915, rel=1e-4)
    L = 8192.0
    f = 2 * 37e9 * L + 2.0 * 2 * 61 * L * L * 128 * 128  # the attention term counted twice: half the rate
    t_c, t_m = f / 500e12, (1e9 + L * 1.0) / 1.6e12
    with enable_x64():
        assert float(roofline.decode_step_s(256.0, 4096.0, m, hw, BARE)) == pytest.approx(expected, rel=1e-12)
        assert float(roofline.prefill_time_s(L, m, hw, BARE)) == pytest.approx(
            float(roofline.prefill_roofline_s(t_c, t_m)), rel=1e-12)
        # an fp8 KV cache: back to the design's formula, attention at the GEMMs' rate
        fp8 = m._replace(kv_low_precision=1.0)
        assert float(roofline.decode_step_s(256.0, 4096.0, fp8, hw, BARE)) == pytest.approx((lin + att) / 500e12,
                                                                                             rel=1e-12)


def test_prefill_attention_flops_hand():
    with enable_x64():
        # 2·layers·b·L²·d_attn = 2·36·3·1024²·4096 = 9.277e11
        got = float(roofline.prefill_attention_flops(1024.0, ModelShape(**GPTOSS), 3))
        assert got == pytest.approx(2 * 36 * 3 * 1024**2 * 4096, rel=1e-12)


def test_ep_paths_match_tensor_parallel_with_attention_price():
    # dp = ep = 1 is the tensor-parallel layout: the attention price enters both alike
    m = ModelShape(**GPTOSS)
    hw = Hardware(**ONE_GPU, low_precision=1.0, peak_flops_bf16=500e12, peak_flops_fp8=1000e12)
    with enable_x64():
        assert float(roofline.attention_flop_scale(m, hw, BARE)) == pytest.approx(2.0)
        for B, ctx in ((8.0, 300.0), (256.0, 9000.0)):
            assert float(roofline.ep_decode_step_s(B, ctx, m, hw, BARE)) == pytest.approx(
                float(roofline.decode_step_s(B, ctx, m, hw, BARE)), rel=1e-12)
        for L in (100.0, 16384.0):
            assert float(roofline.ep_prefill_time_s(L, m, hw, BARE, batch=2)) == pytest.approx(
                float(roofline.prefill_time_s(L, m, hw, BARE, batch=2)), rel=1e-12)


def test_catalog_kv_dtype_reaches_the_shape():
    models, skus = catalog.load_models(), catalog.load_skus()
    assert roofline.model_shape_from_catalog(models["deepseek-v3"]).kv_low_precision == 0.0  # bf16 latent cache
    assert roofline.model_shape_from_catalog(models["gpt-oss-120b"], kv_dtype="fp8").kv_low_precision == 1.0
    hw = roofline.hardware_from_sku(skus["H200-SXM"], 8, "fp8")
    assert (hw.peak_flops_bf16, hw.peak_flops_fp8) == (989.4e12, 1978.9e12)


def test_mla_prefill_attention_width_hand():
    # DeepSeek-V3 prefill, unabsorbed MLA: per (query, key) pair and layer QK 2·128·(128 + 64) + PV 2·128·128
    # = 81,920 FLOP = 4·d_attn with d_attn = 128·(128 + 64/2) = 20,480 (GQA's 4·heads·head_dim would give 65,536)
    models = catalog.load_models()
    ds = roofline.model_shape_from_catalog(models["deepseek-v3"])
    assert ds.attn_dim == 20_480.0
    with enable_x64():
        # L = 4096: 61 layers x 4096²/2 pairs x 81,920 = 4.192e13 FLOP
        got = float(roofline.prefill_attention_flops(4096.0, ds))
        assert got == pytest.approx(61 * 4096**2 / 2 * 81_920, rel=1e-12)
        assert got == pytest.approx(4.1922e13, rel=1e-4)
    # GQA unchanged: heads x head_dim
    assert roofline.model_shape_from_catalog(models["llama-3.1-70b"]).attn_dim == 64 * 128.0
