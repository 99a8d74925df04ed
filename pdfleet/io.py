"""Writers: plan.parquet, fleet.parquet and manifest.json, written as one folder atomically.

Nothing is written until every table is built, so a failed run leaves no partial output. Each table is
cast to its declared schema (pdfleet/output/schema.py). The plan set is written into a temporary sibling
folder and swapped in whole (Linux renameat2 RENAME_EXCHANGE), so a run killed at any point leaves the
previous plan intact, and a reader never sees plan.parquet of one run beside fleet.parquet of another.
Parquet files carry no timestamps or run ids (those live in manifest.json), so the same input gives
byte-identical data files. With partition_by="quarter" each table is a Hive-style folder,
`plan/quarter=2027Q1/part-0.parquet`.
"""

from __future__ import annotations

import ctypes
import errno
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


PLAN_FILES = ("plan.parquet", "fleet.parquet", "manifest.json")
# what a plan folder holds (flat files, partition folders, what simulate and report add); anything else is the user's
OWN_FILES = frozenset(PLAN_FILES + ("plan", "fleet", "simulate.parquet", "report.html"))


def write_outputs(out_dir: str | Path, plan: pd.DataFrame, fleet: pd.DataFrame, manifest: dict,
                  partition_by: str | None = None) -> list[Path]:
    """Serialize everything first, then write the plan set. Returns the written paths.
    partition_by: None (plan.parquet, fleet.parquet), or a column, "quarter" or "scenario" (plan/, fleet/
    folders of Hive partitions).

    A new folder, or one that holds only pdfleet's files, is replaced whole (the previous simulate.parquet
    and report.html, which belonged to the previous plan, go with it). A folder that also holds other files
    (say `-o .`) is never swapped away: there each file is replaced atomically on its own, in PLAN_FILES
    order, and the other layout's stale files are removed."""
    out = Path(out_dir)
    tables = {"plan": plan, "fleet": fleet}
    blobs: dict[str, bytes] = {}
    for name, frame in tables.items():
        if partition_by:
            blobs.update({f"{name}/{rel}": data for rel, data in _partitions(frame, name, partition_by).items()})
        else:
            blobs[f"{name}.parquet"] = _parquet_bytes(frame, name)
    blobs["manifest.json"] = (json.dumps(manifest, indent=2, sort_keys=True, default=_jsonable) + "\n").encode()
    folder = out.absolute()
    folder.parent.mkdir(parents=True, exist_ok=True)
    if _replaceable(folder):
        _write_folder(folder, blobs)
    else:
        _write_in_place(out, blobs, tables, partition_by)
    tops = dict.fromkeys(rel.split("/", 1)[0] for rel in blobs)
    return [out / top for top in tops]


def _write_in_place(out: Path, blobs: dict[str, bytes], names, partition_by: str | None) -> None:
    """File by file into a folder that holds the user's files too: partition folders swapped in one by one."""
    out.mkdir(parents=True, exist_ok=True)
    groups: dict[str, dict[str, bytes]] = {}
    for rel, data in blobs.items():
        top, _, rest = rel.partition("/")
        if rest:
            groups.setdefault(top, {})[rest] = data
        else:
            _atomic_write(out / rel, data)
    for top, files in groups.items():
        _write_folder((out / top).absolute(), files)
    _drop_other_layout(out, names, partition_by)


def _replaceable(folder: Path) -> bool:
    """True where the folder may be swapped whole: absent or holding only pdfleet's files, in a folder where a
    temporary sibling can be made (a writable plan folder in a read-only one is written file by file)."""
    if not os.access(folder.parent, os.W_OK | os.X_OK):
        return False
    if not folder.exists() and not folder.is_symlink():
        return True
    return folder.is_dir() and not folder.is_symlink() and all(p.name in OWN_FILES for p in folder.iterdir())


def _write_folder(folder: Path, blobs: dict[str, bytes]) -> None:
    """Write blobs (relative paths) into a fresh sibling `.NAME.PID.*.tmp`, then swap it with `folder` (or
    rename it there)."""
    _remove_orphans(folder)
    mode = folder.stat().st_mode & 0o777 if folder.exists() else 0o777 & ~_umask()
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.{os.getpid()}.", suffix=".tmp"))
    try:
        os.chmod(tmp, mode)
        for rel, data in blobs.items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            with open(tmp / rel, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        if folder.exists():
            _exchange(tmp, folder)  # tmp now holds the previous plan
        else:
            os.rename(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _remove_orphans(folder: Path) -> None:
    """Temporary siblings left by runs that were killed (their process is gone)."""
    for tmp in folder.parent.glob(f".{folder.name}.*.tmp"):
        pid = tmp.name[len(folder.name) + 2 :].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _exchange(a: Path, b: Path) -> None:
    """Swap two folders in one step: renameat2(RENAME_EXCHANGE) (Linux >= 3.15, glibc >= 2.28). Elsewhere two
    renames, with a moment in which `b` is absent (the previous plan then sits in `a`'s temporary name)."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is not None:
        at_fdcwd, rename_exchange = -100, 2
        if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise OSError(err, os.strerror(err), str(b))
    aside = a.with_name(a.name + ".old")
    os.rename(b, aside)
    os.rename(a, b)
    os.rename(aside, a)


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
