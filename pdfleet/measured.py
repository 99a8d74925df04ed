"""Readers of measured serving performance into one tidy table.

Every reader returns a pandas DataFrame with the columns of `TIDY_COLUMNS`, one row per measured
configuration (repeated measurements averaged), times in seconds:

    model           catalog model name (data/catalog/models.yaml spelling)
    sku             catalog sku name (data/catalog/skus.yaml spelling)
    tp              GPUs of the instance (tensor-parallel degree, or all GPUs the engine used)
    engine          serving engine ('vllm', 'tensorrt-llm', 'deepspeed-mii', or 'unspecified')
    kind            'prefill' (time of one prefill of `batch` requests of `input_tokens`),
                    'decode'  (time of one decode step of `batch` sequences at `context_tokens`),
                    'e2e'     (offline batch: `batch` requests, input_tokens in, output_tokens out)
                    'itl'     (online serving: mean inter-token latency at a steady running batch
                              `batch`, prompts of input_tokens interleaved; pdfleet.calibrate)
    batch           requests in the batch (float: ML.ENERGY reports a time-averaged batch)
    input_tokens    prompt tokens per request (NaN where the source does not say)
    output_tokens   generated tokens per request (0 for prefill rows)
    context_tokens  prefill: input_tokens; decode: mean context during the step; e2e: input +
                    output/2; NaN where unknown
    time_s          measured time, seconds
    source          where the row comes from ('splitwise', 'llm-inference-bench',
                    'mlenergy-v3:<task>', or what a plain CSV says)
plus `weight_dtype`: the weight precision when the measurement used a different one than the
catalog's default for that model (e.g. an FP8 checkpoint), else '' (empty = catalog default), and
`kv_dtype`: the KV-cache precision when the source states one other than the catalog default, else '',
`weight_bytes`: the bytes of all the weights the engine reported loading on the instance's GPUs, where the
source publishes it and it differs from the catalog's params x weight_dtype (a checkpoint that keeps some layers
in bf16, e.g. Meta's Llama-3.1-405B-FP8: 487.6 GB, not 405 GB); NaN elsewhere (= the catalog's),
and `concurrency`: for 'itl' rows, the sequences in the engine by Little's law (output tokens/s x TPOT) before
`batch` is clipped to >= 1 (below 1 the engine is idle part of the time: pdfleet.perf.roofline.online_itl_s);
NaN elsewhere (= `batch`).
Current-engine sources (TensorRT-LLM, MLPerf, SGLang, dstack, NIM) are read by pdfleet.measured_sources.

The raw files are in ../shared/data/perf (see its README for sources and licenses). Mapping and
filtering decisions are documented at each reader.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

TIDY_COLUMNS = [
    "model",
    "sku",
    "tp",
    "engine",
    "kind",
    "batch",
    "input_tokens",
    "output_tokens",
    "context_tokens",
    "time_s",
    "source",
]
EXTRA_COLUMNS = ["weight_dtype", "kv_dtype", "concurrency", "weight_bytes"]
NUMERIC_EXTRA = ("concurrency", "weight_bytes")  # float, NaN where not given; the other extras are strings
KINDS = ("prefill", "decode", "e2e", "itl")

# ../shared/data/perf relative to the repository root (this file is pdfleet/measured.py).
# Override with the environment variable PDFLEET_PERF_DIR.
DEFAULT_PERF_DIR = Path(
    os.environ.get("PDFLEET_PERF_DIR", Path(__file__).resolve().parents[2] / "shared" / "data" / "perf")
)

SPLITWISE_MODELS = {"llama2-70b": "llama-2-70b", "bloom-176b": "bloom-176b"}
SPLITWISE_SKUS = {"a100-80gb": "A100-SXM-80GB", "h100-80gb": "H100-SXM"}
SPLITWISE_PCAP_SKU = "H100-SXM-pcap"


def _finish(df: pd.DataFrame) -> pd.DataFrame:
    """Order and type the tidy columns; sort for stable output."""
    for c in EXTRA_COLUMNS:
        if c in NUMERIC_EXTRA:
            df[c] = df[c].astype(float) if c in df else np.nan
            continue
        if c not in df:
            df[c] = ""
        df[c] = df[c].fillna("").astype(str)
    df = df[TIDY_COLUMNS + EXTRA_COLUMNS].copy()
    for c in ("tp",):
        df[c] = df[c].astype(int)
    for c in ("batch", "input_tokens", "output_tokens", "context_tokens", "time_s"):
        df[c] = df[c].astype(float)
    for c in ("model", "sku", "engine", "kind", "source"):
        df[c] = df[c].astype(str)
    keys = ["source", "model", "sku", "tp", "engine", "kind", "batch", "input_tokens", "output_tokens"]
    return df.sort_values(keys, kind="stable").reset_index(drop=True)


def read_splitwise(path=None, include_power_capped: bool = False) -> pd.DataFrame:
    """Splitwise-sim perf model (Patel et al., ISCA 2024; Mutinifni/splitwise-sim data/perf_model.csv).

    Columns used: prompt_time (ms) = prefill of the whole batch, token_time (ms) = one decode step,
    e2e_time (ms). Decisions:
    - names: llama2-70b → llama-2-70b, bloom-176b → bloom-176b; a100-80gb → A100-SXM-80GB,
      h100-80gb → H100-SXM. The power-capped `h100-80gb-pcap` rows are dropped by default (same
      GPU, prefill ~30 % slower); with include_power_capped=True they come as sku 'H100-SXM-pcap'.
    - engine: the file does not name the serving engine → 'unspecified'.
    - prefill rows: averaged over all repeats of (model, hw, tp, prompt, batch), across the
      token_size values too (the prefill does not depend on the output length); output_tokens = 0.
    - decode rows: averaged per (model, hw, tp, prompt, batch, token_size). Context = prompt +
      n/2 with n the tokens actually generated, estimated per repeat as
      (e2e_time − prompt_time)/token_time clipped to [1, token_size]: at token_size ≥ 512 many runs
      stopped early (e2e ≪ prompt + token_size·token_time), elsewhere n = token_size within 1 %.
    - dropped: configurations whose e2e_time exceeds prompt_time + token_size·token_time by more
      than 10 %: llama2-70b TP2 batch 64 on both skus (prompt_time 0.36–0.8 s against 2.4–6.6 s at
      batch 32, e2e 10× the sum — the measurement is of something else, probably preemption) and
      llama2-70b TP2 batch 32 on A100 (e2e 17 % above the sum: the KV cache of 2×80 GB minus
      138 GB of weights is nearly full there).
    - no e2e rows: they are the sum of the two measured phases (README: within 1 %).
    """
    path = Path(path) if path else DEFAULT_PERF_DIR / "splitwise_perf_model.csv"
    raw = pd.read_csv(path)
    skus = dict(SPLITWISE_SKUS)
    if include_power_capped:
        skus["h100-80gb-pcap"] = SPLITWISE_PCAP_SKU
    raw = raw[raw["hardware"].isin(skus) & raw["model"].isin(SPLITWISE_MODELS)].copy()
    raw["model"] = raw["model"].map(SPLITWISE_MODELS)
    raw["sku"] = raw["hardware"].map(skus)
    raw["tp"] = raw["tensor_parallel"]
    cfg = ["model", "sku", "tp", "prompt_size", "batch_size", "token_size"]
    sums = raw.assign(phases=raw["prompt_time"] + raw["token_size"] * raw["token_time"])
    per_cfg = sums.groupby(cfg)[["phases", "e2e_time"]].mean()
    bad = per_cfg[per_cfg["e2e_time"] > 1.1 * per_cfg["phases"]].index
    raw = raw.set_index(cfg).drop(index=bad).reset_index()

    pre_keys = ["model", "sku", "tp", "prompt_size", "batch_size"]
    pre = raw.groupby(pre_keys, as_index=False)["prompt_time"].mean()
    prefill = pd.DataFrame(
        {
            "model": pre["model"],
            "sku": pre["sku"],
            "tp": pre["tp"],
            "engine": "unspecified",
            "kind": "prefill",
            "batch": pre["batch_size"],
            "input_tokens": pre["prompt_size"],
            "output_tokens": 0.0,
            "context_tokens": pre["prompt_size"],
            "time_s": pre["prompt_time"] / 1e3,
            "source": "splitwise",
        }
    )

    gen = ((raw["e2e_time"] - raw["prompt_time"]) / raw["token_time"]).clip(lower=1.0)
    raw["generated"] = np.minimum(gen, raw["token_size"])
    dec = raw.groupby(cfg, as_index=False)[["token_time", "generated"]].mean()
    decode = pd.DataFrame(
        {
            "model": dec["model"],
            "sku": dec["sku"],
            "tp": dec["tp"],
            "engine": "unspecified",
            "kind": "decode",
            "batch": dec["batch_size"],
            "input_tokens": dec["prompt_size"],
            "output_tokens": dec["token_size"],
            "context_tokens": dec["prompt_size"] + 0.5 * dec["generated"],
            "time_s": dec["token_time"] / 1e3,
            "source": "splitwise",
        }
    )
    return _finish(pd.concat([prefill, decode], ignore_index=True))


# LLM-Inference-Bench (Chitty-Venkata et al., PMBS @ SC 2024; argonne-lcf/LLM-Inference-Bench).
LIB_MODELS = {
    "meta-llama/Llama-2-7b-hf": "llama-2-7b",
    "meta-llama/Llama-2-70b-hf": "llama-2-70b",
    "meta-llama/Meta-Llama-3-8B": "llama-3-8b",
    "meta-llama/Meta-Llama-3-70B": "llama-3-70b",
    "mistralai/Mistral-7B-v0.1": "mistral-7b",
    "mistralai/Mixtral-8x7B-v0.1": "mixtral-8x7b",
    "Qwen/Qwen2-7B": "qwen2-7b",
    "Qwen/Qwen2-72B": "qwen2-72b",
    "Qwen/Qwen1.5-7B": "qwen1.5-7b",
    "huggyllama/llama-7b": "llama-7b",
    "BAAI/Aquila-7B": "aquila-7b",
    "Deci/DeciLM-7B": "decilm-7b",
    "EleutherAI/gpt-j-6b": "gpt-j-6b",
    "bigscience/bloom-7b1": "bloom-7b1",
    "facebook/opt-6.7b": "opt-6.7b",
}
LIB_SKUS = {
    "Nvidia A100 GPU": "A100-SXM-80GB",
    "Nvidia H100 GPU": "H100-SXM",
    "Nvidia GH200 GPU": "GH200",
    "AMD MI300X GPU": "MI300X",
    "AMD MI250 GPU": "MI250",
}
LIB_ENGINES = {"vLLM": "vllm", "TensorRT-LLM": "tensorrt-llm", "Deepspeed-MII": "deepspeed-mii"}


def read_llm_inference_bench(path=None, a100_sku: str = "A100-SXM-80GB") -> pd.DataFrame:
    """LLM-Inference-Bench Plots/All_results.csv: offline batches, input = output = L tokens.

    Latency (s) is end to end for the whole batch → kind 'e2e', batch = Batch Size,
    input_tokens = output_tokens = L, context_tokens = 1.5·L, tp = Num of Hardware. Decisions:
    - hardware: only GPUs the catalog can name are kept (A100, H100, GH200, MI300X, MI250);
      Gaudi2, Intel Max 1550 / PVC and SN40L are dropped. "Nvidia A100 GPU" does not say 40 or
      80 GB in the file or the repository's READMEs; the A100 rows never use more than 4 GPUs,
      which fits ALCF Polaris nodes (4× A100-SXM4-40GB) but is not proof, so the rows go to
      `a100_sku` (default A100-SXM-80GB as the project chose; its 2.0 TB/s HBM vs the 40 GB
      part's 1.6 TB/s makes a fitted η_m for this source ~0.8× what it would be on the 40 GB
      part). H100 rows are taken as H100-SXM (the repository does not say SXM or PCIe).
      MI250: `tp` counts catalog MI250 entries (OAM packages of 2 GCDs, 128 GB). The file's
      "Num of Hardware" must count packages, not GCDs: vLLM runs Llama-3-70B (141 GB of bf16
      weights) on 2 of them, which 2 GCDs (128 GB) could not hold.
    - engines: vLLM, TensorRT-LLM, DeepSpeed-MII. llama.cpp rows are dropped: their Throughput is
      2L/Latency (README), i.e. one sequence, and "Batch Size" is llama.cpp's prompt-processing
      chunk, not concurrent requests; multi-GPU llama.cpp splits layers, not tensors.
    - models: Hugging Face ids → catalog names (LIB_MODELS); unknown ids are lower-cased.
    - repeated rows of one configuration are averaged.
    """
    path = Path(path) if path else DEFAULT_PERF_DIR / "llm_inference_bench_all_results.csv"
    raw = pd.read_csv(path)
    skus = dict(LIB_SKUS, **{"Nvidia A100 GPU": a100_sku})
    raw = raw[raw["Hardware"].isin(skus) & raw["Framework"].isin(LIB_ENGINES)].copy()
    raw["model"] = raw["Model"].map(lambda m: LIB_MODELS.get(m, m.split("/")[-1].lower()))
    raw["sku"] = raw["Hardware"].map(skus)
    raw["engine"] = raw["Framework"].map(LIB_ENGINES)
    raw["tp"] = raw["Num of Hardware"]
    raw["L"] = raw["Input Output Length"].astype(float)
    raw["batch"] = raw["Batch Size"].astype(float)
    g = raw.groupby(["model", "sku", "tp", "engine", "batch", "L"], as_index=False)["Latency"].mean()
    out = pd.DataFrame(
        {
            "model": g["model"],
            "sku": g["sku"],
            "tp": g["tp"],
            "engine": g["engine"],
            "kind": "e2e",
            "batch": g["batch"],
            "input_tokens": g["L"],
            "output_tokens": g["L"],
            "context_tokens": 1.5 * g["L"],
            "time_s": g["Latency"],
            "source": "llm-inference-bench",
        }
    )
    return _finish(out)


# ML.ENERGY Benchmark v3 (ml-energy/leaderboard; engine: vLLM OpenAI server).
# model_id → (catalog name, weight dtype if not the catalog default). Same-architecture
# checkpoints share a name (Instruct/Thinking/Coder-30B variants of Qwen3-30B-A3B and
# Qwen3-235B-A22B; DeepSeek-R1-0528 is the DeepSeek-V3 architecture).
MLENERGY_MODELS = {
    "Qwen/Qwen3-8B": ("qwen3-8b", ""),
    "Qwen/Qwen3-14B": ("qwen3-14b", ""),
    "Qwen/Qwen3-32B": ("qwen3-32b", ""),
    "Qwen/Qwen3-30B-A3B-Instruct-2507": ("qwen3-30b-a3b", ""),
    "Qwen/Qwen3-30B-A3B-Thinking-2507": ("qwen3-30b-a3b", ""),
    "Qwen/Qwen3-Coder-30B-A3B-Instruct": ("qwen3-30b-a3b", ""),
    "Qwen/Qwen3-235B-A22B-Instruct-2507": ("qwen3-235b-a22b", ""),
    "Qwen/Qwen3-235B-A22B-Thinking-2507": ("qwen3-235b-a22b", ""),
    "Qwen/Qwen3-235B-A22B-Instruct-2507-FP8": ("qwen3-235b-a22b", "fp8"),
    "Qwen/Qwen3-235B-A22B-Thinking-2507-FP8": ("qwen3-235b-a22b", "fp8"),
    "Qwen/Qwen3-Coder-480B-A35B-Instruct": ("qwen3-coder-480b-a35b", ""),
    "Qwen/Qwen3-Coder-480B-A35B-Instruct-FP8": ("qwen3-coder-480b-a35b", "fp8"),
    "deepseek-ai/DeepSeek-R1-0528": ("deepseek-v3", "fp8"),
    "deepseek-ai/DeepSeek-V3.1": ("deepseek-v3.1", "fp8"),
    "google/gemma-3-12b-it": ("gemma-3-12b", ""),
    "google/gemma-3-27b-it": ("gemma-3-27b", ""),
    "meta-llama/Llama-3.1-8B-Instruct": ("llama-3.1-8b", ""),
    "meta-llama/Llama-3.1-70B-Instruct": ("llama-3.1-70b", ""),
    "meta-llama/Llama-3.3-70B-Instruct": ("llama-3.3-70b", ""),
    "meta-llama/Llama-3.1-405B-Instruct": ("llama-3.1-405b", ""),
    "meta-llama/Llama-3.1-405B-Instruct-FP8": ("llama-3.1-405b", "fp8"),
    "meta-llama/Llama-4-Scout-17B-16E-Instruct": ("llama-4-scout", ""),
    "meta-llama/Llama-4-Maverick-17B-128E-Instruct-FP8": ("llama-4-maverick", "fp8"),
    "openai/gpt-oss-20b": ("gpt-oss-20b", "fp4"),
    "openai/gpt-oss-120b": ("gpt-oss-120b", "fp4"),
}
MLENERGY_SKUS = {"H100": "H100-SXM", "B200": "B200"}


def read_mlenergy(path=None) -> pd.DataFrame:
    """ML.ENERGY v3 configurations: online serving (vLLM) at a max_num_seqs cap.

    kind 'decode', batch = avg_batch_size (time-averaged running batch, fractional),
    time_s = median_itl_ms / 1000 (median inter-token latency ≈ one decode step; in online serving
    a step sometimes carries chunked prefill work, which the median mostly ignores),
    output_tokens = avg_output_len. Decisions:
    - input length is NOT in the file (the prompts come from the task's dataset), so
      input_tokens and context_tokens are NaN. pdfleet.calibrate treats the mean input length of
      each task (the `source` column, 'mlenergy-v3:<task>') as one unknown fitted jointly with the
      efficiencies, context = input + output/2 — one extra parameter per task, not per row.
    - tp = num_gpus: expert-parallel runs (EP = num_gpus, TP = 1) are taken as if the GPUs shared
      the weights tensor-parallel (same bytes per GPU; the all-to-all is modelled as all-reduce).
      Data-parallel runs (data_parallel > 1) are dropped: avg_batch_size there spans replicas.
    - Mamba-Transformer hybrids (Nemotron-Nano) are dropped: the roofline has no SSM state.
    - weight_dtype: FP8 checkpoints → 'fp8', MXFP4 (gpt-oss) → 'fp4', else catalog default.
    """
    path = Path(path) if path else DEFAULT_PERF_DIR / "mlenergy_v3_configs.csv"
    raw = pd.read_csv(path)
    keep = (
        raw["model_id"].isin(MLENERGY_MODELS)
        & raw["gpu_model"].isin(MLENERGY_SKUS)
        & (raw["data_parallel"] == 1)
        & (raw["architecture"] != "Mamba-Transformer Hybrid")
        & raw["median_itl_ms"].gt(0)
    )
    raw = raw[keep].copy()
    names = raw["model_id"].map(MLENERGY_MODELS)
    out = pd.DataFrame(
        {
            "model": names.map(lambda t: t[0]),
            "sku": raw["gpu_model"].map(MLENERGY_SKUS),
            "tp": raw["num_gpus"],
            "engine": "vllm",
            "kind": "decode",
            "batch": raw["avg_batch_size"],
            "input_tokens": np.nan,
            "output_tokens": raw["avg_output_len"],
            "context_tokens": np.nan,
            "time_s": raw["median_itl_ms"] / 1e3,
            "source": "mlenergy-v3:" + raw["task"],
            "weight_dtype": names.map(lambda t: t[1]),
        }
    )
    return _finish(out)


def read_csv(path) -> pd.DataFrame:
    """A plain CSV with exactly the tidy columns (TIDY_COLUMNS; `weight_dtype` optional).

    Missing columns raise ValueError naming them; unknown `kind` values raise too. Extra columns
    are ignored. Use this for an operator's own measurements.
    """
    df = pd.read_csv(path)
    missing = [c for c in TIDY_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}; expected {TIDY_COLUMNS}")
    bad = sorted(set(df["kind"]) - set(KINDS))
    if bad:
        raise ValueError(f"{path}: unknown kind {bad}; use one of {list(KINDS)}")
    _check_rows(df, path)
    return _finish(df.copy())


def _check_rows(df: pd.DataFrame, path) -> None:
    """Reject rows a fit would silently misread: a fractional or < 1 tp, a batch < 1, a prefill or e2e
    row without input_tokens, a time that is not positive. The message names the first bad CSV line."""
    tp = pd.to_numeric(df["tp"], errors="coerce")
    checks = [
        ((tp < 1) | (tp != tp.round()) | tp.isna(), "tp must be a whole number >= 1"),
        (~(pd.to_numeric(df["batch"], errors="coerce") >= 1), "batch must be >= 1"),
        (df["kind"].isin(["prefill", "e2e", "itl"]) & ~(pd.to_numeric(df["input_tokens"], errors="coerce") >= 1),
         "prefill and e2e rows need input_tokens >= 1"),
        (~(pd.to_numeric(df["time_s"], errors="coerce") > 0), "time_s must be > 0"),
    ]
    for bad_rows, why in checks:
        if bad_rows.any():
            line = int(bad_rows.to_numpy().nonzero()[0][0]) + 2  # header is line 1
            raise ValueError(f"{path}:{line}: {why}")


def read_all(perf_dir=None) -> pd.DataFrame:
    """All shipped sources concatenated (Splitwise, LLM-Inference-Bench, ML.ENERGY v3)."""
    d = Path(perf_dir) if perf_dir else DEFAULT_PERF_DIR
    parts = [
        read_splitwise(d / "splitwise_perf_model.csv"),
        read_llm_inference_bench(d / "llm_inference_bench_all_results.csv"),
        read_mlenergy(d / "mlenergy_v3_configs.csv"),
    ]
    return pd.concat(parts, ignore_index=True)
