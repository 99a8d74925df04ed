"""Read a plan folder written by `pdfleet optimize` (flat files or --partition-by quarter folders)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pdfleet.output import schema

SIMULATE_COLUMNS = tuple(schema.SIMULATE.names[:schema.SIMULATE_REQUIRED])


class PlanDirError(Exception):
    pass


@dataclass
class PlanDir:
    path: Path
    plan: pd.DataFrame
    fleet: pd.DataFrame
    manifest: dict
    simulate: pd.DataFrame | None  # simulate.parquet when present


def _table(folder: Path, name: str, order: list[str]) -> pd.DataFrame:
    """name.parquet, or the Hive folder name/quarter=.../ read back in the manifest's quarter order."""
    import pyarrow.dataset as ds

    flat, hive = folder / f"{name}.parquet", folder / name
    if flat.is_file():
        frame = pd.read_parquet(flat)
    elif hive.is_dir():
        frame = ds.dataset(hive, format="parquet", partitioning="hive").to_table().to_pandas()
        keys = [c for c in ("scenario", "quarter") if c in frame.columns]
        for c in keys:  # partition columns come back as categories
            frame[c] = frame[c].astype(str)
        frame = frame[[*keys, *[c for c in frame.columns if c not in keys]]]
        rank = {q: i for i, q in enumerate(order)}
        frame = frame.sort_values("quarter", key=lambda s: s.map(rank), kind="stable").reset_index(drop=True)
    else:
        raise PlanDirError(f"{folder}: no {name}.parquet (nor a {name}/ folder); give a folder written by "
                           "`pdfleet optimize -o`")
    return frame


def read(folder: str | Path, scenario: str | None = None) -> PlanDir:
    """The plan folder; for a folder of scenarios, the one named `scenario` (its manifest entries merged
    into the top level, the scenario column dropped)."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except OSError as exc:
        raise PlanDirError(f"{folder}: cannot read manifest.json ({exc.strerror or exc}); give a folder written by "
                           "`pdfleet optimize -o`") from None
    except ValueError as exc:
        raise PlanDirError(f"{folder}/manifest.json is not JSON ({exc})") from None
    order = list(manifest.get("quarters") or [])
    plan, fleet = _table(folder, "plan", order), _table(folder, "fleet", order)
    names = list(manifest.get("scenarios") or {})
    if names or scenario is not None:
        if scenario not in names:
            raise PlanDirError(f"{folder} holds scenarios {', '.join(names) or '(none)'}: give --scenario NAME "
                               "with one of them" if names else f"{folder} holds no scenarios; drop --scenario")
        manifest = {**manifest, **manifest["scenarios"][scenario]}
        plan = plan[plan["scenario"] == scenario].drop(columns="scenario").reset_index(drop=True)
        fleet = fleet[fleet["scenario"] == scenario].drop(columns="scenario").reset_index(drop=True)
    sim_path = folder / "simulate.parquet"
    simulate = None
    if sim_path.is_file():
        simulate = pd.read_parquet(sim_path)
        missing = [c for c in SIMULATE_COLUMNS if c not in simulate.columns]
        if missing:
            raise PlanDirError(f"{sim_path}: missing columns {', '.join(missing)}")
    return PlanDir(folder, plan, fleet, manifest, simulate)
