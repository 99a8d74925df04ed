"""Roofline service times of one prefill or decode instance: the one place these formulas live.

Every kernel here is written for ONE candidate (scalars in, scalar out), is pure `jax.numpy`
and jit-friendly (no Python branching on values, no exceptions). `over_candidates` at the bottom
is the single place where they are vmapped over a leading candidate axis.

Units: seconds, bytes, FLOP, FLOP/s, bytes/s. Byte sizes of weights and KV cache are computed
by `pdfleet.perf.memory` (the builders at the end call it); the kernels only receive them.

Formulas (DESIGN.md, "Roofline"):
  prefill(L, b)   = ‖F_p / (tp·peak·η_c), Q_p / (tp·bw·η_m)‖_1.5 + comm(b·L) + c0   (prefill_roofline_s)
      F_p = 2·N_active·b·L + s_a·2·layers·b·L²·d_attn  (causal attention, QK and AV halved)
      Q_p = W(b·L) + b·L·kv                            (weights read once + KV written)
  decode(B, ctx)  = max((2·N_active·B + s_a·A) / (tp·peak·η_c), (W(B) + B·ctx·kv) / (tp·bw·η_m))
                    + comm(B) + c1 + c_seq·B          (A: decode_attention_flops)
  s_a             = attention FLOPs in GEMM-rate-equivalent FLOPs: attention runs at the KV cache's precision,
                    not the weights' (attention_flop_scale; 1 when the two agree)
  comm(T)         = 2·layers all-reduces of T·hidden·act_bytes, each (α–β model: Thakur,
                    Rabenseifner & Gropp 2005; Patarasuk & Yuan 2009; allreduce_time_s)
                    2·log2(tp)·α + 2(tp−1)/tp · size / (link_bw·η_link);  0 at tp = 1.
  W(T)            = bytes of weights one forward pass over T tokens reads (MoE: the experts
                    touched, `weight_bytes_touched`), the routed experts' share counted at their own
                    bandwidth efficiency η_e where one is fitted (`weight_read_bytes`, issue #8 rounds 4-5).
Two terms are pdfleet additions to DESIGN.md's formulas, both forced by measurements
(Splitwise, llama-2-70b; see scripts/validate_roofline.py):
  - α, the latency of one all-reduce step: the decode step does not shrink from TP4 to TP8 although the
    weight bytes per GPU halve (H100: 29.6 → 29.7 ms); a latency growing with tp explains it (since
    issue #8's third round as 2·log2(tp)·α, see allreduce_time_s, no longer a ring's 2(tp−1)·α).
  - c_seq·B, a decode cost per sequence in the batch (engine bookkeeping: sampling, scheduling,
    block tables): the step grows ~0.2–0.35 ms per added sequence where the roofline terms grow
    ~0.05 ms. With it the held-out error of batch ≥ 32 from a fit on batch ≤ 16 drops 23 % → 7 %.
Both are 0 by default, which gives back the design's formulas exactly. So is η_e (eta_expert; unset: the
experts are read at η_m; first tried in round 4, commit 6ddfa4d, reverted for the MLPerf MI300X check, kept in
round 5 with calibrate.lookup's rule for where it is served and LLM-Inference-Bench's preempted batches
refused). Online ITL with its share of interleaved prefills: `online_itl_s`. Data-parallel attention with
expert-parallel MoE layers (all-to-all dispatch/combine): `ep_decode_step_s`, `ep_prefill_time_s`.
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple

import jax
import jax.numpy as jnp

from pdfleet.perf import decode, memory

Array = Any  # jax or numpy array, or a Python scalar


class Hardware(NamedTuple):
    """One instance's hardware; every field is a scalar per candidate ([] or [C] when batched)."""

    peak_flops: Array  # FLOP/s of ONE GPU at the precision the model computes in (dense)
    hbm_bw: Array  # B/s of ONE GPU's HBM
    link_bw: Array  # B/s of ONE GPU's scale-up link (NVLink/xGMI), one direction
    tp: Array  # GPUs in the instance (tensor-parallel degree)
    low_precision: Array = 0.0  # 1.0 when peak_flops is an fp8/fp4 peak (compute_efficiency picks η_c,lowp)
    peak_flops_bf16: Array = 0.0  # FLOP/s of ONE GPU at bf16 (attention_flop_scale); 0: attention at peak_flops
    peak_flops_fp8: Array = 0.0  # FLOP/s of ONE GPU at fp8 (bf16's where the sku has no fp8); 0: as above


class ModelShape(NamedTuple):
    """The architecture numbers the roofline needs ([] or [C] per field)."""

    active_params: Array  # parameters touched per token (MoE: shared + k routed experts)
    weight_bytes: Array  # bytes of ALL weights (every expert), memory.weight_bytes
    kv_bytes_per_token: Array  # memory.kv_bytes_per_token
    layers: Array
    hidden_size: Array
    attn_dim: Array  # heads × head_dim, the mean of the QK and PV widths (prefill_attention_flops)
    expert_bytes: Array = 0.0  # bytes of all routed experts (0 for a dense model)
    experts: Array = 1.0  # routed experts per layer E (1 for dense)
    experts_per_token: Array = 1.0  # routed experts each token picks k (1 for dense)
    act_bytes: Array = 2.0  # bytes per activation element in the all-reduce (bf16)
    attn_flops_per_ctx_token: Array = 0.0  # decode attention FLOPs per query token per context token
    routed_active_params: Array = 0.0  # parameters of the k routed experts a token uses (0 for dense)
    moe_layers: Array = 0.0  # layers with routed experts (0 for dense; layer_overhead_s)
    kv_low_precision: Array = 0.0  # 1.0 when the KV cache is fp8 or narrower: attention on fp8 tensor cores


