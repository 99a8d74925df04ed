"""Random but valid fleets for property tests (seeded NumPy, no extra dependencies)."""

import numpy as np

from pdfleet import spec


def random_fleet_doc(seed: int, n_models=3, n_skus=3, n_workloads=12, quarters=("q1", "q2", "q3"), max_tables=2):
    rng = np.random.default_rng(seed)
    skus = {f"s{i}": {"memory_gib": float(rng.choice([40, 80, 141])),
                      "price_usd_per_gpu_hour": round(float(rng.uniform(0.8, 8.0)), 2)} for i in range(n_skus)}
    models = {f"m{i}": {"params_b": float(rng.choice([7, 13, 70])), "layers": int(rng.choice([32, 40, 80])),
                        "kv_heads": 8, "head_dim": 128} for i in range(n_models)}
    profiles = []
    for m in models:
        for s in skus:
            for gpi in (1, 2, 4, 8):
                if rng.random() < 0.4:
                    continue
                prof = {"model": m, "sku": s, "gpus_per_instance": gpi}
                if rng.random() < 0.9:
                    lens = np.sort(rng.choice([256, 512, 1024, 2048, 4096, 8192], size=rng.integers(1, 5),
                                              replace=False))
                    tps = rng.uniform(2000, 40000) * gpi / 4 * rng.uniform(0.7, 1.0, size=len(lens))
                    prof["prefill"] = ({"max_tokens_per_s": float(tps[0])} if len(lens) == 1 else
                                       {"input_tokens": lens.tolist(), "max_tokens_per_s": tps.round(1).tolist()})
                if rng.random() < 0.9 or "prefill" not in prof:
                    tables = []
                    for _ in range(rng.integers(1, max_tables + 1)):
                        batch = np.sort(rng.choice(np.arange(1, 257), size=rng.integers(2, 9), replace=False))
                        base = rng.uniform(8, 40) * 4 / gpi ** 0.5
                        tpot = base * (1 + batch * rng.uniform(0.002, 0.02)) * rng.uniform(0.97, 1.03, len(batch))
                        tables.append({"input_tokens": int(rng.choice([256, 1024, 4096])),
                                       "output_tokens": int(rng.choice([64, 256, 1024])),
                                       "batch": batch.astype(float).tolist(), "tpot_ms": tpot.round(3).tolist()})
                    prof["decode"] = tables
                profiles.append(prof)
    workloads = {}
    for i in range(n_workloads):
        m = f"m{rng.integers(n_models)}"
        wl = {"model": m, "rate_rps": {q: round(float(rng.uniform(0, 40)), 3) for q in quarters},
              "input_tokens": int(rng.integers(64, 9000)), "output_tokens": int(rng.integers(16, 2048)),
              "slo": {"ttft_s": round(float(rng.uniform(0.3, 5)), 2), "tpot_ms": round(float(rng.uniform(15, 120)), 1)},
              "overhead_s": round(float(rng.uniform(0, 0.2)), 3)}
        if rng.random() < 0.3:
            wl["slo"]["ttft_quantile"] = float(rng.choice([0.5, 0.9, 0.99]))
        workloads[f"w{i}"] = wl
    if not profiles:
        profiles.append({"model": "m0", "sku": "s0", "gpus_per_instance": 1, "prefill": {"max_tokens_per_s": 1e4}})
    return {"planning": {"quarters": list(quarters)}, "skus": skus, "models": models, "profiles": profiles,
            "workloads": workloads}


def random_fleet(seed: int, **kw) -> spec.Fleet:
    return spec.from_dict(random_fleet_doc(seed, **kw))
