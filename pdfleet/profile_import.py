"""Turn serving-benchmark results that users already have into a pdfleet profile entry.

The paper's decode model is empirical: benchmark TPOT against decode batch size B at the
workload's input/output lengths, then read the table (TP_decode = B / TPOT(B)).  Prefill
needs one number, the maximum prefill tokens/s of one instance.  This module builds both
from either

* the result JSON files of vLLM's ``benchmarks/benchmark_serving.py`` or
  ``vllm bench serve --save-result`` (one run per concurrency level), or
* a small CSV with columns ``concurrency, mean_ttft_ms, mean_tpot_ms, input_tokens,
  output_tokens`` (one row per concurrency level), for any other tool.

The result is a plain dict ready for YAML (see :func:`to_yaml`)::

    - model: <name>
      sku: <name>
      gpus_per_instance: <int>
      source: "<files, tool, dates>"
      prefill:                 # only when a concurrency-1 run exists
        max_tokens_per_s: <number>
      decode:
        - input_tokens: <int>
          output_tokens: <int>
          batch: [..ascending..]
          tpot_ms: [..]

The dict also carries a ``warnings`` key (a list of one-line strings: data that looks
suspicious but is not fatal).  :func:`to_yaml` writes those as YAML comments, not as data.

Rules (the same for JSON and CSV):

* batch = the run's concurrency cap (vLLM ``max_concurrency``).  A vLLM run saved without
  ``--max-concurrency`` (``max_concurrency: null``) is rejected: its concurrency is only set
  by the request rate and is not a known batch.  ``max_concurrent_requests`` (newer vLLM:
  the observed peak) is only used to warn when the cap was not reached.
* TPOT = ``mean_tpot_ms``, not the median: the paper's decode throughput B / TPOT is a
  mean rate (tokens per second averaged over requests), and the mean TPOT is what makes it
  consistent; a median would overstate throughput when the TPOT distribution has a tail.
* input/output tokens = the mean over requests of each run
  (``total_input_tokens / completed``, ``total_output_tokens / completed``), then the
  plain mean over runs, rounded to int.  If any run's mean differs from another's by more
  than 10 % (max / min - 1 > 0.10) the import fails: one table is one length pair.
* duplicate batches fail, naming both sources.  Rows are sorted by batch.
* TPOT falling by more than 5 % while the batch grows gives a warning, not an error.
* prefill.max_tokens_per_s = mean input tokens / (mean TTFT in s) of the lowest-concurrency
  run, *only* if that concurrency is 1; otherwise prefill is omitted.  The client-side TTFT
  includes tokenization, HTTP/network time, scheduling and (at concurrency 1, none of the
  other requests') queueing, and a single request does not fill a batched prefill, so this
  underestimates the instance's true maximum: it is conservative.

All problems with the inputs raise :class:`ProfileImportError` with a one-line message that
names the file (and row) and says how to fix it.
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence, Union

import yaml

__all__ = [
    "ProfileImportError",
    "BenchRun",
    "from_vllm_json",
    "from_csv",
    "from_runs",
    "to_yaml",
    "LENGTH_TOLERANCE",
    "TPOT_DROP_TOLERANCE",
]

PathLike = Union[str, "os.PathLike[str]"]

#: Largest allowed relative spread (max/min - 1) of mean input or output length across runs.
LENGTH_TOLERANCE = 0.10
#: TPOT may fall by at most this fraction (vs. any smaller batch) before a warning is given.
TPOT_DROP_TOLERANCE = 0.05

_VLLM_TOOL = "vLLM serving benchmark (benchmark_serving.py / vllm bench serve)"
_VLLM_RERUN = "rerun `vllm bench serve ... --save-result`"
_VLLM_RERUN_CAP = "rerun `vllm bench serve ... --max-concurrency N --request-rate inf --save-result`"
_CSV_COLUMNS = ("concurrency", "mean_ttft_ms", "mean_tpot_ms", "input_tokens", "output_tokens")


class ProfileImportError(ValueError):
    """A benchmark result cannot be turned into a profile; the message says where and why."""


@dataclass(frozen=True)
class BenchRun:
    """One benchmark run at one concurrency level, in the units the profile uses."""

    source: str  # file name (plus '#k' for the k-th record of an appended file, or ':row')
    batch: int
    tpot_ms: float
    ttft_ms: float | None  # None when not measured
    input_tokens: float  # mean over requests
    output_tokens: float  # mean over requests
    date: str | None = None


# --------------------------------------------------------------------------- helpers


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _require_number(rec: dict, key: str, where: str, fix: str, *, positive: bool = True) -> float:
    if key not in rec:
        raise ProfileImportError(f"{where}: missing key '{key}'; {fix}")
    val = rec[key]
    if not _is_number(val):
        raise ProfileImportError(f"{where}: '{key}' is {val!r}, expected a number; {fix}")
    if positive and val <= 0:
        raise ProfileImportError(f"{where}: '{key}' is {val!r}, expected > 0; {fix}")
    return float(val)


def _expand_paths(paths: PathLike | Iterable[PathLike]) -> list[Path]:
    """A path, or a list of paths; a directory stands for its ``*.json`` (minus ``*.pytorch.json``)."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            found = sorted(
                q for q in p.glob("*.json") if q.is_file() and not q.name.endswith(".pytorch.json")
            )
            if not found:
                raise ProfileImportError(f"{p}: directory holds no benchmark *.json files; pass the result files")
            out.extend(found)
        else:
            out.append(p)
    if not out:
        raise ProfileImportError("no benchmark files given; pass one result JSON per concurrency level")
    return out