class Efficiency(NamedTuple):
    """Fitted efficiencies of one sku (and engine); see pdfleet.calibrate."""

    eta_compute: Array  # achieved / peak FLOP/s, in (0, 1]
    eta_memory: Array  # achieved / peak HBM bandwidth, in (0, 1]
    eta_link: Array  # achieved / peak link bandwidth, in (0, 1]
    c_prefill_s: Array  # fixed overhead of one prefill batch, c0 (s)
    c_decode_s: Array  # fixed overhead of one decode step, c1 (s)
    alpha_link_s: Array = 0.0  # latency of one ring all-reduce step (s)
    c_decode_seq_s: Array = 0.0  # decode overhead per sequence in the batch, per step (s)
    c_layer_s: Array = 0.0  # overhead per transformer layer of one forward pass (s), prefill and decode
    eta_attn: Array = 0.0  # decode attention's achieved / peak HBM bandwidth; <= ETA_ATTN_OFF: one roofline
    eta_compute_lowp: Array = 0.0  # achieved / peak FLOP/s of fp8/fp4 GEMMs; <= ETA_ATTN_OFF: eta_compute serves them
    eta_expert: Array = 0.0  # achieved / peak HBM bandwidth of routed-expert weight reads; <= ETA_ATTN_OFF: eta_memory
    c_moe_layer_s: Array = 0.0  # overhead per MoE layer of one forward pass (s), prefill and decode (layer_overhead_s)


# η_attn at or below this means "no separate attention roofline" (the design's formula); 0.1 % of the HBM
# bandwidth is no physical efficiency, and a parametrised 0 (sigmoid) can only come arbitrarily close to 0.
ETA_ATTN_OFF = 1e-3

