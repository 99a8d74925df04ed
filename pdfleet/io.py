"""Writers: plan.parquet, fleet.parquet and manifest.json, written as one folder atomically.

Nothing is written until every table is built, so a failed run leaves no partial output. The plan set is
written into a temporary sibling folder and swapped in whole (Linux renameat2 RENAME_EXCHANGE), so a run
killed at any point leaves the previous plan intact, and a reader never sees plan.parquet of one run beside
fleet.parquet of another. Parquet files carry no timestamps, so the same input gives byte-identical data files.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import shutil
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


PLAN_FILES = ("plan.parquet", "fleet.parquet", "manifest.json")
OWN_FILES = frozenset(PLAN_FILES + ("simulate.parquet",))  # what a plan folder holds; anything else is the user's


def write_outputs(out_dir: str | Path, plan: pd.DataFrame, fleet: pd.DataFrame, manifest: dict) -> list[Path]:
    """Serialize everything first, then write the plan set. Returns the written paths.

    A new folder, or one that holds only pdfleet's files, is replaced whole (the previous simulate.parquet,
    which belonged to the previous plan, goes with it). A folder that also holds other files (say `-o .`)
    is never swapped away: there each file is replaced atomically on its own, in PLAN_FILES order."""
    out = Path(out_dir)
    blobs = {
        "plan.parquet": _parquet_bytes(plan),
        "fleet.parquet": _parquet_bytes(fleet),
        "manifest.json": (json.dumps(manifest, indent=2, sort_keys=True, default=_jsonable) + "\n").encode(),
    }
    folder = out.absolute()
    folder.parent.mkdir(parents=True, exist_ok=True)
    if _replaceable(folder):
        _write_folder(folder, blobs)
    else:
        out.mkdir(parents=True, exist_ok=True)
        for name, data in blobs.items():
            _atomic_write(out / name, data)
    return [out / name for name in blobs]


def _replaceable(folder: Path) -> bool:
    """True where the folder may be swapped whole: absent or holding only pdfleet's files, in a folder where a
    temporary sibling can be made (a writable plan folder in a read-only one is written file by file)."""
    if not os.access(folder.parent, os.W_OK | os.X_OK):
        return False
    if not folder.exists() and not folder.is_symlink():
        return True
    return folder.is_dir() and not folder.is_symlink() and all(p.name in OWN_FILES for p in folder.iterdir())


def _write_folder(folder: Path, blobs: dict[str, bytes]) -> None:
    """Write blobs into a fresh sibling `.NAME.PID.*.tmp`, then swap it with `folder` (or rename it there)."""
    _remove_orphans(folder)
    mode = folder.stat().st_mode & 0o777 if folder.exists() else 0o777 & ~_umask()
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.{os.getpid()}.", suffix=".tmp"))
    try:
        os.chmod(tmp, mode)
        for name, data in blobs.items():
            with open(tmp / name, "wb") as f:
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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


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


def _jsonable(x):
    if hasattr(x, "item"):
        return x.item()
    raise TypeError(f"not JSON serializable: {type(x).__name__}")
