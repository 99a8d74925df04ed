"""`pdfleet optimize`: spec -> arrays -> exact solver -> plan tables -> files. The only orchestration."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from pdfleet import __version__, arrays, io, plan, predicted
from pdfleet import spec as S


@dataclass
class Result:
    plan: pd.DataFrame
    fleet: pd.DataFrame
    manifest: dict
    timings: dict = field(default_factory=dict)


# Fleets up to this many (row x candidate x quarter) cells are solved in float64: exact dollars and
# counts at a cost nobody notices; larger ones in float32, the speed path (counts then carry float32's
# ~1e-7 relative rounding, which only matters within a hair of a whole instance).
FLOAT64_CELLS = 1 << 22


def run(fleet: S.Fleet, rounding: str | None = None, source: str | Path | None = None, progress=None,
        precision: str = "auto") -> Result:
    """Plan a validated fleet. rounding overrides planning.rounding when given; precision is
    'auto' (float64 unless the fleet is huge), 'float64' or 'float32'."""
    import jax

    from pdfleet.search import exact

    t0 = time.perf_counter()
    rounding = rounding or fleet.planning.rounding
    prediction = predicted.predict(fleet)
    fleet = fleet.model_copy(update={"profiles": [*fleet.profiles, *prediction.profiles]})
    t_pred = time.perf_counter()
    problem, rows = arrays.build(fleet)
    cells = problem.workloads.input_tokens.shape[0] * problem.block_candidates.shape[1] * len(fleet.planning.quarters)
    use64 = precision == "float64" or (precision == "auto" and cells <= FLOAT64_CELLS)
    t1 = time.perf_counter()
    with jax.enable_x64(use64):
        sol = jax.device_get(exact.solve_chunked(arrays.as_float64(problem) if use64 else problem,
                                                 nearest=rounding == "nearest", chunk=arrays.CHUNK,
                                                 progress=progress))
    t2 = time.perf_counter()
    plan_df = plan.plan_frame(fleet, rows, sol)
    fleet_df = plan.fleet_frame(fleet, plan_df)
    t3 = time.perf_counter()
    timings = {"roofline_s": t_pred - t0, "build_s": t1 - t_pred, "solve_s": t2 - t1, "tables_s": t3 - t2}
    manifest = {
        "pdfleet_version": __version__,
        "input_file": str(source) if source else None,
        "input_sha256": io.sha256_file(source) if source else None,
        "solver": "exact",
        "optimal": True,  # for the problem without shared limits (inventory is checked, not enforced)
        "gap": 0.0,
        "shared_limits_enforced": False,
        "rounding": rounding,
        "quarters": fleet.planning.quarters,
        "seed": fleet.planning.seed,
        "backend": jax.default_backend(),
        "precision": "float64" if use64 else "float32",
        "workloads": len(fleet.workloads),
        "profiles": len(fleet.profiles) - len(prediction.profiles),
        "roofline_profiles": len(prediction.profiles),
        "roofline_skipped": prediction.skipped,
        "total_cost_usd_per_hour": {q: float(fleet_df.loc[fleet_df["quarter"] == q, "cost_usd_per_hour"].sum())
                                    for q in fleet.planning.quarters},
        "status_counts": {k: int(v) for k, v in plan_df["status"].value_counts().sort_index().items()},
        "over_inventory": fleet_df.loc[fleet_df["over_inventory"], ["quarter", "sku", "gpus", "inventory_gpus"]]
        .to_dict("records"),
        "timings_s": timings,
    }
    return Result(plan_df, fleet_df, manifest, timings)
