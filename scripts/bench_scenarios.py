"""Benchmark: `optimize --scenarios` (one capacity pass, one stacked search) against one run per scenario.

    python scripts/bench_scenarios.py [--rows 2000] [--seed 0] [--solver auto]

A synthetic fleet (scripts/gen_fleet.py) under four scenarios (base, demand +30%, a cheaper sku, a
tighter inventory). Runs scenarios.run_all as pdfleet does (roofline predictions and capacities computed
once; scenarios whose limits bind searched together in one stacked problem, search/stack.py), then the
reference: optimize.run on each scenario alone; an untimed run first compiles every kernel, so neither pays
for compilation. Prints each scenario's cost and certified gap both ways, seconds per stage, then
    RESULT rows=<n> scenarios=4 together_s=<s> separate_s=<s> speedup=<x>
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gen_fleet  # noqa: E402

STAGES = ("roofline_s", "build_s", "capacity_s", "problem_s", "search_s", "tables_s")


def scenarios_for(fleet) -> dict:
    """Four what-ifs of a generated fleet: as is, 30% more demand, the first sku at half its rent, and the
    first capped sku without owned GPUs at half its inventory."""
    first = next(iter(fleet.skus))
    capped = next(s for s, k in fleet.skus.items() if isinstance(k.inventory, float) and not k.owned)
    return {"base": {}, "demand+30%": {"demand_scale": 1.3},
            "cheap": {"prices": {first: 0.5 * fleet.skus[first].price_usd_per_gpu_hour}},
            "tight": {"inventory": {capped: fleet.skus[capped].inventory // 2}}}


def stage_line(label: str, seconds: float, manifests: list[dict]) -> str:
    """Seconds per stage summed over scenarios; search is the wall time left after the other stages (a
    stacked search is one run, which every scenario it covers reports as its own search_s)."""
    per = [sum(m["timings_s"].get(k, 0.0) for m in manifests) for k in STAGES]
    search = STAGES.index("search_s")
    per[search] = seconds - sum(per[:search] + per[search + 1:])
    return f"{label:<10} {seconds:>8.2f} " + " ".join(f"{s:>10.2f}" for s in per)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--solver", default="auto")
    args = ap.parse_args(argv)

    from pdfleet import optimize, scenarios
    from pdfleet import spec as S

    doc = gen_fleet.generate(args.rows, args.seed)
    fleet = S.from_dict(doc)
    loaded = scenarios.load_dict(scenarios_for(fleet))
    optimize.run(fleet, solver=args.solver)  # warm-up: both timed runs below find every kernel compiled
    t0 = time.perf_counter()
    *_, shared = scenarios.run_all(fleet, loaded, solver=args.solver)
    t1 = time.perf_counter()
    separate = {name: optimize.run(scenarios.apply(fleet, name, sc), solver=args.solver) for name, sc in loaded.items()}
    t2 = time.perf_counter()
    print(f"bench_scenarios: {args.rows:,} rows, {len(loaded)} scenarios, solver {args.solver}")
    print(f"{'scenario':<12} {'separate $/h':>14} {'gap':>8} {'together $/h':>14} {'gap':>8}  solver (together)")
    for name in loaded:
        a, b = separate[name].manifest, shared[name].manifest
        print(f"{name:<12} {a['cost_usd_per_hour']:>14,.2f} {a['gap']:>8.3%} {b['cost_usd_per_hour']:>14,.2f} "
              f"{b['gap']:>8.3%}  {b['solver']}")
    print(f"{'run':<10} {'seconds':>8} " + " ".join(f"{k:>10}" for k in STAGES))
    print(stage_line("together", t1 - t0, [r.manifest for r in shared.values()]))
    print(stage_line("separate", t2 - t1, [r.manifest for r in separate.values()]))
    print(f"RESULT rows={args.rows} scenarios={len(loaded)} together_s={t1 - t0:.2f} separate_s={t2 - t1:.2f} "
          f"speedup={(t2 - t1) / (t1 - t0):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
