"""Writers: plan.parquet, fleet.parquet and manifest.json, each written atomically (temp file, rename).

Nothing is written until every table is built, so a failed run leaves no partial output. Parquet
files carry no timestamps, so the same input gives byte-identical data files.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


def sha256_file(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _parquet_bytes(frame: pd.DataFrame) -> bytes:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue().to_pybytes()


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_table(path: str | Path, frame: pd.DataFrame) -> Path:
    """One parquet file, atomically."""
    path = Path(path)
    _atomic_write(path, _parquet_bytes(frame))
    return path


def write_outputs(out_dir: str | Path, plan: pd.DataFrame, fleet: pd.DataFrame, manifest: dict) -> list[Path]:
    """Serialize everything first, then write each file atomically. Returns the written paths."""
    out = Path(out_dir)
    blobs = {
        "plan.parquet": _parquet_bytes(plan),
        "fleet.parquet": _parquet_bytes(fleet),
        "manifest.json": (json.dumps(manifest, indent=2, sort_keys=True, default=_jsonable) + "\n").encode(),
    }
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in blobs.items():
        _atomic_write(out / name, data)
        paths.append(out / name)
    return paths


def _jsonable(x):
    if hasattr(x, "item"):
        return x.item()
    raise TypeError(f"not JSON serializable: {type(x).__name__}")
