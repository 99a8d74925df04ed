"""Small random fleets with economics (owned, inventory, rent/buy limits, purchases, budget, switches,
pairing, network) for the fleet-search tests. Seeded NumPy only; every document validates.

Fleets are kept tiny on purpose (2-3 skus, 1-2 models, 2-4 workloads, 1-3 quarters, a few explicit
profiles per model, `roofline: false`), so that every (quarter, workload) row has only a handful of
(prefill, decode) pairs and a brute force over all choices stays cheap.
"""

from __future__ import annotations

import numpy as np

from pdfleet import spec

FAMILIES = ("fam_a", "fam_b")


def _per_quarter(rng, quarters, lo: int, hi: int, floor=None):
    """One whole number, or (sometimes) a {quarter: whole number} map; each >= floor[q] when given."""
    if rng.random() < 0.5:
        v = int(rng.integers(lo, hi + 1))
        return v if floor is None else max(v, max(floor.values()))
    out = {q: int(rng.integers(lo, hi + 1)) for q in quarters}
    if floor is not None:
        out = {q: max(v, floor[q]) for q, v in out.items()}
    return out


def _as_map(value, quarters) -> dict:
    return dict(value) if isinstance(value, dict) else {q: value for q in quarters}


def random_economics_doc(seed: int, n_skus: int | None = None, n_models: int | None = None,
                         n_workloads: int | None = None, n_quarters: int | None = None,
                         max_profiles: int = 3, economics: bool = True) -> dict:
    """A small random valid fleet.yaml document with random economics.

    economics=False gives the same kind of fleet with no shared limit at all (nothing owned, no
    inventory, no rent/buy caps, no purchases, no budget): only rent prices, switch costs and pairing.
    """
    rng = np.random.default_rng(seed)
    n_skus = n_skus or int(rng.integers(2, 4))
    n_models = n_models or int(rng.integers(1, 3))
    n_workloads = n_workloads or int(rng.integers(2, 5))
    n_quarters = n_quarters or int(rng.integers(1, 4))
    quarters = [f"q{i + 1}" for i in range(n_quarters)]

    skus: dict[str, dict] = {}
    for i in range(n_skus):
        price = round(float(rng.uniform(0.8, 6.0)), 2)
        s: dict = {"memory_gib": 80.0, "price_usd_per_gpu_hour": price}
        if rng.random() < 0.6:
            s["network_gbps"] = float(rng.choice([25.0, 100.0, 200.0, 400.0]))
        if rng.random() < 0.7:
            s["family"] = str(rng.choice(FAMILIES))
        if economics:
            owned = None
            if rng.random() < 0.4:
                owned = _per_quarter(rng, quarters, 0, 4)
                s["owned"] = owned
                if rng.random() < 0.5:
                    # mostly below the rent price, sometimes above it (then renting beats running owned)
                    s["owned_usd_per_gpu_hour"] = round(float(rng.uniform(0.05, 1.3)) * price, 2)
            if rng.random() < 0.35:
                floor = _as_map(owned if owned is not None else 0, quarters)
                s["inventory"] = _per_quarter(rng, quarters, 1, 8, floor=floor)
            if rng.random() < 0.3:
                s["rent_max"] = _per_quarter(rng, quarters, 0, 6)
            if rng.random() < 0.45:
                a = int(rng.integers(1, 9))
                # a purchase worth between ~0.4 and ~1.6 quarters of rent per amortization quarter
                s["purchase_usd_per_gpu"] = round(price * 2190.0 * a * float(rng.uniform(0.4, 1.6)), 2)
                s["amortization_quarters"] = a
                s["lead_time_quarters"] = int(rng.integers(0, 2))
                if rng.random() < 0.35:
                    s["buy_max"] = _per_quarter(rng, quarters, 0, 4)
        skus[f"s{i}"] = s

    models = {f"m{i}": {"params_b": float(rng.choice([7.0, 13.0])), "layers": int(rng.choice([32, 40])),
                        "kv_heads": 8, "head_dim": 128} for i in range(n_models)}
    profiles = []
    combos = [(s, g) for s in skus for g in (1, 2)]
    for m in models:
        k = int(rng.integers(2, max_profiles + 1))
        picked = rng.choice(len(combos), size=min(k, len(combos)), replace=False)
        roles = [("prefill", "decode")] + [tuple(r for r in ("prefill", "decode") if rng.random() < 0.8)
                                           for _ in range(len(picked) - 1)]
        for j, idx in enumerate(picked):
            sku, gpi = combos[int(idx)]
            have = roles[j] or ("prefill", "decode")
            prof: dict = {"model": m, "sku": sku, "gpus_per_instance": gpi}
            if "prefill" in have:
                prof["prefill"] = {"max_tokens_per_s": round(float(rng.uniform(6000, 30000)) * gpi ** 0.8, 1)}
            if "decode" in have:
                batch = [1, 8, 16, 32, 64]
                base = float(rng.uniform(10, 30)) / gpi ** 0.4
                slope = float(rng.uniform(0.005, 0.03))
                prof["decode"] = [{"input_tokens": 1024, "output_tokens": 256, "batch": [float(b) for b in batch],
                                   "tpot_ms": [round(base * (1 + slope * b), 3) for b in batch]}]
            profiles.append(prof)

    workloads = {}
    for i in range(n_workloads):
        rates = {}
        for q in quarters:
            rates[q] = 0.0 if rng.random() < 0.1 else round(float(rng.uniform(0.5, 10.0)), 2)
        wl = {"model": f"m{int(rng.integers(n_models))}", "rate_rps": rates,
              "input_tokens": int(rng.choice([256, 512, 1024, 2048])), "output_tokens": int(rng.choice([64, 128, 256])),
              "slo": {"ttft_s": round(float(rng.uniform(0.4, 2.0)), 2),
                      "tpot_ms": round(float(rng.uniform(25, 60)), 1)},
              "overhead_s": round(float(rng.uniform(0.0, 0.1)), 3)}
        workloads[f"w{i}"] = wl

    planning: dict = {"quarters": quarters, "roofline": False,
                      "switch_cost_usd": float(rng.choice([0.0, 100.0, 1000.0])),
                      "pairing": str(rng.choice(["any", "same_sku", "same_family"]))}
    if economics and rng.random() < 0.3:
        planning["budget_usd_per_hour"] = (round(float(rng.uniform(3, 40)), 1) if rng.random() < 0.5 else
                                           {q: round(float(rng.uniform(3, 40)), 1) for q in quarters})
    if rng.random() < 0.2:
        planning["min_instances"] = {"prefill": 1, "decode": 2}
    if rng.random() < 0.2:
        planning["headroom"] = 0.1
    return {"planning": planning, "skus": skus, "models": models, "profiles": profiles, "workloads": workloads}


def random_economics_fleet(seed: int, **kw) -> spec.Fleet:
    return spec.from_dict(random_economics_doc(seed, **kw))
