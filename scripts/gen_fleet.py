"""Synthetic but realistic fleet.yaml at scale, for benchmarks and tests of the fleet search.

    python scripts/gen_fleet.py --rows 20000 --seed 0 -o fleet.yaml [--quarters 4]

About `rows` workload-quarter rows (workloads = rows / quarters) over ten catalog models (8B to 405B,
dense and MoE), the twelve catalog skus with economics, and explicit measured-style `profiles:` for every
(model, sku, TP) a team would deploy: each model runs on 3-6 skus at 2-3 TP degrees where its weights
fit (at most 16 profiles per model, so at most 16 candidates per role). `planning.roofline` is false:
only these profiles are planned, which keeps planning fast.

Profile tables are generated from the sku's catalog TFLOP/s and HBM bandwidth with seeded efficiencies
and noise (NOT pdfleet's roofline):
- prefill: tokens/s(L) = L / (max(compute, weight read) + TP all-reduce + fixed overhead) at input
  lengths 128 .. 32768; compute counts linear layers (2 x active params per token) plus causal attention.
- decode: TPOT(B) = max(HBM time of touched weights + KV, compute time) + all-reduce + overhead, at two
  contexts (2048/256 and 12288/1024 tokens), batches 1, 2, 4, ... up to the KV-memory limit; MoE
  models touch 1 - (1 - k/E)^B of their experts at batch B.
Workloads: chat (~1k in / 200 out), code (~2k / 30), RAG (~6k / 300), agent (~8k / 500), lengths
lognormal around those; demand per quarter lognormal, growing 0-30% a quarter (a few launch in a later
quarter); SLOs TTFT 0.5-5 s and TPOT 20-100 ms, loosened where no candidate could meet them (every
workload is servable); about 30% bound the p90 TTFT.
Economics are scaled to an estimate of the GPUs the workloads need (each on its cheapest rented
deployment): owned A100-80GB / H100-SXM / MI250 fleets below that need, binding inventory on A100-80GB,
B200, MI300X, H20 and GH200 (some quarters), purchases of the newer skus at 8-14 months of rent
(amortized over 12 quarters, lead 0-1, some with buy_max), rent_max on a few.

Deterministic for a seed: the same arguments give a byte-identical file. Prints workload and row
counts to stderr.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import yaml

from pdfleet import catalog

GIB = 1024.0**3
MEM_UTIL = 0.9  # planning.memory_utilization (the default)
WEIGHT_SHARE = 0.7  # a (model, sku, TP) is deployed only where weights take at most this share of memory
MAX_PROFILES_PER_MODEL = 16  # candidates per role are bucketed to powers of two: stay within 16
PREFILL_LENGTHS = [128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768]
DECODE_CONTEXTS = [(2048, 256), (12288, 1024)]  # (input, output) of the two measured decode tables
BATCHES = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
MAX_INPUT, MAX_OUTPUT = 12000, 2048

# Which skus a team runs each model on (3-6 skus), and weight-dtype overrides (405B runs in FP8).
DEPLOYMENTS = {
    "llama-3.1-8b": ["L4", "L40S", "A100-SXM-40GB", "A100-SXM-80GB", "H100-PCIE", "H20"],
    "qwen3-8b": ["L40S", "A100-SXM-80GB", "H100-SXM", "MI250"],
    "qwen3-14b": ["L40S", "A100-SXM-80GB", "H100-PCIE", "H100-SXM", "GH200"],
    "qwen3-32b": ["A100-SXM-80GB", "H100-SXM", "H200-SXM", "MI300X", "H20"],
    "mixtral-8x7b": ["A100-SXM-80GB", "H100-SXM", "MI250", "MI300X"],
    "qwen3-30b-a3b": ["L40S", "A100-SXM-40GB", "H100-SXM", "H20", "GH200"],
    "llama-3.1-70b": ["A100-SXM-80GB", "H100-SXM", "H200-SXM", "B200", "MI300X", "GH200"],
    "qwen2-72b": ["H100-SXM", "H200-SXM", "H20", "MI300X"],
    "qwen3-235b-a22b": ["H200-SXM", "B200", "MI300X", "H20"],
    "llama-3.1-405b": ["H100-SXM", "H200-SXM", "B200", "MI300X"],
}
MODEL_OVERRIDES = {"llama-3.1-405b": {"weight_dtype": "fp8"}}
MODEL_SHARE = {  # share of workloads per model (sums to 1)
    "llama-3.1-8b": 0.20, "qwen3-8b": 0.12, "qwen3-14b": 0.10, "qwen3-32b": 0.10, "mixtral-8x7b": 0.06,
    "qwen3-30b-a3b": 0.10, "llama-3.1-70b": 0.16, "qwen2-72b": 0.06, "qwen3-235b-a22b": 0.05,
    "llama-3.1-405b": 0.05,
}
# Workload kinds: (share, median input, median output, TTFT SLO range s, TPOT SLO range ms)
KINDS = {
    "chat": (0.40, 1000, 200, (0.5, 2.0), (30, 80)),
    "code": (0.25, 2000, 30, (0.5, 1.5), (20, 50)),
    "rag": (0.20, 6000, 300, (1.5, 4.0), (40, 100)),
    "agent": (0.15, 8000, 500, (2.0, 5.0), (30, 80)),
}
# Skus without a catalog price (China-market H20, GH200): a synthetic USD per GPU-hour.
PRICE_FILL = {"H20": 1.40, "GH200": 2.99}
SOFTWARE = {"cdna2": 0.75, "cdna3": 0.85}  # efficiency factor of the ROCm stack vs CUDA (synthetic)
QUARTER_LABELS = [f"{y}Q{q}" for y in range(2027, 2040) for q in range(1, 5)]


# ---------------------------------------------------------------- performance tables


def _flops(sku: dict, dtype: str) -> float:
    """Peak dense FLOP/s for the weight dtype (FP8/FP4 where the chip has it, else BF16)."""
    if dtype == "fp4" and sku.get("tflops_fp4"):
        return sku["tflops_fp4"] * 1e12
    if dtype in ("fp8", "fp4") and sku.get("tflops_fp8"):
        return sku["tflops_fp8"] * 1e12
    return sku["tflops_bf16"] * 1e12


def _kv_bytes(m: dict) -> float:
    return 2.0 * m["layers"] * m["kv_heads"] * m["head_dim"] * 2.0  # bf16 KV cache


def _weight_bytes(m: dict) -> float:
    return m["params_b"] * 1e9 * {"bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "fp4": 0.5}[m["weight_dtype"]]


def _touched_weights(m: dict, batch: np.ndarray) -> np.ndarray:
    """Weight bytes one decode step reads at batch B: all of a dense model; a MoE reads its shared part
    and 1 - (1 - k/E)^B of its experts."""
    total = _weight_bytes(m)
    if not m.get("experts"):
        return np.full(np.shape(batch), total)
    per_param = total / (m["params_b"] * 1e9)
    frac = m["experts_per_token"] / m["experts"]
    shared = 0.3 * m["active_params_b"] * 1e9 * per_param
    return shared + (total - shared) * (1.0 - (1.0 - frac) ** np.asarray(batch, float))


def _allreduce_s(sku: dict, m: dict, tp: int, tokens: np.ndarray) -> np.ndarray:
    """Two all-reduces per layer of the hidden state (ring: 2 (tp-1)/tp of the bytes) plus latency."""
    if tp == 1:
        return np.zeros(np.shape(tokens))
    bytes_ = 2.0 * (tp - 1) / tp * np.asarray(tokens, float) * m["hidden_size"] * 2.0
    return 2 * m["layers"] * (6e-6 * (1 + 0.5 * math.log2(tp)) + bytes_ / (sku["link_gbps"] * 1e9))


def profile_tables(m: dict, sku: dict, tp: int, rng: np.random.Generator) -> tuple[dict, list[dict]] | None:
    """(prefill table, decode tables) of one deployment, or None when no batch fits in memory."""
    soft = SOFTWARE.get(sku.get("family", ""), 1.0)
    eff_c = rng.uniform(0.35, 0.55) * soft * tp ** -0.08  # compute efficiency, falling a little with TP
    eff_b = rng.uniform(0.55, 0.75) * soft  # HBM bandwidth efficiency
    flops = _flops(sku, m["weight_dtype"]) * tp * eff_c
    bw = sku["hbm_tbps"] * 1e12 * tp * eff_b
    active = m["active_params_b"] * 1e9
    d_attn = m["heads"] * m["head_dim"]
    fixed = rng.uniform(2e-3, 4e-3)

    lens = np.array(PREFILL_LENGTHS, float)
    compute = lens * (2.0 * active + 2.0 * m["layers"] * lens * d_attn) / flops
    weights = _touched_weights(m, np.minimum(lens, 4096)) / bw
    t = np.maximum(compute, weights) + _allreduce_s(sku, m, tp, lens) + fixed
    tps = lens / t * rng.lognormal(0.0, 0.03, len(lens))
    prefill = {"input_tokens": [int(x) for x in lens], "max_tokens_per_s": [float(f"{x:.5g}") for x in tps]}

    free = tp * sku["memory_gib"] * GIB * MEM_UTIL - _weight_bytes(m)
    kv = _kv_bytes(m) * max(1.0, tp / m["kv_heads"])
    tables = []
    for inp, out in DECODE_CONTEXTS:
        ctx = inp + out / 2.0
        b_max = math.floor(free / (kv * (inp + out)))
        batch = np.array([b for b in BATCHES if b <= b_max], float)
        if len(batch) == 0:
            continue
        read = (_touched_weights(m, batch) + batch * ctx * kv) / bw
        comp = batch * 2.0 * active / flops
        step = np.maximum(read, comp) + _allreduce_s(sku, m, tp, batch) + fixed
        tpot = np.maximum.accumulate(step * 1e3 * rng.lognormal(0.0, 0.02, len(batch)))
        tables.append({"input_tokens": inp, "output_tokens": out, "batch": [int(b) for b in batch],
                       "tpot_ms": [float(f"{x:.4g}") for x in tpot]})
    if not tables:
        return None
    return prefill, tables


def deployments(models: dict, skus: dict) -> list[tuple[str, str, int]]:
    """(model, sku, TP) of every deployed profile: per (model, sku) the smallest TP whose weights take at
    most WEIGHT_SHARE of memory, and up to two doublings of it (within the node); at most
    MAX_PROFILES_PER_MODEL per model (the largest TPs dropped first)."""
    out = []
    for name, sku_names in DEPLOYMENTS.items():
        weights = _weight_bytes(models[name])
        cand = []  # (rank of the TP within its sku, sku order, sku, TP)
        for si, s in enumerate(sku_names):
            sku = skus[s]
            fits = [tp for tp in (1, 2, 4, 8) if tp <= sku["gpus_per_node"]
                    and weights <= WEIGHT_SHARE * tp * sku["memory_gib"] * GIB * MEM_UTIL]
            cand += [(rank, si, s, tp) for rank, tp in enumerate(fits[:3])]
        keep = sorted(sorted(cand)[:MAX_PROFILES_PER_MODEL], key=lambda c: (c[1], c[3]))
        out += [(name, s, tp) for _, _, s, tp in keep]
    return out


# ---------------------------------------------------------------- workloads


def _nice(x: float, digits: int = 3) -> float:
    return float(f"{x:.{digits}g}")


def _capacity(prefill: dict, tables: list[dict], inp: int, out: int, ttft: float, tpot: float, k: float):
    """(prefill req/s, decode req/s) per instance by the paper's rules on this generator's tables (a
    close estimate of what pdfleet computes, for sizing SLOs and economics)."""
    tps = float(np.interp(inp, prefill["input_tokens"], prefill["max_tokens_per_s"]))
    mu = tps / inp
    pre = max(mu - k / ttft, 0.0)
    ctx = inp + out / 2.0
    table = next((t for t in tables if t["input_tokens"] + t["output_tokens"] / 2.0 >= ctx), tables[-1])
    b, tp_ms = np.array(table["batch"], float), np.array(table["tpot_ms"], float)
    ok = tp_ms <= tpot
    if not ok.any():
        return pre, 0.0
    i = int(np.nonzero(ok)[0][-1])
    return pre, b[i] / (tp_ms[i] / 1e3) / out


def generate(rows: int, seed: int = 0, quarters: int = 4) -> dict:
    """The fleet.yaml document (a dict) of about `rows` workload-quarter rows."""
    if quarters < 1 or quarters > len(QUARTER_LABELS):
        raise ValueError(f"quarters must be 1..{len(QUARTER_LABELS)}")
    rng = np.random.default_rng(seed)
    n_work = max(1, rows // quarters)
    qs = QUARTER_LABELS[:quarters]
    cat_models, cat_skus = catalog.load_models(), catalog.load_skus()
    models = {n: {**cat_models[n], **MODEL_OVERRIDES.get(n, {})} for n in DEPLOYMENTS}
    skus = {n: {**s, "price_usd_per_gpu_hour": s.get("price_usd_per_gpu_hour", PRICE_FILL.get(n))}
            for n, s in cat_skus.items()}
    sku_names = list(skus)

    # profiles
    profiles, prof_meta = [], []  # meta: (model, sku, tp, prefill, tables)
    for name, s, tp in deployments(models, skus):
        tabs = profile_tables(models[name], skus[s], tp, rng)
        if tabs is None:
            continue
        prefill, decode = tabs
        profiles.append({"model": name, "sku": s, "gpus_per_instance": tp, "engine": "vllm (synthetic)",
                         "source": f"gen_fleet.py seed {seed}", "prefill": prefill, "decode": decode})
        prof_meta.append((name, s, tp, prefill, decode))
    by_model: dict[str, list[int]] = {}
    for i, (name, *_rest) in enumerate(prof_meta):
        by_model.setdefault(name, []).append(i)

    # workloads
    model_names = list(MODEL_SHARE)
    share = np.array([MODEL_SHARE[n] for n in model_names])
    kind_names = list(KINDS)
    kshare = np.array([KINDS[k][0] for k in kind_names])
    w_model = rng.choice(len(model_names), n_work, p=share / share.sum())
    w_kind = rng.choice(len(kind_names), n_work, p=kshare / kshare.sum())
    base_rate = np.clip(rng.lognormal(np.log(1.5), 1.2, n_work), 0.05, 200.0)
    growth = rng.uniform(0.0, 0.30, (n_work, quarters))
    launch = np.where(rng.random(n_work) < 0.05, rng.integers(1, max(quarters, 2), n_work), 0)
    if quarters == 1:
        launch[:] = 0  # a single quarter: every workload has demand in it
    lens_z = rng.normal(0.0, 1.0, (n_work, 2))
    slo_u = rng.random((n_work, 2))
    p90 = rng.random(n_work) < 0.3
    overhead = np.round(rng.uniform(0.0, 0.05, n_work), 3)

    workloads = {}
    need = np.zeros((len(sku_names), quarters))  # GPUs of each sku, each workload on its cheapest deployment
    for i in range(n_work):
        model = model_names[w_model[i]]
        kind = kind_names[w_kind[i]]
        _, med_in, med_out, (t_lo, t_hi), (p_lo, p_hi) = KINDS[kind]
        inp = int(np.clip(round(med_in * math.exp(0.5 * lens_z[i, 0])), 64, MAX_INPUT))
        out = int(np.clip(round(med_out * math.exp(0.5 * lens_z[i, 1])), 8, MAX_OUTPUT))
        k = math.log(10.0) if p90[i] else 1.0
        ttft = t_lo + (t_hi - t_lo) * slo_u[i, 0]
        tpot = p_lo + (p_hi - p_lo) * slo_u[i, 1]
        # loosen SLOs no deployment of the model could meet (4x the best single-request prefill time,
        # 1.3x the best batch-1 TPOT at the workload's context)
        best_pre, best_tpot = np.inf, np.inf
        ctx = inp + out / 2.0
        for j in by_model[model]:
            _, _, _, pre, tabs = prof_meta[j]
            tps = float(np.interp(inp, pre["input_tokens"], pre["max_tokens_per_s"]))
            best_pre = min(best_pre, inp / tps)
            table = next((t for t in tabs if t["input_tokens"] + t["output_tokens"] / 2.0 >= ctx), tabs[-1])
            best_tpot = min(best_tpot, table["tpot_ms"][0])
        ttft = math.ceil(10 * max(ttft, 4.0 * k * best_pre + overhead[i])) / 10
        tpot = float(math.ceil(max(tpot, 1.3 * best_tpot)))
        rate = base_rate[i] * np.cumprod(np.concatenate([[1.0], 1.0 + growth[i, 1:]]))
        rate = np.where(np.arange(quarters) >= launch[i], rate, 0.0)
        slo = {"ttft_s": float(ttft), "tpot_ms": tpot}
        if p90[i]:
            slo["ttft_quantile"] = 0.9
        w = {"model": model, "rate_rps": {q: _nice(r) for q, r in zip(qs, rate)} if quarters > 1 else _nice(rate[0]),
             "input_tokens": inp, "output_tokens": out, "slo": slo}
        if overhead[i] > 0:
            w["overhead_s"] = float(overhead[i])
        workloads[f"{kind}-{model}-{i:06d}"] = w
        # cheapest rented deployment (same sku for both roles) sizes the economics below
        best = None
        for j in by_model[model]:
            _, s, tp, pre, tabs = prof_meta[j]
            pre_r, dec_r = _capacity(pre, tabs, inp, out, ttft - overhead[i], tpot, k)
            if pre_r <= 0 or dec_r <= 0:
                continue
            gpus = tp * (np.maximum(np.ceil(rate / pre_r), 1) + np.maximum(np.ceil(rate / dec_r), 1))
            gpus = np.where(rate > 0, gpus, 0.0)
            cost = float(gpus.sum()) * skus[s]["price_usd_per_gpu_hour"]
            if best is None or cost < best[0]:
                best = (cost, sku_names.index(s), gpus)
        if best is not None:
            need[best[1]] += best[2]

    fleet = {
        "planning": {"quarters": qs, "rounding": "ceil", "roofline": False, "tp_degrees": [1, 2, 4, 8],
                     "hours_per_quarter": 2190, "switch_cost_usd": 1000, "seed": seed},
        "skus": _economics(skus, need, qs, rng),
        # catalog names; an empty mapping takes the catalog entry as it is
        "models": {n: dict(MODEL_OVERRIDES.get(n, {})) for n in models},
        "profiles": profiles,
        "workloads": workloads,
    }
    return fleet


def _economics(skus: dict, need: np.ndarray, qs: list[str], rng: np.random.Generator) -> dict:
    """Per-sku overrides scaled to `need` [S, Q] (GPUs each sku would carry if every workload rented its
    cheapest deployment). Every sku is listed by name; unlisted fields come from the catalog."""
    names = list(skus)
    nq = len(qs)
    need_of = {n: need[i] for i, n in enumerate(names)}
    peak = {n: max(float(need_of[n].max()), 8.0) for n in names}
    first = {n: max(float(need_of[n][0]), 8.0) for n in names}

    def whole(x: float, step: int = 8) -> int:  # GPU counts in whole 8-GPU nodes
        return int(max(step, step * round(x / step)))

    def per_q(values) -> dict | int:
        values = [int(v) for v in values]
        return values[0] if nq == 1 or len(set(values)) == 1 else dict(zip(qs, values))

    out: dict[str, dict] = {n: {} for n in names}
    for n, price in PRICE_FILL.items():
        out[n]["price_usd_per_gpu_hour"] = price
    # owned fleets (sunk), below what the workloads would put there: their running cost only
    for n, frac, run in (("A100-SXM-80GB", 0.9, 0.40), ("H100-SXM", 0.5, 0.55), ("MI250", 1.2, 0.30)):
        owned = whole(frac * first[n])
        out[n].update(owned=owned, owned_usd_per_gpu_hour=run)
    out["A100-SXM-80GB"]["inventory"] = out["A100-SXM-80GB"]["owned"] + whole(0.2 * peak["A100-SXM-80GB"])
    out["MI250"]["rent_max"] = 0
    # binding inventory: scarce B200s (supply ramps over the horizon), MI300X short in the first half of
    # the horizon, a fixed H20 allocation, few GH200s. Every model keeps a sku with unlimited rent
    # (A100-40GB, H100-PCIE, H100-SXM or H200-SXM), so every workload stays servable.
    ramp = np.linspace(0.4, 0.8, nq)
    out["B200"]["inventory"] = per_q(whole(r * peak["B200"]) for r in ramp)
    out["MI300X"]["inventory"] = per_q(whole(0.7 * need_of["MI300X"][q]) if q < max(nq // 2, 1)
                                       else whole(2.0 * peak["MI300X"]) for q in range(nq))
    out["H20"]["inventory"] = per_q(whole(0.5 * peak["H20"]) for _ in qs)
    out["GH200"]["inventory"] = per_q(whole(0.8 * peak["GH200"]) for _ in qs)
    # rent caps
    out["L40S"]["rent_max"] = per_q(whole(0.8 * peak["L40S"]) for _ in qs)
    out["GH200"]["rent_max"] = per_q(whole(0.5 * peak["GH200"]) for _ in qs)
    # purchases of the newer skus: 8-14 months of rent, amortized over 12 quarters
    for n, months, lead, cap in (("H100-SXM", 8, 1, 0.3), ("H200-SXM", 10, 1, 0.25), ("B200", 12, 1, 0.2),
                                 ("MI300X", 9, 0, None), ("GH200", 14, 0, 0.25)):
        months = months * rng.uniform(0.95, 1.05)
        o = out[n]
        o["purchase_usd_per_gpu"] = float(round(skus[n]["price_usd_per_gpu_hour"] * 730 * months, -2))
        o["amortization_quarters"] = 12
        o["lead_time_quarters"] = lead
        if cap is not None:
            o["buy_max"] = whole(cap * peak[n])
    return out


def dump(doc: dict) -> str:
    """YAML text of a document (deterministic: insertion order, flow-style leaf lists)."""
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    head = ("# Synthetic fleet written by scripts/gen_fleet.py (see its docstring). Profiles are generated "
            "from catalog\n# TFLOP/s and HBM bandwidth, not measured.\n")
    return head + yaml.dump(doc, Dumper=dumper, sort_keys=False, default_flow_style=None, width=120)


def counts(doc: dict) -> tuple[int, int]:
    """(workloads, workload-quarter rows)."""
    return len(doc["workloads"]), len(doc["workloads"]) * len(doc["planning"]["quarters"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, required=True, help="workload-quarter rows (workloads = rows / quarters)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quarters", type=int, default=4)
    ap.add_argument("-o", "--out", required=True, help="fleet.yaml to write")
    args = ap.parse_args(argv)
    doc = generate(args.rows, args.seed, args.quarters)
    Path(args.out).write_text(dump(doc), encoding="utf-8")
    w, r = counts(doc)
    print(f"gen_fleet: {w} workloads x {len(doc['planning']['quarters'])} quarters = {r} rows, "
          f"{len(doc['profiles'])} profiles, {len(doc['models'])} models, {len(doc['skus'])} skus -> {args.out}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
