"""What a manifest records so a plan can be reproduced and audited: the input files' sha256, the
resolved spec, package versions and the device."""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform
from pathlib import Path

PACKAGES = ("pdfleet", "jax", "jaxlib", "numpy", "scipy", "pandas", "pyarrow", "optax", "cmaes", "pydantic")


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def input_files(source: str | Path | None, fleet) -> list[dict]:
    """The fleet.yaml and every file it pulls in (profile_files, planning.calibration or the shipped
    calibration when the roofline is on, workloads_file), each {role, path, sha256}, in that order."""
    from pdfleet.calibrate import DEFAULT_CALIBRATION

    if source is None:
        return []
    base = Path(source).parent
    files = [("fleet", Path(source))]
    files += [(f"profile_files[{i}]", base / name) for i, name in enumerate(fleet.profile_files)]
    workloads_file = getattr(fleet, "workloads_file", None)
    if workloads_file:
        files.append(("workloads_file", base / workloads_file))
    if fleet.planning.calibration:
        files.append(("planning.calibration", Path(fleet.planning.calibration)))
    elif fleet.planning.roofline:
        files.append(("calibration (shipped)", Path(DEFAULT_CALIBRATION)))
    return [{"role": role, "path": str(p), "sha256": sha256_file(p)} for role, p in files]


def resolved_spec(fleet) -> dict:
    """planning, skus and models after catalog defaults and overrides (JSON-ready). Profiles and workloads
    are left out: they are as written in the hashed input files, and can be millions of numbers."""
    data = fleet.model_dump(mode="json")
    return {k: data[k] for k in ("planning", "skus", "models")}


def versions() -> dict:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def device() -> dict:
    import jax

    d = jax.devices()[0]
    return {"backend": jax.default_backend(), "kind": d.device_kind, "count": jax.device_count(),
            "platform": platform.platform(), "machine": platform.machine()}
