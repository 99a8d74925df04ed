"""Roofline kernels against hand calculations, invariants, and loop-vs-vmap equality."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import enable_x64  # context manager (jax.experimental.enable_x64 before JAX 0.8)

from pdfleet import catalog
from pdfleet.perf import memory, roofline
from pdfleet.perf.roofline import Efficiency, Hardware, ModelShape

# llama-3.1-70b, bf16, numbers written out (catalog: 70.6 B params, 80 layers, hidden 8192,
# 64 heads × 128, 8 KV heads).
LLAMA70 = dict(
    active_params=70.6e9,
    weight_bytes=70.6e9 * 2,  # 141.2 GB
    kv_bytes_per_token=2 * 80 * 8 * 128 * 2,  # 327,680
    layers=80.0,
    hidden_size=8192.0,
    attn_dim=64 * 128.0,
)
# One H100-SXM: 989.4 dense BF16 TFLOP/s, 3.35 TB/s HBM, NVLink4 450 GB/s per direction.
H100_TP4 = dict(peak_flops=989.4e12, hbm_bw=3.35e12, link_bw=450e9, tp=4.0)
EFF = dict(
    eta_compute=0.5,
    eta_memory=0.8,
    eta_link=0.7,
    c_prefill_s=0.010,
    c_decode_s=0.005,
    alpha_link_s=5e-6,
    c_decode_seq_s=1e-4,
)


def test_decode_step_hand_calculation():
    # B = 32, ctx = 2048.
    t_compute = (2 * 70.6e9 * 32) / (4 * 989.4e12 * 0.5)  # 4.5184e12 FLOP → 2.283 ms
    t_memory = (141.2e9 + 32 * 2048 * 327680) / (4 * 3.35e12 * 0.8)  # 162.67 GB → 15.175 ms
    # 2·80 all-reduces over 4 GPUs: latency 2·log2(4) = 4 steps of α, bandwidth 2·3 ring steps of
    # 32·8192·2 B / (4 · 450e9 · 0.7)
    comm = 2 * 80 * (4 * 5e-6 + (2 * 3) * 32 * 8192 * 2 / (4 * 450e9 * 0.7))  # 3.599 ms
    expected = max(t_compute, t_memory) + comm + 0.005 + 1e-4 * 32  # 26.974 ms
    assert expected == pytest.approx(0.0269744, rel=1e-5)
    with enable_x64():
        got = roofline.decode_step_s(
            32.0, 2048.0, ModelShape(**LLAMA70), Hardware(**H100_TP4), Efficiency(**EFF)
        )
        assert float(got) == pytest.approx(expected, rel=1e-12)
    # float32 default agrees to float32 precision
    got32 = roofline.decode_step_s(32.0, 2048.0, ModelShape(**LLAMA70), Hardware(**H100_TP4), Efficiency(**EFF))
    assert got32.dtype == jnp.float32
    assert float(got32) == pytest.approx(expected, rel=1e-5)


def test_prefill_hand_calculation():
    # One request of L = 2048 tokens.
    flops = 2 * 70.6e9 * 2048 + 2 * 80 * 2048**2 * 8192  # 2.8918e14 + 5.4976e12
    t_compute = flops / (4 * 989.4e12 * 0.5)  # 148.9 ms
    t_memory = (141.2e9 + 2048 * 327680) / (4 * 3.35e12 * 0.8)  # weights + KV written: 13.2 ms
    comm = 2 * 80 * (4 * 5e-6 + (2 * 3) * 2048 * 8192 * 2 / (4 * 450e9 * 0.7))  # 28.77 ms
    # compute/memory combined by the p-norm, p = 1.5 (prefill_roofline_s): 148.9 · (1 + 0.0887^1.5)^(2/3) = 151.5 ms
    expected = (t_compute**1.5 + t_memory**1.5) ** (1 / 1.5) + comm + 0.010
    assert expected == pytest.approx(0.19030, rel=1e-4)
    with enable_x64():
        got = roofline.prefill_time_s(2048.0, ModelShape(**LLAMA70), Hardware(**H100_TP4), Efficiency(**EFF))
        assert float(got) == pytest.approx(expected, rel=1e-12)
        # a batch of 4 requests: 4× the linear and attention FLOPs, weights read once
        flops4 = 4 * flops
        bytes4 = 141.2e9 + 4 * 2048 * 327680
        comm4 = 2 * 80 * (4 * 5e-6 + 6 * 4 * 2048 * 8192 * 2 / (4 * 450e9 * 0.7))
        tc4, tm4 = flops4 / (4 * 989.4e12 * 0.5), bytes4 / (4 * 3.35e12 * 0.8)
        exp4 = (tc4**1.5 + tm4**1.5) ** (1 / 1.5) + comm4 + 0.010
        got4 = roofline.prefill_time_s(2048.0, ModelShape(**LLAMA70), Hardware(**H100_TP4), Efficiency(**EFF), 4.0)
        assert float(got4) == pytest.approx(exp4, rel=1e-12)


def test_prefill_roofline_is_the_p15_norm_by_hand():
    """prefill_roofline_s = (t_c^1.5 + t_m^1.5)^(1/1.5): 2^(2/3) x the max at t_c = t_m, the max when one term is 0,
    symmetric, and a finite gradient where one term is 0."""
    assert roofline.PREFILL_OVERLAP_P == 1.5
    with enable_x64():
        assert float(roofline.prefill_roofline_s(0.010, 0.010)) == pytest.approx(0.010 * 2 ** (2 / 3), rel=1e-12)
        # 8 ms compute, 6 ms memory: (8^1.5 + 6^1.5)^(2/3) = (22.627 + 14.697)^(2/3) = 11.168 ms
        assert float(roofline.prefill_roofline_s(0.008, 0.006)) == pytest.approx(0.0111685, rel=1e-5)
        assert float(roofline.prefill_roofline_s(0.006, 0.008)) == pytest.approx(0.0111685, rel=1e-5)
        assert float(roofline.prefill_roofline_s(0.0, 0.008)) == pytest.approx(0.008, rel=1e-12)
        g = jax.grad(lambda c: roofline.prefill_roofline_s(c, 0.008))(0.0)
        assert np.isfinite(float(g))


def test_catalog_builders_match_hand_numbers():
    m = roofline.model_shape_from_catalog(catalog.load_models()["llama-3.1-70b"])
    for k, v in LLAMA70.items():
        assert float(getattr(m, k)) == pytest.approx(v, rel=1e-12), k
    assert m.expert_bytes == 0.0
    hw = roofline.hardware_from_sku(catalog.load_skus()["H100-SXM"], 4, "bf16")
    for k, v in H100_TP4.items():
        assert float(getattr(hw, k)) == pytest.approx(v, rel=1e-12), k
    hw8 = roofline.hardware_from_sku(catalog.load_skus()["H100-SXM"], 4, "fp8")
    assert hw8.peak_flops == pytest.approx(1978.9e12)
    # A100 has no FP8: falls back to BF16
    assert roofline.hardware_from_sku(catalog.load_skus()["A100-SXM-80GB"], 1, "fp8").peak_flops == 312e12


def test_mesh_links_carry_a_tensor_parallel_group_on_k_minus_1_of_their_links():
    """MI300X's board links every pair of its 8 GPUs by one 64 GB/s link (link_topology mesh): a TP group of k GPUs
    all-reduces over k - 1 of them; NVSwitch parts (H100) reach any peers at the full link."""
    skus = catalog.load_skus()
    mi, h100 = skus["MI300X"], skus["H100-SXM"]
    assert mi["link_topology"] == "mesh" and mi["link_gbps"] == 448 and mi["gpus_per_node"] == 8
    for tp, gbs in ((1, 448.0), (2, 64.0), (4, 192.0), (8, 448.0)):
        assert float(roofline.hardware_from_sku(mi, tp).link_bw) == pytest.approx(gbs * 1e9, rel=1e-12), tp
        assert float(roofline.hardware_from_sku(h100, tp).link_bw) == pytest.approx(450e9, rel=1e-12), tp
    # the all-reduce of a TP2 decode step of 64 sequences: bandwidth term 7x the switch's at the same link_gbps
    m = roofline.model_shape_from_catalog(catalog.load_models()["llama-3.1-70b"], tp=2)
    eff = roofline.Efficiency(*([1.0] * 3 + [0.0] * (len(roofline.Efficiency._fields) - 3)))  # alpha 0: bandwidth only
    mesh = float(roofline.allreduce_time_s(64.0, m, roofline.hardware_from_sku(mi, 2), eff))
    switch = float(roofline.allreduce_time_s(64.0, m, roofline.hardware_from_sku(dict(mi, link_topology="switch"), 2),
                                             eff))
    # by hand: 2 layers-worth per layer x 80 layers x 2(2-1)/2 x 64 x 8192 x 2 bytes / 64e9 B/s
    assert mesh == pytest.approx(2 * 80 * 1.0 * 64 * 8192 * 2 / 64e9, rel=1e-5)
    assert mesh == pytest.approx(7 * switch, rel=1e-5)


def test_moe_split_and_touched_bytes():
    mix = roofline.model_shape_from_catalog(catalog.load_models()["mixtral-8x7b"])
    # one expert e = (46.7 − 12.9)/(8 − 2) B params; 8 experts in bf16
    assert mix.expert_bytes == pytest.approx(memory.weight_bytes(8 * (46.7 - 12.9) / 6, 2.0))
    with enable_x64():
        w1 = float(roofline.weight_bytes_touched(1.0, mix))
        dense = mix.weight_bytes - mix.expert_bytes
        # one token touches k/E = 2/8 of the routed experts
        assert w1 == pytest.approx(dense + mix.expert_bytes * 2 / 8, rel=1e-12)
        w = np.asarray(jax.vmap(lambda t: roofline.weight_bytes_touched(t, mix))(jnp.arange(1.0, 200.0)))
        assert np.all(np.diff(w) >= 0)
        assert w[-1] == pytest.approx(mix.weight_bytes, rel=1e-9)
    # dense models read all weights whatever the batch
    dense_m = ModelShape(**LLAMA70)
    assert float(roofline.weight_bytes_touched(3.0, dense_m)) == pytest.approx(141.2e9, rel=1e-6)


def test_tp1_has_zero_comm():
    hw1 = Hardware(**dict(H100_TP4, tp=1.0))
    m, e = ModelShape(**LLAMA70), Efficiency(**EFF)
    assert float(roofline.allreduce_time_s(4096.0, m, hw1, e)) == 0.0
    with enable_x64():
        got = roofline.decode_step_s(8.0, 1000.0, m, hw1, e)
        mem = (141.2e9 + 8 * 1000 * 327680) / (3.35e12 * 0.8)
        assert float(got) == pytest.approx(mem + 0.005 + 8e-4, rel=1e-12)
    assert float(roofline.allreduce_time_s(4096.0, m, Hardware(**H100_TP4), e)) > 0.0


def test_monotone_in_batch_context_and_length():
    m, hw, e = ModelShape(**LLAMA70), Hardware(**H100_TP4), Efficiency(**EFF)
    B = jnp.arange(1.0, 513.0)
    ctx = jnp.linspace(1.0, 131072.0, 300)
    L = jnp.linspace(1.0, 32768.0, 300)
    dec_b = jax.vmap(lambda b: roofline.decode_step_s(b, 2048.0, m, hw, e))(B)
    dec_c = jax.vmap(lambda c: roofline.decode_step_s(16.0, c, m, hw, e))(ctx)
    pre_l = jax.vmap(lambda l: roofline.prefill_time_s(l, m, hw, e))(L)
    pre_b = jax.vmap(lambda b: roofline.prefill_time_s(512.0, m, hw, e, b))(B)
    for arr in (dec_b, dec_c, pre_l, pre_b):
        assert np.all(np.diff(np.asarray(arr)) >= 0)
    # and fewer GPUs are never faster on the memory-bound decode
    tps = jnp.array([1.0, 2.0, 4.0, 8.0])
    dec_tp = jax.vmap(lambda t: roofline.decode_step_s(1.0, 2048.0, m, hw._replace(tp=t), e._replace(alpha_link_s=0.0)))(tps)
    assert np.all(np.diff(np.asarray(dec_tp)) <= 0)


def test_max_batch_memory():
    with enable_x64():
        m = ModelShape(**LLAMA70)
        got = roofline.max_batch_memory(4096.0, m, 4 * 80 * memory.GIB, 0.9)
        # (0.9 · 320 GiB − 141.2 GB) / (327,680 B · 4096) = 125.198 → 125
        assert float(got) == 125.0
        assert (0.9 * 4 * 80 * 1024**3 - 141.2e9) / (327680 * 4096) == pytest.approx(125.198, abs=1e-3)
        # one H100 cannot hold the weights: ≤ 0 means infeasible
        assert float(roofline.max_batch_memory(4096.0, m, 80 * memory.GIB, 0.9)) <= 0


def _random_candidates(n, seed=0):
    rng = np.random.default_rng(seed)
    u = lambda lo, hi: rng.uniform(lo, hi, n).astype(np.float32)
    model = ModelShape(
        active_params=u(1e9, 1e11),
        weight_bytes=u(2e9, 4e11),
        kv_bytes_per_token=u(3e4, 1e6),
        layers=rng.integers(16, 128, n).astype(np.float32),
        hidden_size=u(2048, 16384),
        attn_dim=u(2048, 16384),
        expert_bytes=np.where(rng.random(n) < 0.5, 0.0, u(1e9, 1e11)).astype(np.float32),
        experts=rng.integers(1, 256, n).astype(np.float32),
        experts_per_token=rng.integers(1, 8, n).astype(np.float32),
        act_bytes=np.full(n, 2.0, np.float32),
        attn_flops_per_ctx_token=u(0, 2e7),
        routed_active_params=u(0, 5e8),
        moe_layers=rng.integers(0, 128, n).astype(np.float32),
    )
    hw = Hardware(u(1e14, 2e15), u(1e12, 8e12), u(3e10, 9e11), rng.choice([1.0, 2.0, 4.0, 8.0], n).astype(np.float32),
                  (rng.random(n) < 0.5).astype(np.float32))
    eff = Efficiency(u(0.2, 1), u(0.2, 1), u(0.2, 1), u(0, 0.05), u(0, 0.02), u(0, 2e-5), u(0, 1e-3), u(0, 5e-5), u(0, 1),
                     u(0, 1), u(0, 1), u(0, 5e-4))
    # attention precision (attention_flop_scale) from its own stream, so the draws above and the caller's are unchanged
    r2 = np.random.default_rng(seed + 1000)
    bf16 = r2.uniform(1e14, 1e15, n).astype(np.float32)
    model = model._replace(kv_low_precision=(r2.random(n) < 0.5).astype(np.float32))
    hw = hw._replace(peak_flops_bf16=bf16, peak_flops_fp8=bf16 * r2.choice([1.0, 2.0], n).astype(np.float32))
    return model, hw, eff, rng


def test_loop_equals_vmap():
    n = 64
    model, hw, eff, rng = _random_candidates(n)
    L = rng.uniform(1, 8192, n).astype(np.float32)
    b = rng.integers(1, 64, n).astype(np.float32)
    ctx = rng.uniform(1, 32768, n).astype(np.float32)
    mem = rng.uniform(8e10, 2e12, n).astype(np.float32)
    usable = np.full(n, 0.9, np.float32)
    pick = lambda tree, i: jax.tree.map(lambda a: a[i], tree)
    pre_v = roofline.prefill_time_s_batched(L, model, hw, eff, b)
    dec_v = roofline.decode_step_s_batched(b, ctx, model, hw, eff)
    mb_v = roofline.max_batch_memory_batched(ctx, model, mem, usable)
    e2e_v = roofline.e2e_latency_s_batched(b, L, L, model, hw, eff)
    for i in range(n):
        m_i, h_i, e_i = pick(model, i), pick(hw, i), pick(eff, i)
        assert float(pre_v[i]) == pytest.approx(float(roofline.prefill_time_s(L[i], m_i, h_i, e_i, b[i])), rel=1e-6)
        assert float(dec_v[i]) == pytest.approx(float(roofline.decode_step_s(b[i], ctx[i], m_i, h_i, e_i)), rel=1e-6)
        assert float(mb_v[i]) == float(roofline.max_batch_memory(ctx[i], m_i, mem[i], usable[i]))
        assert float(e2e_v[i]) == pytest.approx(float(roofline.e2e_latency_s(b[i], L[i], L[i], m_i, h_i, e_i)), rel=1e-6)


def test_no_recompilation_on_second_call():
    model, hw, eff, rng = _random_candidates(16, seed=1)
    b = np.ones(16, np.float32)
    ctx = np.full(16, 1000.0, np.float32)
    roofline.decode_step_s_batched(b, ctx, model, hw, eff).block_until_ready()
    size = roofline.decode_step_s_batched._cache_size()
    roofline.decode_step_s_batched(b * 2, ctx * 3, model, hw, eff).block_until_ready()
    assert roofline.decode_step_s_batched._cache_size() == size


def test_gradients_finite_and_match_finite_differences():
    m, hw = ModelShape(**LLAMA70), Hardware(**H100_TP4)
    with enable_x64():
        f = lambda eta_m: roofline.decode_step_s(32.0, 2048.0, m, hw, Efficiency(**dict(EFF, eta_memory=eta_m)))
        g = float(jax.grad(f)(0.8))
        h = 1e-6
        fd = (float(f(0.8 + h)) - float(f(0.8 - h))) / (2 * h)
        assert np.isfinite(g) and g == pytest.approx(fd, rel=1e-5)
        # memory-bound: d t / d η_m = −t_memory / η_m
        assert g == pytest.approx(-(141.2e9 + 32 * 2048 * 327680) / (4 * 3.35e12 * 0.8) / 0.8, rel=1e-9)


# --- issue #8 physics terms, each against a hand calculation ---------------------------------


def test_decode_attention_flops_gqa_and_mla_by_hand():
    models = catalog.load_models()
    llama = roofline.model_shape_from_catalog(models["llama-3.1-70b"])
    # GQA: QK^T and AV, 2·heads·head_dim FLOPs each, per context token, per layer
    assert llama.attn_flops_per_ctx_token == 4 * 80 * 64 * 128  # 2,621,440
    ds = roofline.model_shape_from_catalog(models["deepseek-v3"], tp=8)
    # MLA absorbed: scores over latent 512 + rope 64, values from the 512 latent, 128 heads, 61 layers
    assert ds.attn_flops_per_ctx_token == 2 * 61 * 128 * (2 * 512 + 64)  # 16,990,208
    # at B = 1, ctx = 4096: 69.6 GFLOP of attention beside 2 × 37e9 = 74 GFLOP of weights
    assert float(roofline.decode_attention_flops(1.0, 4096.0, ds)) == pytest.approx(16990208 * 4096)
    # MLA KV read per step: the 576-element bf16 latent per layer, held and read by each of the 8 ranks
    assert ds.kv_bytes_per_token == 61 * (512 + 64) * 2 * 8


def test_decode_step_with_attention_flops_and_layer_overhead():
    shape = ModelShape(**LLAMA70, attn_flops_per_ctx_token=4 * 80 * 64 * 128.0)
    eff = Efficiency(**EFF, c_layer_s=2e-5)
    B, ctx = 256.0, 4096.0
    flops = 2 * 70.6e9 * B + B * ctx * 4 * 80 * 64 * 128  # 3.615e13 + 2.749e12
    t_compute = flops / (4 * 989.4e12 * 0.5)  # 19.66 ms
    t_memory = (141.2e9 + B * ctx * 327680) / (4 * 3.35e12 * 0.8)  # 113.3 ms (memory-bound still)
    comm = 2 * 80 * (4 * 5e-6 + 6 * B * 8192 * 2 / (4 * 450e9 * 0.7))  # latency 2·log2(4) α, ring bandwidth
    expected = max(t_compute, t_memory) + comm + 0.005 + 1e-4 * B + 2e-5 * 80
    with enable_x64():
        got = roofline.decode_step_s(B, ctx, shape, Hardware(**H100_TP4), eff)
        assert float(got) == pytest.approx(expected, rel=1e-12)
        # compute-bound case: tiny HBM time, so the attention FLOPs show up in full
        fast_mem = Hardware(**dict(H100_TP4, hbm_bw=1e18))
        got_c = roofline.decode_step_s(B, ctx, shape, fast_mem, eff)
        assert float(got_c) == pytest.approx(t_compute + comm + 0.005 + 1e-4 * B + 2e-5 * 80, rel=1e-12)
        # the per-layer overhead also enters the prefill: c_layer · layers
        base = roofline.prefill_time_s(2048.0, shape, Hardware(**H100_TP4), Efficiency(**EFF))
        with_l = roofline.prefill_time_s(2048.0, shape, Hardware(**H100_TP4), eff)
        assert float(with_l - base) == pytest.approx(2e-5 * 80, rel=1e-9)


def test_precision_peaks_and_bytes_by_hand():
    skus, models = catalog.load_skus(), catalog.load_models()
    # dense datasheet peaks: H100 fp8 1978.9, B200 fp4 9000 TFLOP/s; fp4 on Hopper falls back to fp8
    assert roofline.hardware_from_sku(skus["H100-SXM"], 1, "fp8").peak_flops == pytest.approx(1978.9e12)
    assert roofline.hardware_from_sku(skus["B200"], 1, "fp4").peak_flops == pytest.approx(9000e12)
    assert roofline.hardware_from_sku(skus["H100-SXM"], 1, "fp4").peak_flops == pytest.approx(1978.9e12)
    assert roofline.compute_precision("fp4") == "fp4" and roofline.compute_precision("bf16") == "bf16"
    # the bytes a precision implies: 70.6e9 params × 1 B (fp8), × 0.5 B (fp4); fp8 KV halves the bf16 KV
    m = models["llama-3.3-70b"]
    assert roofline.model_shape_from_catalog(m, weight_dtype="fp8").weight_bytes == pytest.approx(70.6e9)
    assert roofline.model_shape_from_catalog(m, weight_dtype="fp4").weight_bytes == pytest.approx(35.3e9)
    assert roofline.model_shape_from_catalog(m, kv_dtype="fp8").kv_bytes_per_token == 2 * 80 * 8 * 128 * 1


def test_decode_attention_as_its_own_kernel_by_hand():
    """η_attn > 0: linear layers and attention each on their own roofline, summed."""
    shape = ModelShape(**LLAMA70, attn_flops_per_ctx_token=4 * 80 * 64 * 128.0)
    eff = Efficiency(**EFF, c_layer_s=2e-5, eta_attn=0.4)
    B, ctx = 64.0, 8192.0
    lin = max(2 * 70.6e9 * B / (4 * 989.4e12 * 0.5), 141.2e9 / (4 * 3.35e12 * 0.8))  # weights: 13.17 ms
    att = max(B * ctx * 4 * 80 * 64 * 128 / (4 * 989.4e12 * 0.5),  # 0.69 ms of attention FLOPs
              B * ctx * 327680 / (4 * 3.35e12 * 0.4))  # 32.05 ms of KV read at 40 % of HBM bandwidth
    comm = 2 * 80 * (4 * 5e-6 + 6 * B * 8192 * 2 / (4 * 450e9 * 0.7))  # latency 2·log2(4) α, ring bandwidth
    expected = lin + att + comm + 0.005 + 1e-4 * B + 2e-5 * 80
    with enable_x64():
        got = roofline.decode_step_s(B, ctx, shape, Hardware(**H100_TP4), eff)
        assert float(got) == pytest.approx(expected, rel=1e-12)
        # never below the single roofline at the same η (max(a + b, c + d) <= max(a, c) + max(b, d))
        one = roofline.decode_step_s(B, ctx, shape, Hardware(**H100_TP4), eff._replace(eta_attn=0.0, eta_memory=0.8))
        assert float(one) <= float(got)


def test_low_precision_compute_efficiency_hand_calculation():
    """fp8 weights on H100: the fp8 peak (1978.9 TFLOP/s) and eta_compute_lowp; bf16 keeps eta_compute; an
    unset eta_compute_lowp (0) gives the single-efficiency roofline back."""
    skus = catalog.load_skus()
    model = catalog.load_models()["llama-3.1-70b"]
    m8 = roofline.model_shape_from_catalog(model, weight_dtype="fp8", tp=4)
    hw8 = roofline.hardware_from_sku(skus["H100-SXM"], 4, "fp8")
    hw16 = roofline.hardware_from_sku(skus["H100-SXM"], 4, "bf16")
    assert float(hw8.low_precision) == 1.0 and float(hw16.low_precision) == 0.0
    # A100 lacks fp8: its fp8 query falls back to the bf16 peak, which is not a low-precision peak
    assert float(roofline.hardware_from_sku(skus["A100-SXM-80GB"], 1, "fp8").low_precision) == 0.0
    eff = Efficiency(0.6, 0.8, 0.7, 0.0, 0.0, eta_compute_lowp=0.4)
    assert float(roofline.compute_efficiency(hw8, eff)) == pytest.approx(0.4)
    assert float(roofline.compute_efficiency(hw16, eff)) == pytest.approx(0.6)
    assert float(roofline.compute_efficiency(hw8, eff._replace(eta_compute_lowp=0.0))) == pytest.approx(0.6)
    # prefill of 8192 tokens, compute-bound: F = 2·70.6e9·8192 + s_a·2·80·8192²·8192 FLOP, the attention
    # (bf16 KV cache) at the bf16 peak and eta_compute: s_a = 1978.9·0.4 / (989.4·0.6) = 1.3334
    # (roofline.attention_flop_scale; tests/test_attention.py)
    L = 8192.0
    flops = 2 * 70.6e9 * L + (1978.9 * 0.4 / (989.4 * 0.6)) * 2 * 80 * L * L * 8192
    t_compute = flops / (4 * 1978.9e12 * 0.4)  # 0.40237 s
    t_memory = (70.6e9 + L * 327680) / (4 * 3.35e12 * 0.8)  # fp8 weights + bf16 KV written: 6.84 ms
    comm = 2 * 80 * (2 * 3) * (L * 8192 * 2 / (4 * 450e9 * 0.7))  # α = 0: 0.10226 s
    expected = (t_compute**1.5 + t_memory**1.5) ** (1 / 1.5) + comm  # the p-norm adds 0.15 % to t_compute
    assert expected == pytest.approx(0.505224, rel=1e-5)
    with enable_x64():
        got = float(roofline.prefill_time_s(L, m8, hw8, eff))
    assert got == pytest.approx(expected, rel=1e-9)


def test_allreduce_latency_is_log2_tp_by_hand():
    """Latency 2·log2(tp)·α (Rabenseifner / recursive doubling), bandwidth 2(tp−1)/tp·n/(link·η): 70B, 1 token."""
    m = ModelShape(**LLAMA70)
    e = Efficiency(**EFF)
    with enable_x64():
        for tp, hops in ((1, 0.0), (2, 2.0), (4, 4.0), (8, 6.0)):
            hw = Hardware(**dict(H100_TP4, tp=float(tp)))
            size = 8192 * 2.0  # one token's hidden state in bf16
            bw = 2 * (tp - 1) / tp * size / (450e9 * 0.7)
            expected = 2 * 80 * (hops * 5e-6 + bw)  # tp = 8: 160 · (30 µs + 0.09 µs) = 4.81 ms
            assert float(roofline.allreduce_time_s(1.0, m, hw, e)) == pytest.approx(expected, rel=1e-12)
        # a ring would charge TP8 2·7 = 14 latency steps; this charges 6
        hw8 = Hardware(**dict(H100_TP4, tp=8.0))
        lat8 = float(roofline.allreduce_time_s(1.0, m, hw8, e)) - float(
            roofline.allreduce_time_s(1.0, m, hw8, e._replace(alpha_link_s=0.0)))
        assert lat8 == pytest.approx(2 * 80 * 6 * 5e-6, rel=1e-9)


def test_online_itl_charges_the_share_of_prefills_by_hand():
    # n >= b: one batch of b prefills per L_out steps (= e2e_latency_s / L_out); n < 1 (engine idle part of the
    # time): only n prefills of one request per L_out tokens, never the request's own.
    m, hw, eff = ModelShape(**LLAMA70), Hardware(**H100_TP4), Efficiency(**EFF)
    with enable_x64():
        step = float(roofline.decode_step_s(1.0, 467.0 + 8.0, m, hw, eff))
        pre = float(roofline.prefill_time_s(467.0, m, hw, eff, 1.0))
        busy = float(roofline.online_itl_s(1.0, 467.0, 16.0, m, hw, eff))
        idle = float(roofline.online_itl_s(1.0, 467.0, 16.0, m, hw, eff, 0.22))
        assert busy == pytest.approx(float(roofline.e2e_latency_s(1.0, 467.0, 16.0, m, hw, eff)) / 16.0, rel=1e-12)
        assert busy == pytest.approx(step + pre / 16.0, rel=1e-12)
        assert idle == pytest.approx(step + 0.22 * pre / 16.0, rel=1e-12)
        # a concurrency above the running batch (a clipped Little's-law value) charges no more than one batch
        b8 = float(roofline.online_itl_s(8.0, 467.0, 16.0, m, hw, eff, 12.0))
        assert b8 == pytest.approx(float(roofline.online_itl_s(8.0, 467.0, 16.0, m, hw, eff)), rel=1e-12)


def _deepseek(tp):
    return roofline.model_shape_from_catalog(catalog.load_models()["deepseek-v3"], tp=tp)


def _h200(gpus):
    return roofline.hardware_from_sku(catalog.load_skus()["H200-SXM"], gpus, "fp8")


@pytest.mark.parametrize("eta_attn", [0.0, 0.6])
def test_expert_parallel_without_dp_or_ep_is_the_tensor_parallel_roofline(eta_attn):
    eff = Efficiency(0.6, 0.75, 0.6, 0.01, 0.003, 1.5e-5, 2e-5, 1e-5, eta_attn, 0.55)
    for shape, hw in ((_deepseek(8), _h200(8)), (ModelShape(**LLAMA70), Hardware(**H100_TP4))):
        with enable_x64():
            for B, ctx in ((1.0, 100.0), (64.0, 4000.0), (512.0, 9000.0)):
                assert float(roofline.ep_decode_step_s(B, ctx, shape, hw, eff)) == pytest.approx(
                    float(roofline.decode_step_s(B, ctx, shape, hw, eff)), rel=1e-12)
            for L, b in ((128.0, 1.0), (3200.0, 4.0)):
                assert float(roofline.ep_prefill_time_s(L, shape, hw, eff, batch=b)) == pytest.approx(
                    float(roofline.prefill_time_s(L, shape, hw, eff, b)), rel=1e-12)


def test_expert_parallel_decode_step_hand_calculation():
    # DeepSeek-V3 (fp8: 1 byte per parameter) on 8 x H200 as 8 attention groups of 1 GPU, experts EP8, B = 64 at
    # ctx 4096. Catalog: 671 B params, 37 B active, 256 routed experts, k = 8, 61 layers, hidden 7168, 128 heads,
    # MLA latent 512 + rope 64 in bf16.
    e = (671e9 - 37e9) / (256 - 8)  # one routed expert: 2.5565 B parameters
    expert_bytes, routed = 256 * e, 8 * e  # 654.5 GB; 20.45 B routed parameters per token
    dense_bytes = 671e9 - expert_bytes  # 16.55 GB: attention, shared experts, embeddings
    kv = 61 * (512 + 64) * 2  # 70,272 B per token; tp 1 per group: no replication
    att = 2 * 61 * 128 * (2 * 512 + 64)  # MLA absorbed: 16.99 MFLOP per query token per context token
    B, ctx, G = 64.0, 4096.0, 8.0
    eff = Efficiency(0.6, 0.75, 0.6, 0.01, 0.003, 1.5e-5, 2e-5, 1e-5, 0.0, 0.55)
    lin = (2 * (37e9 - routed) * B + 2 * routed * B) / G  # every GPU: its 8 tokens' dense part, 1/8 of all expert work
    flops = lin + B * ctx * att / G
    touched = expert_bytes * (1 - (1 - 8 / 256) ** 64)  # 86 % of the experts are read at B = 64
    bytes_ = dense_bytes / 1 + touched / G + B * ctx * kv / G
    t = max(flops / (1978.9e12 * 0.55), bytes_ / (4.8e12 * 0.75))  # one GPU's fp8 peak and HBM
    volume = (B / G) * 8 * 7168 * 2 * (G - 1) / G  # dispatch (and again combine) per GPU per layer
    a2a = 61 * 2 * (1.5e-5 + volume / (450e9 * 0.6))
    # attention tp 1: no all-reduce; the per-sequence cost is one attention group's 64 / 8 sequences
    expected = t + 0.0 + a2a + 1e-5 * 61 + 0.003 + 2e-5 * 64 / 8
    with enable_x64():
        got = roofline.ep_decode_step_s(B, ctx, _deepseek(1), _h200(8), eff, dp=8.0, ep=8.0)
        assert float(got) == pytest.approx(expected, rel=1e-6)
        # 31.0 ms: HBM 25.0 ms (16.5 GB dense + 71.1 GB experts + 2.3 GB KV per GPU), all-to-all 2.2 ms
        assert expected == pytest.approx(0.03094, rel=1e-3)
        # the same GPUs as TP8 (experts tensor-parallel): every rank reads the MLA latent of all 64 sequences
        tp8 = float(roofline.decode_step_s(B, ctx, _deepseek(8), _h200(8), eff))
        assert tp8 > float(got)
    # no all-to-all at ep = 1
    assert float(roofline.alltoall_time_s(8.0, _deepseek(1), _h200(8), eff, 1.0)) == 0.0


def test_routed_experts_read_at_their_own_bandwidth_by_hand():
    # Mixtral-8x7B bf16 on one H100, B = 4 at ctx 1000, η_m 0.8 for dense weights and KV, η_e 0.4 for experts.
    mix = roofline.model_shape_from_catalog(catalog.load_models()["mixtral-8x7b"])
    hw = roofline.hardware_from_sku(catalog.load_skus()["H100-SXM"], 1, "bf16")
    dense = float(mix.weight_bytes - mix.expert_bytes)
    experts = float(mix.expert_bytes) * (1 - (1 - 2 / 8) ** 4)  # 68 % of the experts touched by 4 tokens
    kv = 4 * 1000 * float(mix.kv_bytes_per_token)
    eff = Efficiency(0.5, 0.8, 0.7, 0.0, 0.004, 0.0, eta_expert=0.4)
    expected = (dense + kv) / (3.35e12 * 0.8) + experts / (3.35e12 * 0.4) + 0.004  # memory-bound at B = 4
    with enable_x64():
        assert float(roofline.decode_step_s(4.0, 1000.0, mix, hw, eff)) == pytest.approx(expected, rel=1e-9)
        # unset (0): the experts are read at η_m, the design's single roofline
        plain = (dense + experts + kv) / (3.35e12 * 0.8) + 0.004
        assert float(roofline.decode_step_s(4.0, 1000.0, mix, hw, eff._replace(eta_expert=0.0))) == pytest.approx(
            plain, rel=1e-9)
        # a dense model ignores it
        llama, h = ModelShape(**LLAMA70), Hardware(**H100_TP4)
        base = Efficiency(**EFF)
        assert float(roofline.decode_step_s(8.0, 500.0, llama, h, base._replace(eta_expert=0.2))) == pytest.approx(
            float(roofline.decode_step_s(8.0, 500.0, llama, h, base)), rel=1e-12)


def test_moe_layer_overhead_by_hand():
    # Mixtral-8x7B (32 layers, all MoE) on one H100: c_moe = 0.2 ms per MoE layer adds 32 x 0.2 ms = 6.4 ms to a decode
    # step and to a prefill; c_layer 20 µs adds 32 x 20 µs to both; a dense model pays c_layer only.
    models, skus = catalog.load_models(), catalog.load_skus()
    mix = roofline.model_shape_from_catalog(models["mixtral-8x7b"])
    llama = roofline.model_shape_from_catalog(models["llama-3.1-8b"])
    assert float(mix.moe_layers) == 32.0 and float(llama.moe_layers) == 0.0
    hw = roofline.hardware_from_sku(skus["H100-SXM"], 1, "bf16")
    base = Efficiency(0.5, 0.8, 0.7, 0.01, 0.004, 0.0, c_layer_s=2e-5)
    eff = base._replace(c_moe_layer_s=2e-4)
    with enable_x64():
        assert float(roofline.layer_overhead_s(mix, eff)) == pytest.approx(32 * 2e-5 + 32 * 2e-4, rel=1e-12)
        assert float(roofline.decode_step_s(4.0, 1000.0, mix, hw, eff) - roofline.decode_step_s(4.0, 1000.0, mix, hw, base)
                     ) == pytest.approx(32 * 2e-4, rel=1e-9)
        assert float(roofline.prefill_time_s(512.0, mix, hw, eff) - roofline.prefill_time_s(512.0, mix, hw, base)
                     ) == pytest.approx(32 * 2e-4, rel=1e-9)
        assert float(roofline.decode_step_s(4.0, 1000.0, llama, hw, eff)) == pytest.approx(
            float(roofline.decode_step_s(4.0, 1000.0, llama, hw, base)), rel=1e-12)
