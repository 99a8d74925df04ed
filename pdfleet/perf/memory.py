"""Bytes of weights and KV cache: the one place these sizes are computed.

Pure arithmetic on scalars or NumPy/JAX arrays (no imports of either), so the spec
layer, the catalogs and the kernels share one formula.
"""

# Bytes per element of each storage dtype a model's weights or KV cache may use.
DTYPE_BYTES = {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0, "fp4": 0.5, "int4": 0.5}

GIB = 1024.0**3


def kv_bytes_per_token(layers, kv_heads, head_dim, kv_dtype_bytes, kv_lora_rank=0, qk_rope_head_dim=0):
    """KV-cache bytes one token occupies across all layers.

    Grouped-query / multi-head attention: 2 (K and V) x layers x kv_heads x head_dim x bytes.
    Multi-head latent attention (DeepSeek-V2/V3, MLA): the cache holds one compressed latent of
    kv_lora_rank plus the decoupled RoPE key of qk_rope_head_dim per layer, shared by all heads:
    layers x (kv_lora_rank + qk_rope_head_dim) x bytes (DeepSeek-V2 paper, sec. 2.1.3).
    Examples: llama-3.1-70b bf16 = 2*80*8*128*2 = 327,680; deepseek-v3 bf16 = 61*(512+64)*2 = 70,272.
    """
    if kv_lora_rank:
        return layers * (kv_lora_rank + qk_rope_head_dim) * kv_dtype_bytes
    return 2.0 * layers * kv_heads * head_dim * kv_dtype_bytes


def kv_replication(tp, kv_heads, mla: bool):
    """Copies of each token's KV cache held by one tensor-parallel instance of tp GPUs.

    MLA: the compressed latent is not split across ranks; every GPU holds it whole (tp copies; vLLM's
    MLA cache has one latent head per rank). GQA/MHA: KV heads are split across GPUs and replicated
    once tp exceeds their number (tp / kv_heads copies). Multiply kv_bytes_per_token by this to get
    the instance's KV bytes per token.
    """
    if mla:
        return float(tp)
    return max(1.0, float(tp) / max(1, kv_heads or 1))


def instance_memory_bytes(gpus, memory_gib, utilization=1.0):
    """Memory of one instance usable for weights + KV: gpus x memory per GPU (GiB) x utilization."""
    return gpus * memory_gib * GIB * utilization


def weight_bytes(params_b, weight_dtype_bytes):
    """Bytes of the weights: total parameters (billions, all experts of a MoE) x bytes per parameter."""
    return params_b * 1e9 * weight_dtype_bytes


def held_weight_bytes(weight_bytes, expert_bytes, dp=1):
    """Bytes of weights one instance of dp data-parallel attention groups holds, the routed experts spread
    once over all its GPUs (expert parallelism): W + (dp − 1)·(W − W_e), the attention and dense part
    (W − W_e) once per group (SGLang's DP attention; DeepSeek-V3 technical report sec. 3.4). dp = 1: W."""
    return weight_bytes + (dp - 1) * (weight_bytes - expert_bytes)
