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


def run(fleet: S.Fleet, rounding: str | None = None, source: str | Path | None = None, progress=None) -> Result:
    """Plan a validated fleet. rounding overrides planning.rounding when given."""
    import jax

    from pdfleet.search import exact

    t0 = time.perf_counter()
    rounding = rounding or fleet.planning.rounding
    prediction = predicted.predict(fleet)
    fleet = fleet.model_copy(update={"profiles": [*fleet.profiles, *prediction.profiles]})
    t_pred = time.perf_counter()
    problem, rows = arrays.build(fleet)
    t1 = time.perf_counter()
    sol = jax.device_get(exact.solve_chunked(problem, nearest=rounding == "nearest", chunk=arrays.CHUNK,
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
        "optimal": True,
        "gap": 0.0,
        "rounding": rounding,
        "quarters": fleet.planning.quarters,
        "seed": fleet.planning.seed,
        "backend": jax.default_backend(),
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
