"""Writers: plan.parquet, fleet.parquet and manifest.json, each written atomically (temp file, rename).

Nothing is written until every table is built, so a failed run leaves no partial output. Each table is
cast to its declared schema (pdfleet/output/schema.py). Parquet files carry no timestamps or run ids
(those live in manifest.json), so the same input gives byte-identical data files. With
partition_by="quarter" each table is a Hive-style folder, `plan/quarter=2027Q1/part-0.parquet`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import urllib.parse
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pyarrow.parquet as pq


def sha256_file(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _table_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue().to_pybytes()


def _parquet_bytes(frame: pd.DataFrame, name: str | None = None) -> bytes:
    """One parquet file; of the declared schema `name` (plan, fleet) when given."""
    from pdfleet.output import schema

    table = schema.to_table(frame, name) if name else pa.Table.from_pandas(frame, preserve_index=False)
    return _table_bytes(table)


def _partitions(frame: pd.DataFrame, name: str, column: str) -> dict[str, bytes]:
    """Hive layout: {"column=value/part-0.parquet": bytes}, the column dropped from the files (it is in
    the folder name; pyarrow.dataset and DuckDB's hive_partitioning put it back). Values are URI-escaped."""
    from pdfleet.output import schema

    table = schema.to_table(frame, name)
    keep = [c for c in table.column_names if c != column]
    parts = {}
    for value in dict.fromkeys(frame[column]):  # first-seen order, one file per value
        rows = table.filter(pa.compute.equal(table[column], value)).select(keep)
        parts[f"{column}={urllib.parse.quote(str(value), safe='')}/part-0.parquet"] = _table_bytes(rows)
    return parts


def _write_folder(folder: Path, files: dict[str, bytes]) -> None:
    """Write files into a fresh temp folder beside `folder`, then swap it in (old contents removed)."""
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
    try:
        tmp.chmod(0o777 & ~_umask())  # mkdtemp makes 0700
        for rel, data in files.items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_bytes(data)
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            folder.rename(old)
            tmp.rename(folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600: readable by the dashboard's user as any file is
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_table(path: str | Path, frame: pd.DataFrame, name: str | None = None) -> Path:
    """One parquet file (of the declared schema `name` when given), atomically."""
    path = Path(path)
    _atomic_write(path, _parquet_bytes(frame, name))
    return path


def write_outputs(out_dir: str | Path, plan: pd.DataFrame, fleet: pd.DataFrame, manifest: dict,
                  partition_by: str | None = None) -> list[Path]:
    """Serialize everything first, then write each file (or partition folder) atomically. Returns the
    written paths. partition_by: None (plan.parquet, fleet.parquet), or a column, "quarter" or "scenario"
    (plan/, fleet/ folders)."""
    out = Path(out_dir)
    tables = {"plan": plan, "fleet": fleet}
    if partition_by:
        folders = {name: _partitions(frame, name, partition_by) for name, frame in tables.items()}
    else:
        blobs = {f"{name}.parquet": _parquet_bytes(frame, name) for name, frame in tables.items()}
    text = (json.dumps(manifest, indent=2, sort_keys=True, default=_jsonable) + "\n").encode()
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    if partition_by:
        for name, files in folders.items():
            _write_folder(out / name, files)
            paths.append(out / name)
    else:
        for name, data in blobs.items():
            _atomic_write(out / name, data)
            paths.append(out / name)
    _atomic_write(out / "manifest.json", text)
    _drop_other_layout(out, tables, partition_by)
    return paths + [out / "manifest.json"]


def _drop_other_layout(out: Path, names, partition_by: str | None) -> None:
    """A folder rewritten in the other layout loses the stale files of the old one (plan.parquet beside
    plan/, or a plan/ of quarter=... folders beside plan.parquet), so readers never mix two runs."""
    for name in names:
        if partition_by:
            (out / f"{name}.parquet").unlink(missing_ok=True)
        elif (out / name).is_dir() and all("=" in p.name for p in (out / name).iterdir()):
            shutil.rmtree(out / name)


def _jsonable(x):
    if hasattr(x, "item"):
        return x.item()
    raise TypeError(f"not JSON serializable: {type(x).__name__}")