# Used only where no calibration applies (tests, `pdfleet estimate` without data).
NOMINAL_EFFICIENCY = Efficiency(0.5, 0.8, 0.7, 0.01, 0.005, 5e-6, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


def compute_efficiency(hw: Hardware, eff: Efficiency):
    """η_c of this instance's GEMMs: eff.eta_compute_lowp on an fp8/fp4 peak (hw.low_precision > 0) when it
    is set (> ETA_ATTN_OFF, the same "off" threshold as η_attn), else eff.eta_compute.

    Why two: the share of the datasheet peak a GEMM reaches differs by precision. Low-precision GEMMs
    carry per-tensor/per-block scaling and a doubled peak that the same HBM and register traffic must
    feed, so they reach a smaller share of it; e.g. NVIDIA's own H100 numbers for Llama-2-70B show an
    fp8 engine ~1.5-1.9x faster than fp16, not the 2x of the peaks (NVIDIA TensorRT-LLM blog "H100 has
    4.6x A100 performance in TensorRT-LLM", 2023), and on MI300X the vLLM-ROCm bf16 and fp8 kernels are
    separate code paths (hipBLASLt vs. FP8 GEMM tuning) of unequal maturity. One η_c per sku made the
    MI300X fit (LLM-Inference-Bench bf16 rows) predict dstack's fp8 serving runs 3-4x too slow
    (scripts/validate_roofline.py, source=dstack-405b). Shapes: [] -> [].
    """
    use_lowp = (jnp.asarray(hw.low_precision) > 0) & (jnp.asarray(eff.eta_compute_lowp) > ETA_ATTN_OFF)
    return jnp.where(use_lowp, eff.eta_compute_lowp, eff.eta_compute)


def weight_bytes_touched(tokens, model: ModelShape):
    """Bytes of weights one forward pass over `tokens` tokens reads from HBM.

    Dense: all weights. MoE (approximation, stated): routing is uniform and independent, so a
    given expert is untouched by all T tokens with probability (1 − k/E)^T and the expected
    fraction of routed-expert bytes read is 1 − (1 − k/E)^T:
        W(T) = (weight_bytes − expert_bytes) + expert_bytes · (1 − (1 − k/E)^T).
    T = 1 reads the k active experts; T ≳ 5·E/k reads essentially all. Real routing is skewed,
    which touches fewer experts, so this errs on the slow (SLO-safe) side.
    Shapes: tokens [], model fields [] → [].
    """
    tokens = jnp.asarray(tokens, jnp.result_type(float))
    e = jnp.maximum(jnp.asarray(model.experts, tokens.dtype), 1.0)
    k = jnp.clip(jnp.asarray(model.experts_per_token, tokens.dtype), 0.0, e)
    untouched = jnp.power(1.0 - k / e, jnp.maximum(tokens, 1.0))
    return model.weight_bytes - model.expert_bytes * untouched


def expert_read_scale(eff: Efficiency):
    """η_m / η_e: how many η_m-bytes one routed-expert byte costs (1 when eta_expert <= ETA_ATTN_OFF, unset).

    Why a separate efficiency: a routed expert is read by a grouped GEMM whose every group sees only the
    few tokens routed to it (B·k/E on average: 0.1 to a few at decode batch sizes), so it runs as many small,
    skinny GEMMs back to back rather than one large one, and the block-scaled fp8 experts of DeepSeek-V3 and
    Qwen3 add their per-block dequantization (DeepSeek-V3 report sec. 3.3.2; vLLM's fused_moe Triton kernel,
    MegaBlocks, Gale et al. 2023, on block-sparse grouped GEMMs). Dense GEMMs of the same bytes reach a
    different share of HBM bandwidth. Evidence: DeepSeek-R1 TP8 on H200 (dstack, SGLang 0.4.3 / vLLM 0.7.4 /
    TensorRT-LLM 0.17, early 2025) steps ~2x slower than one η_m for dense and expert weights predicts, at batch 4
    and at batch 100 alike, while Llama-3.1 on the same GPUs and engines (TensorRT-LLM's online table) is predicted
    within ~10 %; fitted into one η_m those rows pulled H200/tensorrt-llm's η_m from 0.76 to 0.37, and the
    held-out Llama ITL 2x too slow. How much of it is the kernels' age is engine- and sku-specific (DeepSeek-V3 on
    B200 with vLLM of late 2025, ML.ENERGY v3, is predicted within ~5 % at η_m), so pdfleet.calibrate.lookup
    never moves η_e to another sku nor serves the pooled one (there: unset); another engine of the same sku gets
    the sku's. Shapes: [] -> []."""
    on = jnp.asarray(eff.eta_expert) > ETA_ATTN_OFF
    return jnp.where(on, eff.eta_memory / jnp.maximum(eff.eta_expert, 1e-9), 1.0)


def weight_read_bytes(tokens, model: ModelShape, eff: Efficiency):
    """η_m-equivalent bytes of the weights one forward pass over `tokens` tokens reads:
        (W − W_e) + (W(T) − (W − W_e)) · η_m/η_e       (weight_bytes_touched, expert_read_scale)
    = W(T) when eta_expert is unset or the model is dense. Shapes: [] -> []."""
    dense = model.weight_bytes - model.expert_bytes
    return dense + (weight_bytes_touched(tokens, model) - dense) * expert_read_scale(eff)


def allreduce_time_s(tokens, model: ModelShape, hw: Hardware, eff: Efficiency):
    """Tensor-parallel communication of one forward pass over `tokens` tokens (s).

    2 all-reduces per layer (after attention and after the MLP, Megatron-LM), each of
    size = tokens·hidden·act_bytes:
        t = 2·layers · (2·log2(tp)·α + 2(tp−1)/tp · size / (link_bw·η_link))
    The bandwidth term is that of a ring, which Rabenseifner's reduce-scatter + all-gather shares
    (2(p−1)/p·n·β); the latency term is that algorithm's 2·log2(p)·α (Thakur, Rabenseifner & Gropp 2005,
    "Optimization of collective communication operations in MPICH": MPICH runs short all-reduces by
    recursive doubling, log2(p)·α, and long ones by Rabenseifner's algorithm, never paying a ring's
    2(p−1)·α). Decode all-reduces are a few KB to a few MB, and the engines run them with such
    log- or constant-latency algorithms, not with a ring: NCCL's tree and NVLS (in-switch reduction)
    protocols and the one-shot / two-shot custom all-reduce kernels of TensorRT-LLM and vLLM, whose
    latency hardly grows with tp on an NVSwitch. The ring latency 2(tp−1)·α (issue #8 until round 3)
    charged TP8 14 hops per all-reduce, 7x TP2's 2; with α fitted on large batches it made
    small-batch decode at TP4/TP8 too slow (H200 TensorRT-LLM, 70B TP4 at batch 1: 8 ms of
    all-reduce latency in a predicted 22 ms step, measured 15 ms). Exactly 0 at tp = 1; at tp = 2
    both latency forms give 2·α. Shapes: [] → [].
    """
    tp = jnp.asarray(hw.tp, jnp.result_type(float))
    size = tokens * model.hidden_size * model.act_bytes
    latency = 2.0 * jnp.log2(jnp.maximum(tp, 1.0)) * eff.alpha_link_s
    bandwidth = 2.0 * (tp - 1.0) * size / (tp * hw.link_bw * eff.eta_link)
    return 2.0 * model.layers * (latency + bandwidth)


def prefill_flops(L, model: ModelShape, batch=1, attention_scale=1.0):
    """FLOPs of prefilling `batch` requests of L tokens: 2·N_active·b·L + s_a·prefill_attention_flops(L, b), the
    attention term in GEMM-rate-equivalent FLOPs when attention_scale s_a = attention_flop_scale is given."""
    return 2.0 * model.active_params * batch * L + attention_scale * prefill_attention_flops(L, model, batch)


def prefill_attention_flops(L, model: ModelShape, batch=1):
    """FLOPs of causal self-attention over a prefill of `batch` requests of L tokens: 2·layers·b·L²·d_attn
    (DESIGN.md; L²/2 (query, key) pairs per layer, QKᵀ 2·d_qk and AV 2·d_v per pair, d_attn = (d_qk + d_v)/2,
    = heads·head_dim for GQA/MHA). MLA prefill is not absorbed (DeepSeek-V2 paper sec. 2.1.3: the absorption
    serves decode; SGLang and vLLM prefill DeepSeek with ordinary multi-head attention over the decompressed K
    and V): queries and keys are head_dim + rope wide (128 + 64), values head_dim (128), so d_attn =
    heads·(head_dim + rope/2) (model_shape_from_catalog). Shapes: [] -> []."""
    L = jnp.asarray(L, jnp.result_type(float))
    return 2.0 * model.layers * batch * L * L * model.attn_dim


def attention_flop_scale(model: ModelShape, hw: Hardware, eff: Efficiency):
    """GEMM-rate-equivalent FLOPs of one attention FLOP: (peak·η_c of the instance's GEMMs, hw.peak_flops at the
    weights' precision) / (peak·η_c at the KV cache's precision). Attention FLOPs are multiplied by it wherever
    they meet the GEMMs' rate (decode_step_s, prefill_time_s, ep_forward_s).

    Why: the attention kernels multiply the query by the cached K and V at the cache's precision, whatever the
    weights': FlashAttention-3 (Shah et al. 2024) runs QKᵀ and PV as fp16/bf16 WGMMAs (up to 740 TFLOP/s on
    H100, 75 % of that peak), or as fp8 ones when Q, K and V are fp8 (close to 1.2 PFLOP/s); FlashMLA
    (DeepSeek, 2025), the MLA decode kernel of SGLang and vLLM, is a BF16/FP16 kernel over a bf16 latent cache
    (its README: up to 660 TFLOP/s compute-bound on H800, whose bf16 peak is the H100's 989). So an fp8
    DeepSeek-V3 or an MXFP4 gpt-oss with a bf16 KV cache runs attention at the bf16 peak, half the fp8 GEMMs'
    (a quarter of a B200's fp4); an fp8 KV cache runs it at the fp8 peak. η_c is compute_efficiency's at that
    precision: η_c,lowp when the attention peak exceeds the bf16 one (an fp8 peak), else η_c. 1 where hw carries
    no per-precision peaks (peak_flops_bf16 = 0: Hardware built by hand) or the cache's precision is the weights'.
    Shapes: [] -> []."""
    lowp = jnp.asarray(model.kv_low_precision) > 0
    attn_peak = jnp.where(lowp, hw.peak_flops_fp8, hw.peak_flops_bf16)
    attn_hw = hw._replace(low_precision=jnp.where(attn_peak > hw.peak_flops_bf16, 1.0, 0.0))
    gemm = hw.peak_flops * compute_efficiency(hw, eff)
    attn = attn_peak * compute_efficiency(attn_hw, eff)
    return jnp.where(attn_peak > 0, gemm / jnp.where(attn_peak > 0, attn, 1.0), 1.0)


def prefill_time_s(L, model: ModelShape, hw: Hardware, eff: Efficiency, batch=1):
    """Service time (s) of prefilling `batch` requests of L input tokens each, on one instance.

        prefill_roofline_s(F / (tp·peak·η_c), Q / (tp·bw·η_m)) + comm(b·L) + c0 + c_layer·layers
        F = 2·N_active·b·L + s_a·A_p,   Q = W(b·L) + b·L·kv_bytes_per_token
    A_p = prefill_attention_flops = 2·layers·b·L²·d_attn, s_a = attention_flop_scale (attention at the KV
    cache's precision).
    (DESIGN.md "Roofline", whose max(·, ·) prefill_roofline_s replaces by a p-norm, p = 1.5; the L² term is
    causal self-attention, QKᵀ and AV each 2·L²·d / 2.)
    Shapes: L [], batch [] and every field of model/hw/eff [] → [].
    """
    L = jnp.asarray(L, jnp.result_type(float))
    tokens = batch * L
    flops = prefill_flops(L, model, batch, attention_flop_scale(model, hw, eff))
    bytes_ = weight_read_bytes(tokens, model, eff) + tokens * model.kv_bytes_per_token
    t_compute = flops / (hw.tp * hw.peak_flops * compute_efficiency(hw, eff))
    t_memory = bytes_ / (hw.tp * hw.hbm_bw * eff.eta_memory)
    return (prefill_roofline_s(t_compute, t_memory) + allreduce_time_s(tokens, model, hw, eff) + eff.c_prefill_s
            + layer_overhead_s(model, eff))


# Exponent of the prefill's compute/memory combination (prefill_roofline_s): infinity is the roofline's max, 1 the sum.
PREFILL_OVERLAP_P = 1.5


def prefill_roofline_s(t_compute, t_memory):
    """Compute/memory time of a prefill forward pass: the p-norm (t_c^p + t_m^p)^(1/p), p = PREFILL_OVERLAP_P.

    The roofline's max(t_c, t_m) assumes the weight stream and the math overlap perfectly (Williams,
    Waterman & Patterson, CACM 2009: an upper bound on performance); the opposite, no overlap, adds them
    (t_c + t_m, the additive form of the Execution-Cache-Memory model for the non-overlapping part,
    Treibig & Hager 2010). Measured kernels lie between, furthest from the max where t_c ≈ t_m, which is
    where short prompts sit (Llama-3.1-8B on H100 at 200-500 tokens: t_c ≈ 6-13 ms, t_m ≈ 6 ms): a GEMM of a
    few hundred rows cannot hide its weight loads behind its few MMAs per byte (pipeline prologue and
    epilogue, part waves). p = 1.5: x1.59 the max at t_c = t_m, x1.08 when one term is 4x the other, within 2 %
    of it beyond 10x, so long prefills and offline batches keep the roofline. Chosen by the held-out prefill/TTFT
    MAPE (%) of scripts/validate_roofline.py on the splits with prefill rows (model=llama-8b, source=trtllm-online,
    source=splitwise, model=llama-70b, engine=tensorrt-llm), so those are not fully held out for this one number:
        max      33.8  25.0  24.0  21.0  15.9      p = 2    22.2  18.8  23.1  20.2  15.3
        p = 1    14.5  14.1  21.6  20.6  22.2      p = 3    28.7  22.0  23.6  20.4  14.5
        p = 1.5  14.9  15.5  22.4  20.1  17.9
    (p = 1 and 1.5 tie on the worst split; 1.5 leaves two splits above 20 %, 1 three.) Decode keeps the max
    (decode_roofline_s; the p-norm was not tried there). Written as max·(1 + r^p)^(1/p) with
    r = min/max ∈ [0, 1], finite gradients at r = 0. Shapes: [] -> [].
    """
    hi = jnp.maximum(t_compute, t_memory)
    r = jnp.minimum(t_compute, t_memory) / jnp.where(hi > 0, hi, 1.0)
    return hi * jnp.power(1.0 + jnp.power(r, PREFILL_OVERLAP_P), 1.0 / PREFILL_OVERLAP_P)


def layer_overhead_s(model: ModelShape, eff: Efficiency):
    """Fixed cost per layer of one forward pass: c_layer · layers + c_moe · moe_layers (s).

    c_layer: kernel launches, norms, rotary and the small memory-bound kernels of a layer cost about the
    same per layer whatever the batch (the launch-overhead argument of CUDA Graphs, which vLLM and
    TensorRT-LLM capture per decode batch to cut exactly this cost); one flat constant c1 cannot
    serve models of 24 and 126 layers at once. c_layer is fitted (pdfleet.calibrate); its held-out
    effect is printed by scripts/validate_roofline.py.
    c_moe: what a MoE layer costs beyond its weight bytes and FLOPs whatever the batch: the router GEMM and its
    top-k, the token permute (sort by expert, gather) and un-permute (scatter, weighted sum) and the launches of
    the grouped GEMMs over E experts (vLLM's fused_moe: moe_align_block_size, two grouped GEMMs, the activation
    and moe_sum, five or more kernels where a dense MLP has two GEMMs). Evidence: DeepSeek-R1 TP8 on H200 with
    early-2025 engines (dstack) steps 26-55 ms at batch 4, where the expert bytes its 4 tokens touch (~79 GB over
    8 GPUs) take ~2 ms at the datasheet bandwidth: bytes at any plausible η_e cannot carry it. moe_layers =
    layers for a model with routed experts (DeepSeek-V3's first 3 dense layers of 61 counted: the catalog does not
    list them), 0 for a dense one. Served like η_e (pdfleet.calibrate.lookup). Shapes: [] -> [].
    """
    return eff.c_layer_s * model.layers + eff.c_moe_layer_s * model.moe_layers


def decode_attention_flops(B, ctx, model: ModelShape):
    """FLOPs of decode attention over the KV cache: B · ctx · attn_flops_per_ctx_token.

    GQA/MHA (per query token, per context token, per layer): QKᵀ 2·heads·head_dim + AV 2·heads·head_dim
    → 4·layers·heads·head_dim. MLA with the absorbed projections (DeepSeek-V2 paper sec. 2.1.2-2.1.3;
    how FlashMLA and SGLang/vLLM decode): scores over the latent + rope key 2·heads·(d_c + d_r), values
    from the latent 2·heads·d_c → 2·layers·heads·(2·d_c + d_r). For DeepSeek-V3 at ctx 4k this is
    ~70 GFLOP per token, as much as its 37B active weights (74 GFLOP): why MLA decode is not
    memory-bound the way GQA decode is. Set by model_shape_from_catalog. Shapes: [] -> [].
    """
    return B * ctx * model.attn_flops_per_ctx_token


def decode_step_s(B, ctx, model: ModelShape, hw: Hardware, eff: Efficiency):
    """Time (s) of one decode step of a batch of B sequences at mean context ctx tokens.

    η_attn <= ETA_ATTN_OFF (0 included; the design's single roofline):
        max((2·N_active·B + A) / (tp·peak·η_c), (W(B) + K) / (tp·bw·η_m))
    η_attn > ETA_ATTN_OFF (attention as its own kernel, run after the linear layers, with its own bandwidth
    efficiency: paged / MLA attention kernels reach a different share of HBM bandwidth than the
    weight GEMMs; FlashAttention-2 (Dao 2023) and FlashMLA report such per-kernel figures):
        max(2·N_active·B / (tp·peak·η_c), W(B) / (tp·bw·η_m)) + max(A / (tp·peak·η_c), K / (tp·bw·η_attn))
    then + comm(B) + c1 + c_seq·B + c_layer·layers in both cases, where
        W(B) = weight_bytes_touched(B) (all weights for dense models),
        K    = B·ctx·kv_bytes_per_token (the KV cache read once per step; includes
               memory.kv_replication: an MLA latent is read by every TP rank),
        A    = decode_attention_flops(B, ctx) · attention_flop_scale (0 when attn_flops_per_ctx_token is 0;
               in GEMM-rate-equivalent FLOPs: attention runs at the KV cache's precision).
    Shapes: B [], ctx [], fields [] → [].
    """
    B = jnp.asarray(B, jnp.result_type(float))
    t = decode_roofline_s(2.0 * model.active_params * B,
                          decode_attention_flops(B, ctx, model) * attention_flop_scale(model, hw, eff),
                          weight_read_bytes(B, model, eff), B * ctx * model.kv_bytes_per_token,
                          hw.tp * hw.peak_flops * compute_efficiency(hw, eff), hw.tp * hw.hbm_bw, eff)
    return (t + allreduce_time_s(B, model, hw, eff) + eff.c_decode_s
            + eff.c_decode_seq_s * B + layer_overhead_s(model, eff))


def decode_roofline_s(lin_flops, att_flops, w_bytes, kv_bytes, flops_per_s, bytes_per_s, eff: Efficiency):
    """The compute/memory part of a decode step (decode_step_s's docstring), from the FLOPs and bytes and the
    achievable rates (flops_per_s already includes η_c; bytes_per_s is the peak bandwidth):
        η_attn <= ETA_ATTN_OFF: max((lin + att) / flops_per_s, (w + kv) / (bytes_per_s·η_m))
        else:                   max(lin / flops_per_s, w / (bytes_per_s·η_m))
                                + max(att / flops_per_s, kv / (bytes_per_s·η_attn))
    Shared by the tensor-parallel step (instance totals, rates of tp GPUs) and the expert-parallel one
    (ep_forward_s: one GPU's share, one GPU's rates). Shapes: [] -> []."""
    one = jnp.maximum((lin_flops + att_flops) / flops_per_s, (w_bytes + kv_bytes) / (bytes_per_s * eff.eta_memory))
    split = (jnp.maximum(lin_flops / flops_per_s, w_bytes / (bytes_per_s * eff.eta_memory))
             + jnp.maximum(att_flops / flops_per_s, kv_bytes / (bytes_per_s * jnp.maximum(eff.eta_attn, 1e-9))))
    return jnp.where(eff.eta_attn > ETA_ATTN_OFF, split, one)


def max_batch_memory(ctx_tokens, model: ModelShape, memory_bytes_total, usable_fraction):
    """Largest decode batch whose KV cache fits: pdfleet.perf.decode.max_batch_memory (the formula's one
    home) with the instance's usable memory = usable_fraction x memory_bytes_total. 0 means the model
    (plus one sequence) does not fit: callers treat it as infeasible. Shapes: [] -> [].
    """
    return decode.max_batch_memory(usable_fraction * memory_bytes_total, model.weight_bytes,
                                   model.kv_bytes_per_token, jnp.maximum(ctx_tokens, 1.0))


def e2e_latency_s(batch, input_tokens, output_tokens, model, hw, eff):
    """Offline batch latency (s): prefill of b·L_in tokens + L_out decode steps at mean context.

        prefill_time_s(L_in, batch=b) + L_out · decode_step_s(b, L_in + L_out/2)
    (how LLM-Inference-Bench's end-to-end latency is modelled by pdfleet.calibrate).
    """
    ctx = decode.mean_context(input_tokens, output_tokens)
    return prefill_time_s(input_tokens, model, hw, eff, batch) + output_tokens * decode_step_s(
        batch, ctx, model, hw, eff
    )


def online_itl_s(batch, input_tokens, output_tokens, model, hw, eff, concurrency=None):
    """Mean inter-token latency (s) a client of an online server sees at a steady running batch.

        ITL = step(b, L_in + L_out/2) + min(1, n/b) · prefill_time_s(L_in, batch=b) / L_out
    b = the running batch (>= 1), n = the sequences in the engine by Little's law (n = output tokens/s x ITL;
    None: n = b). Derivation (steady state): n sequences each emit L_out tokens, so requests arrive and
    leave at n / (L_out·ITL) per second, and each arrival's prefill stalls every running sequence once;
    per second the engine spends (n / (L_out·ITL))·prefill_1 on prefills, and ITL = step / (1 − that share),
    i.e. ITL = step + n·prefill_1 / L_out. With n >= 1 the n prefills are charged as one batch of b
    (= pdfleet.calibrate's kind 'itl' since issue #8's first round: e2e_latency_s / L_out). With n < 1 the
    engine is idle part of the time and a request's decode meets only n prefills of the others on average,
    not a whole one (TensorRT-LLM v0.14 online table, Llama-3.1-8B at 2 req/s and 16 output tokens:
    n = 0.22). A request's own prefill is not in its ITL (it is its TTFT). Shapes: [] -> [].
    """
    b = jnp.asarray(batch, jnp.result_type(float))
    n = b if concurrency is None else jnp.asarray(concurrency, b.dtype)
    share = jnp.clip(n / jnp.maximum(b, 1.0), 0.0, 1.0)
    out = jnp.maximum(output_tokens, 1.0)
    ctx = decode.mean_context(input_tokens, output_tokens)
    return decode_step_s(b, ctx, model, hw, eff) + share * prefill_time_s(input_tokens, model, hw, eff, b) / out


# --- expert parallelism (EP) with data-parallel attention (DP) ----------------------------------


def alltoall_time_s(tokens, model: ModelShape, hw: Hardware, eff: Efficiency, ep):
    """Expert-parallel dispatch + combine of one forward pass over `tokens` tokens of ONE GPU (s).

    Every MoE layer sends each token's hidden vector to the GPUs holding its k routed experts (dispatch) and
    brings the k expert outputs back (combine): two all-to-alls (GShard, Lepikhin et al. 2021, its MoE
    layer's dispatch and combine; DeepSeek-V3 technical report, sec. 3.2.2, and DeepSeek's DeepEP, whose
    kernels are exactly these two collectives). With experts spread uniformly over ep GPUs a routed copy
    stays on its own GPU with probability 1/ep, so one GPU sends, and receives, per direction
        V = tokens · k · hidden · act_bytes · (ep − 1)/ep
    over its scale-up link, each all-to-all one step of α (all peers are written at once over NVSwitch):
        t = layers · 2 · (α + V / (link_bw · η_link))          0 at ep = 1.
    Assumptions, stated: every layer is a MoE layer (DeepSeek-V3: 58 of 61), routing is uniform (no hot
    expert GPU: a skewed load makes the busiest GPU slower, the SLO-unsafe side, which only a measured
    EP table can correct), activations travel at act_bytes (DeepEP dispatches fp8, 1 byte, and combines
    bf16: act_bytes 2 over-counts the dispatch by 2x, the safe side). Shapes: [] -> [].
    """
    ep = jnp.asarray(ep, jnp.result_type(float))
    volume = tokens * model.experts_per_token * model.hidden_size * model.act_bytes * (ep - 1.0) / ep
    per_layer = 2.0 * (eff.alpha_link_s + volume / (hw.link_bw * eff.eta_link))
    return jnp.where(ep > 1.0, model.layers * per_layer, 0.0)


def ep_forward_s(T, att_flops, kv_bytes, model: ModelShape, hw: Hardware, eff: Efficiency, dp, ep, decode_step: bool):
    """Compute, memory and communication time (s) of one forward pass of an instance of G = hw.tp GPUs laid
    out as dp attention groups of tp_a = G/dp tensor-parallel GPUs, the routed experts spread whole over
    ep = G GPUs (ep = 1: experts tensor-parallel over G, which with dp = 1 is the tensor-parallel layout of
    decode_step_s / prefill_time_s). T: tokens computed by the whole instance (decode: the batch B; prefill:
    b·L), split evenly over the dp groups; att_flops, kv_bytes: the instance's attention FLOPs and KV bytes
    (read in decode, written in prefill), split like the tokens. Per GPU, under uniform routing:
        attention and dense parts, T/dp tokens over tp_a GPUs (their weights replicated dp times):
            F_a = (2·(N_active − N_routed)·T + att_flops) / G,      Q_a = (W − W_e) / tp_a + kv_bytes / G
        routed experts, every token's k experts over all G GPUs (each GPU holds E/G whole experts):
            F_e = 2·N_routed·T / G,                                  Q_e = W_e·(1 − (1 − k/E)^T) / G
        compute/memory: decode_roofline_s (decode) or prefill_roofline_s (prefill) of F = F_a + F_e,
        Q = Q_a + Q_e at one GPU's rates; + allreduce_time_s over tp_a of T/dp tokens (2 per layer; 1 when
        ep > 1, the MLP's being replaced by the all-to-all) + alltoall_time_s of T/G tokens per GPU
        + c_layer·layers.
    This is SGLang's "DP attention" with EP MoE and DeepSeek-V3's own decode deployment (technical report
    sec. 3.4.2: attention TP4 with DP80, experts EP320); costs a measured table has not checked, so the
    roofline's efficiencies are those fitted on tensor-parallel runs (calibrate). With dp = 1 and ep = 1 it
    equals the tensor-parallel roofline (tests/test_roofline.py). Shapes: [] -> [].
    """
    f = jnp.result_type(float)
    G = jnp.asarray(hw.tp, f)
    dp, ep = jnp.asarray(dp, f), jnp.asarray(ep, f)
    tp_a = G / dp
    T = jnp.asarray(T, f)
    routed = model.routed_active_params
    dense_bytes = model.weight_bytes - model.expert_bytes
    lin = (2.0 * (model.active_params - routed) * T + 2.0 * routed * T) / G
    w = dense_bytes / tp_a + (weight_read_bytes(T, model, eff) - dense_bytes) / G
    one = hw._replace(tp=1.0)
    flops_per_s = one.peak_flops * compute_efficiency(one, eff)
    if decode_step:
        t = decode_roofline_s(lin, att_flops / G, w, kv_bytes / G, flops_per_s, one.hbm_bw, eff)
    else:
        t = prefill_roofline_s((lin + att_flops / G) / flops_per_s,
                               (w + kv_bytes / G) / (one.hbm_bw * eff.eta_memory))
    attn_comm = allreduce_time_s(T / dp, model, hw._replace(tp=tp_a), eff)
    attn_comm = jnp.where(ep > 1.0, 0.5 * attn_comm, attn_comm)
    return t + attn_comm + alltoall_time_s(T / G, model, hw, eff, ep) + layer_overhead_s(model, eff)


def ep_decode_step_s(B, ctx, model: ModelShape, hw: Hardware, eff: Efficiency, dp=1.0, ep=1.0):
    """Decode step (s) of B sequences at mean context ctx on a (dp, ep) instance of hw.tp GPUs
    (ep_forward_s; `model` built for the attention group's tp = G/dp, so kv_bytes_per_token carries that
    group's kv_replication):  ep_forward_s(B, s_a·A, B·ctx·kv) + c1 + c_seq·B/dp
    (A = decode_attention_flops, s_a = attention_flop_scale, as in decode_step_s).
    The per-sequence cost is paid by each attention group for its own B/dp sequences, in parallel: every DP rank
    runs its own scheduler, sampler and block tables (SGLang's DP attention, TensorRT-LLM's attention DP), so the
    instance's step carries one rank's share. Charged on all B it was 44 of a 136 ms DeepSeek-V3 step on 8 H200
    at B = 5,432 (scripts/validate_roofline.py --only ep). Shapes: [] -> []."""
    B = jnp.asarray(B, jnp.result_type(float))
    per_rank = B / jnp.asarray(dp, B.dtype)
    attn = decode_attention_flops(B, ctx, model) * attention_flop_scale(model, hw, eff)
    return (ep_forward_s(B, attn, B * ctx * model.kv_bytes_per_token,
                         model, hw, eff, dp, ep, True) + eff.c_decode_s + eff.c_decode_seq_s * per_rank)


def ep_prefill_time_s(L, model: ModelShape, hw: Hardware, eff: Efficiency, dp=1.0, ep=1.0, batch=1):
    """Prefill (s) of `batch` requests of L tokens on a (dp, ep) instance: ep_forward_s over b·L tokens with
    the causal attention FLOPs s_a·prefill_attention_flops (as in prefill_time_s) and the KV written b·L·kv,
    + c0.  Shapes: [] -> []."""
    L = jnp.asarray(L, jnp.result_type(float))
    T = batch * L
    attn = prefill_attention_flops(L, model, batch) * attention_flop_scale(model, hw, eff)
    return (ep_forward_s(T, attn, T * model.kv_bytes_per_token, model, hw, eff, dp, ep, False) + eff.c_prefill_s)


# --- the one vmap over candidates ------------------------------------------------------------


def over_candidates(kernel):
    """vmap a one-candidate kernel over a leading axis [C] of every argument (pytrees included)."""
    return jax.vmap(kernel)


prefill_time_s_batched = jax.jit(over_candidates(prefill_time_s))  # ([C], ModelShape[C], ...) -> [C]
decode_step_s_batched = jax.jit(over_candidates(decode_step_s))  # ([C], [C], ...) -> [C]
max_batch_memory_batched = jax.jit(over_candidates(max_batch_memory))  # -> [C]
e2e_latency_s_batched = jax.jit(over_candidates(e2e_latency_s))  # -> [C]
ep_prefill_time_s_batched = jax.jit(over_candidates(ep_prefill_time_s))  # ([C], ModelShape[C], ..., dp, ep, b [C])
ep_decode_step_s_batched = jax.jit(over_candidates(ep_decode_step_s))  # ([C], [C], ..., dp [C], ep [C]) -> [C]


# --- builders from catalog records (plain Python, run once at the edge) ----------------------

PEAK_FIELD = {"bf16": "tflops_bf16", "fp8": "tflops_fp8", "fp4": "tflops_fp4"}
PEAK_ORDER = {"fp4": ["fp4", "fp8", "bf16"], "fp8": ["fp8", "bf16"], "bf16": ["bf16"]}  # fallbacks


def compute_precision(weight_dtype: str) -> str:
    """Tensor-core precision a model computes in: fp8/int8 weights → fp8, fp4/int4 → fp4, else bf16."""
    return {"fp8": "fp8", "int8": "fp8", "fp4": "fp4", "int4": "fp4"}.get(weight_dtype, "bf16")


def peak_precision(sku: Mapping, precision: str = "bf16") -> str | None:
    """The precision whose listed TFLOP/s serve `precision`: itself, else fp4 → fp8 → bf16; None if none."""
    for p in PEAK_ORDER.get(precision, ["bf16"]):
        if sku.get(PEAK_FIELD[p]):
            return p
    return None


def peak_flops_of(sku: Mapping, precision: str = "bf16") -> float:
    """Dense peak FLOP/s of one GPU at `precision` (with peak_precision's fallback)."""
    used = peak_precision(sku, precision)
    if used is None:
        raise ValueError(f"sku has no tflops for {precision} (fields {list(PEAK_FIELD.values())})")
    return float(sku[PEAK_FIELD[used]]) * 1e12


def mesh_link_share(sku: Mapping, gpus: int) -> float:
    """Share of a GPU's link_gbps that the collectives of an instance of `gpus` GPUs run at.

    link_topology 'switch' (default; NVSwitch): 1, any set of peers is reached at the full bandwidth. 'mesh'
    (point-to-point, one link per peer: MI300X's 8-OAM board, 7 Infinity Fabric links of 64 GB/s, AMD CDNA 3 white
    paper): a GPU of an instance of k GPUs on a node of n reaches its k − 1 peers over k − 1 of its n − 1 links, so
        share = (k − 1) / (n − 1)        (TP2 on MI300X: 1/7, 64 GB/s; TP4: 3/7; TP8: 1)
    for the ring / reduce-scatter all-reduce (allreduce_time_s: every GPU sends on all its peer links at once) and
    the all-to-all (alltoall_time_s) alike. 1 at k = 1 (no collective). Evidence: held out (scripts/
    validate_roofline.py, full run, issue #8 round 10), source=dstack-405b decode 28.7 -> 13.9 % (Llama-3.1-405B on
    4 and 8 MI300X), model=llama-405b 20.6 -> 16.7 %; no split more than 0.2 worse but engine=tensorrt-llm prefill
    12.6 -> 21.0 % (12 TTFTs of 17-62 ms whose fixed cost, pulled to the pooled fit, moved a few ms)."""
    if sku.get("link_topology") != "mesh" or gpus <= 1:
        return 1.0
    n = int(sku.get("gpus_per_node") or 8)
    return (min(int(gpus), n) - 1) / (n - 1) if n > 1 else 1.0


def hardware_from_sku(sku: Mapping, tp: int, precision: str = "bf16") -> Hardware:
    """Hardware of an instance of `tp` GPUs from a catalog sku record.

    tflops_* are TFLOP/s (dense), hbm_tbps TB/s (1e12 B/s), link_gbps GB/s per GPU one direction
    (1e9 B/s; data/catalog/skus.yaml). A missing link (single-GPU parts) gets 1e9 B/s, which only
    matters if such a part is used with tp > 1. peak_flops_bf16 / peak_flops_fp8 (the fp8 peak falling back to
    bf16's) price attention at the KV cache's precision (attention_flop_scale), whatever `precision` is.
    link_bw is what the instance's collectives run at (`mesh_link_share`).
    """
    link = float(sku.get("link_gbps") or 1.0) * mesh_link_share(sku, tp)
    return Hardware(
        peak_flops=peak_flops_of(sku, precision),
        hbm_bw=float(sku["hbm_tbps"]) * 1e12,
        link_bw=float(link) * 1e9,
        tp=float(tp),
        low_precision=1.0 if peak_precision(sku, precision) in ("fp8", "fp4") else 0.0,
        peak_flops_bf16=peak_flops_of(sku, "bf16"),
        peak_flops_fp8=peak_flops_of(sku, "fp8"),
    )


def model_shape_from_catalog(model: Mapping, weight_dtype: str | None = None, kv_dtype: str | None = None,
                             tp: int = 1) -> ModelShape:
    """ModelShape of one instance of `tp` GPUs from a catalog model record; byte sizes through
    pdfleet.perf.memory (KV bytes per token include memory.kv_replication under tensor parallelism).

    MoE split (from the catalog's params_b, active_params_b, experts E, experts_per_token k):
    one routed expert has e = (total − active)/(E − k) parameters, all routed experts E·e.
    Attention precision: kv_low_precision = 1 for a KV cache of 1 byte or less (fp8/int8/fp4;
    attention_flop_scale).
    """
    wd = weight_dtype or model.get("weight_dtype") or "bf16"
    kd = kv_dtype or model.get("kv_dtype") or "bf16"
    wbytes, kbytes = memory.DTYPE_BYTES[wd], memory.DTYPE_BYTES[kd]
    params_b = float(model["params_b"])
    active_b = float(model.get("active_params_b") or params_b)
    experts = float(model.get("experts") or 0)
    k = float(model.get("experts_per_token") or 0)
    if experts > 1 and 0 < k < experts and active_b < params_b:
        per_expert_b = (params_b - active_b) / (experts - k)
        expert_bytes = memory.weight_bytes(experts * per_expert_b, wbytes)
    else:
        experts, k, expert_bytes, per_expert_b = 1.0, 1.0, 0.0, 0.0
    heads = model.get("heads")
    head_dim = model.get("head_dim") or (model["hidden_size"] // heads if heads else None)
    kv = memory.kv_bytes_per_token(
        model["layers"],
        model.get("kv_heads") or heads,
        head_dim,
        kbytes,
        kv_lora_rank=model.get("kv_lora_rank") or 0,
        qk_rope_head_dim=model.get("qk_rope_head_dim") or 0,
    )
    kv *= memory.kv_replication(tp, model.get("kv_heads") or heads, bool(model.get("kv_lora_rank")))
    rank, rope = float(model.get("kv_lora_rank") or 0), float(model.get("qk_rope_head_dim") or 0)
    if rank:  # MLA, absorbed (decode_attention_flops)
        attn_flops = 2.0 * model["layers"] * heads * (2.0 * rank + rope)
    else:
        attn_flops = 4.0 * model["layers"] * heads * head_dim
    return ModelShape(
        active_params=active_b * 1e9,
        weight_bytes=memory.weight_bytes(params_b, wbytes),
        kv_bytes_per_token=float(kv),
        layers=float(model["layers"]),
        hidden_size=float(model["hidden_size"]),
        attn_dim=float(heads * (head_dim + (rope / 2.0 if rank else 0.0))),  # MLA's wider QK: prefill_attention_flops
        expert_bytes=float(expert_bytes),
        experts=float(experts),
        experts_per_token=float(k),
        act_bytes=2.0,
        attn_flops_per_ctx_token=float(attn_flops),
        routed_active_params=k * per_expert_b * 1e9 if expert_bytes else 0.0,
        moe_layers=float(model["layers"]) if expert_bytes else 0.0,
        kv_low_precision=1.0 if kbytes <= 1.0 else 0.0,
    )


def stack(items):
    """Stack a list of same-type NamedTuples of scalars into one NamedTuple of [C] arrays."""
    return jax.tree.map(lambda *xs: jnp.asarray(xs, jnp.result_type(float)), *items)