def _read_json_records(path: Path) -> list[tuple[str, dict]]:
    """One file -> [(label, record)]. ``--append-result`` files hold one JSON object per line."""
    name = path.name
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProfileImportError(f"{path}: file not found; check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileImportError(f"{path}: cannot read ({exc}); pass a vLLM result JSON file") from None
    try:
        objs = [json.loads(text)]
    except json.JSONDecodeError:
        objs = []
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                objs.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ProfileImportError(
                    f"{name}: not valid JSON (line {i}: {exc.msg}); pass the file written by --save-result"
                ) from None
    if not objs:
        raise ProfileImportError(f"{name}: empty file; pass the file written by --save-result")
    records = []
    for k, obj in enumerate(objs, 1):
        label = name if len(objs) == 1 else f"{name}#{k}"
        if isinstance(obj, list):
            raise ProfileImportError(
                f"{label}: is a JSON list (the .pytorch.json side file?); pass the main result JSON instead"
            )
        if not isinstance(obj, dict):
            raise ProfileImportError(f"{label}: expected a JSON object; pass the file written by --save-result")
        records.append((label, obj))
    return records


def _run_from_vllm_record(label: str, rec: dict, warnings: list[str]) -> BenchRun:
    if "max_concurrency" not in rec:
        raise ProfileImportError(
            f"{label}: missing key 'max_concurrency'; not a vLLM serving result? {_VLLM_RERUN_CAP}"
        )
    batch = rec["max_concurrency"]
    if batch is None:
        raise ProfileImportError(
            f"{label}: max_concurrency is null (run without --max-concurrency), so its decode batch is unknown; "
            f"{_VLLM_RERUN_CAP}"
        )
    if not _is_number(batch) or batch != int(batch) or batch < 1:
        raise ProfileImportError(f"{label}: max_concurrency is {batch!r}, expected a positive integer")
    batch = int(batch)

    completed = _require_number(rec, "completed", label, f"{_VLLM_RERUN} (did every request fail?)")
    fix_tok = f"{_VLLM_RERUN} with a tokenizer (not --skip-tokenizer-init)"
    total_in = _require_number(rec, "total_input_tokens", label, _VLLM_RERUN)
    total_out = _require_number(rec, "total_output_tokens", label, fix_tok)
    fix_tpot = f"{_VLLM_RERUN} with --percentile-metrics including tpot (default ttft,tpot,itl) and a streaming endpoint"
    tpot = _require_number(rec, "mean_tpot_ms", label, fix_tpot)

    ttft = rec.get("mean_ttft_ms")
    ttft = float(ttft) if _is_number(ttft) and ttft > 0 else None

    # Non-fatal checks: is the batch the run claims the batch the server actually ran?
    rate = rec.get("request_rate")
    if rate is not None and rate != "inf" and not (_is_number(rate) and math.isinf(rate)):
        warnings.append(
            f"{label}: request_rate={rate} (not inf): the server may have run below batch {batch}; "
            "benchmark decode with --request-rate inf"
        )
    if rec.get("ramp_up_strategy"):
        warnings.append(f"{label}: ramp-up run; its load was not steady at batch {batch}")
    failed = rec.get("failed")
    if _is_number(failed) and failed > 0:
        warnings.append(f"{label}: {int(failed)} failed requests; the means cover the {int(completed)} completed ones")
    peak = rec.get("max_concurrent_requests")
    if _is_number(peak) and 0 < peak < batch:
        warnings.append(f"{label}: observed peak concurrency {int(peak)} < max_concurrency {batch}")
    if completed < 2 * batch:
        warnings.append(
            f"{label}: only {int(completed)} requests at concurrency {batch}: ramp-up/drain dominate, "
            "TPOT may be optimistic; use --num-prompts >= 10x the concurrency"
        )

    date = rec.get("date") if isinstance(rec.get("date"), str) else None
    return BenchRun(
        source=label,
        batch=batch,
        tpot_ms=tpot,
        ttft_ms=ttft,
        input_tokens=total_in / completed,
        output_tokens=total_out / completed,
        date=date,
    )


def _vllm_source(runs: Sequence[BenchRun], model_ids: Sequence[str]) -> str:
    labels = [r.source for r in sorted(runs, key=lambda r: r.batch)]
    parts = [f"{_VLLM_TOOL}: {', '.join(labels)}"]
    if model_ids:
        parts.append(f"model_id {model_ids[0]}")
    dates = sorted(r.date for r in runs if r.date)
    if dates:
        parts.append(f"run {dates[0]}" if dates[0] == dates[-1] else f"runs {dates[0]}..{dates[-1]}")
    else:
        parts.append("run date not recorded")
    return "; ".join(parts)


def _fmt(x: float, nd: int) -> float:
    """Round for a clean YAML file (int-valued floats stay floats)."""
    return float(round(x, nd))


# --------------------------------------------------------------------------- core


def from_runs(
    runs: Sequence[BenchRun],
    model: str,
    sku: str,
    gpus_per_instance: int,
    source: str,
    warnings: Sequence[str] = (),
) -> dict:
    """Build the profile entry from already-parsed runs (shared by the JSON and CSV readers)."""
    warns = list(warnings)
    if not isinstance(model, str) or not model:
        raise ProfileImportError("model name is empty; pass the pdfleet model name")
    if not isinstance(sku, str) or not sku:
        raise ProfileImportError("sku name is empty; pass the pdfleet GPU/SKU name")
    if (
        isinstance(gpus_per_instance, bool)
        or not isinstance(gpus_per_instance, int)
        or gpus_per_instance < 1
    ):
        raise ProfileImportError(f"gpus_per_instance is {gpus_per_instance!r}; pass a positive integer")
    if not runs:
        raise ProfileImportError(f"{source}: no benchmark runs found; one run per concurrency level is needed")

    runs = sorted(runs, key=lambda r: r.batch)
    for a, b in zip(runs, runs[1:]):
        if a.batch == b.batch:
            raise ProfileImportError(
                f"{a.source} and {b.source}: both at batch {a.batch}; keep one run per concurrency level"
            )

    for attr, what in (("input_tokens", "input"), ("output_tokens", "output")):
        lo = min(runs, key=lambda r: getattr(r, attr))
        hi = max(runs, key=lambda r: getattr(r, attr))
        lo_v, hi_v = getattr(lo, attr), getattr(hi, attr)
        if lo_v <= 0:
            raise ProfileImportError(f"{lo.source}: mean {what} length is {lo_v:g}; expected > 0")
        if hi_v / lo_v - 1 > LENGTH_TOLERANCE:
            raise ProfileImportError(
                f"{lo.source} and {hi.source}: mean {what} length {lo_v:.0f} vs {hi_v:.0f} tokens differs by more "
                f"than {LENGTH_TOLERANCE:.0%}; one table must be at one length, rerun at the same "
                f"--input-len/--output-len (random dataset with ignore_eos) or import them separately"
            )

    # TPOT should not fall as the batch grows (measurement noise aside).
    worst = runs[0]
    for r in runs[1:]:
        if r.tpot_ms < worst.tpot_ms * (1 - TPOT_DROP_TOLERANCE):
            warnings_msg = (
                f"{r.source}: TPOT {r.tpot_ms:g} ms at batch {r.batch} is more than "
                f"{TPOT_DROP_TOLERANCE:.0%} below {worst.tpot_ms:g} ms at batch {worst.batch} "
                f"({worst.source}); check for a noisy or misconfigured run"
            )
            warns.append(warnings_msg)
        if r.tpot_ms > worst.tpot_ms:
            worst = r

    mean_in = sum(r.input_tokens for r in runs) / len(runs)
    mean_out = sum(r.output_tokens for r in runs) / len(runs)

    profile: dict[str, Any] = {
        "model": model,
        "sku": sku,
        "gpus_per_instance": gpus_per_instance,
        "source": source,
    }

    first = runs[0]
    if first.batch == 1:
        if first.ttft_ms is None:
            warns.append(f"{first.source}: concurrency-1 run has no usable mean_ttft_ms; prefill omitted")
        else:
            profile["prefill"] = {
                "max_tokens_per_s": _fmt(first.input_tokens / (first.ttft_ms / 1000.0), 1),
            }
    else:
        warns.append(
            f"lowest concurrency is {first.batch}, not 1: prefill omitted; "
            "add a --max-concurrency 1 run to derive prefill.max_tokens_per_s"
        )

    profile["decode"] = [
        {
            "input_tokens": int(round(mean_in)),
            "output_tokens": int(round(mean_out)),
            "batch": [r.batch for r in runs],
            "tpot_ms": [_fmt(r.tpot_ms, 3) for r in runs],
        }
    ]
    profile["warnings"] = warns
    return profile


def from_vllm_json(
    paths: PathLike | Iterable[PathLike],
    model: str,
    sku: str,
    gpus_per_instance: int,
) -> dict:
    """Profile entry from vLLM serving-benchmark result JSON files, one per concurrency level.

    ``paths``: a file, a directory (its ``*.json`` except ``*.pytorch.json``), or a list of
    them.  A file written with ``--append-result`` (one JSON object per line) gives one run
    per line.  Keys read: ``max_concurrency`` (batch), ``mean_tpot_ms``, ``mean_ttft_ms``,
    ``completed``, ``total_input_tokens``, ``total_output_tokens``; optional ``date``,
    ``model_id``, ``request_rate``, ``failed``, ``max_concurrent_requests``,
    ``ramp_up_strategy`` (source text and warnings only).

    Returns the profile dict; its ``warnings`` key lists non-fatal findings.
    """
    files = _expand_paths(paths)
    warns: list[str] = []
    runs: list[BenchRun] = []
    model_ids: dict[str, str] = {}
    for f in files:
        for label, rec in _read_json_records(f):
            runs.append(_run_from_vllm_record(label, rec, warns))
            mid = rec.get("model_id")
            if isinstance(mid, str) and mid:
                model_ids.setdefault(mid, label)
    if len(model_ids) > 1:
        (m1, l1), (m2, l2) = list(model_ids.items())[:2]
        raise ProfileImportError(
            f"{l1} and {l2}: different model_id ({m1!r} vs {m2!r}); import each model's runs separately"
        )
    source = _vllm_source(runs, list(model_ids))
    return from_runs(runs, model, sku, gpus_per_instance, source, warns)


def _csv_number(row: dict, col: str, where: str, *, required: bool = True) -> float | None:
    raw = (row.get(col) or "").strip()
    if raw == "":
        if required:
            raise ProfileImportError(f"{where}: empty '{col}'; fill in a number")
        return None
    try:
        val = float(raw)
    except ValueError:
        raise ProfileImportError(f"{where}: '{col}' is {raw!r}, expected a number") from None
    if not math.isfinite(val) or val <= 0:
        if not required:
            return None
        raise ProfileImportError(f"{where}: '{col}' is {raw!r}, expected a number > 0")
    return val


def from_csv(path: PathLike, model: str, sku: str, gpus_per_instance: int) -> dict:
    """Profile entry from a CSV, one row per concurrency level.

    Columns (header required, order free, extra columns ignored): ``concurrency``,
    ``mean_ttft_ms``, ``mean_tpot_ms``, ``input_tokens``, ``output_tokens``; the token
    columns are each row's mean per request.  ``mean_ttft_ms`` may be left empty except on
    the concurrency-1 row, where it gives prefill.  Same rules as :func:`from_vllm_json`.
    The source date is the file's modification date (UTC).
    """
    p = Path(path)
    name = p.name
    try:
        with p.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in (reader.fieldnames or [])]
            missing = [c for c in _CSV_COLUMNS if c not in header]
            if missing:
                raise ProfileImportError(
                    f"{name}: missing column(s) {', '.join(missing)}; the header must be {','.join(_CSV_COLUMNS)}"
                )
            rows = [{(k or "").strip(): v for k, v in row.items()} for row in reader]
    except FileNotFoundError:
        raise ProfileImportError(f"{p}: file not found; check the path") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ProfileImportError(f"{name}: cannot read as CSV ({exc}); save it as UTF-8 CSV") from None

    runs: list[BenchRun] = []
    for i, row in enumerate(rows, start=2):  # line 1 is the header
        if all(not (v or "").strip() for v in row.values() if isinstance(v, str)):
            continue  # blank line
        where = f"{name}:{i}"
        conc = _csv_number(row, "concurrency", where)
        if conc != int(conc):
            raise ProfileImportError(f"{where}: concurrency {conc:g} is not an integer")
        runs.append(
            BenchRun(
                source=where,
                batch=int(conc),
                tpot_ms=_csv_number(row, "mean_tpot_ms", where),
                ttft_ms=_csv_number(row, "mean_ttft_ms", where, required=False),
                input_tokens=_csv_number(row, "input_tokens", where),
                output_tokens=_csv_number(row, "output_tokens", where),
            )
        )
    if not runs:
        raise ProfileImportError(f"{name}: no data rows; add one row per concurrency level")
    mdate = _dt.datetime.fromtimestamp(p.stat().st_mtime, tz=_dt.timezone.utc).strftime("%Y-%m-%d")
    source = f"CSV benchmark table: {name}; file dated {mdate}"
    return from_runs(runs, model, sku, gpus_per_instance, source)


# --------------------------------------------------------------------------- YAML


class _Dumper(yaml.SafeDumper):
    """Lists of scalars in flow style (``batch: [1, 8, 16]``), everything else in block style."""


def _represent_list(dumper: yaml.SafeDumper, data: list):
    flow = bool(data) and all(isinstance(x, (int, float, str, bool)) or x is None for x in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _represent_list)


def to_yaml(profile: dict) -> str:
    """YAML text of a one-item list holding ``profile``, ready to paste under ``profiles:``.

    The ``warnings`` key is not data: each warning becomes a ``# WARNING:`` comment line at
    the top, so ``yaml.safe_load(to_yaml(p))[0]`` equals ``p`` without ``warnings``.
    """
    entry = {k: v for k, v in profile.items() if k != "warnings"}
    body = yaml.dump(
        [entry], Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True, width=100_000
    )
    comments = "".join(
        f"# WARNING: {' '.join(str(w).splitlines())}\n" for w in profile.get("warnings", ()) or ()
    )
    return comments + body
