"""Request traces: arrival times and token lengths, and what planning takes from them.

Formats (chosen by content, not by name):
- Azure LLM inference trace CSV (Splitwise, ISCA 2024): TIMESTAMP (wall clock), ContextTokens,
  GeneratedTokens.
- Mooncake JSONL (FAST '25): one JSON object per line with timestamp (ms from start), input_length,
  output_length (hash_ids are ignored: pdfleet does not model prefix caching).
- Plain CSV: arrival_s, input_tokens, output_tokens.

Planning reads the length moments (mean, squared coefficient of variation) and the peak rate: the most
requests that arrive in any window of `peak_window_s` seconds (sliding over arrivals), divided by the
window. Rows with a length below 1 token are dropped (a request without a prompt or an answer is not
served by prefill or decode); the count is reported. Files are read with pyarrow, never by hand.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np


class TraceError(ValueError):
    """A trace that cannot be used; the message says why and what to change."""


class Trace(NamedTuple):
    arrival_s: np.ndarray  # [N] seconds from the first request, sorted
    input_tokens: np.ndarray  # [N] int64
    output_tokens: np.ndarray  # [N] int64
    dropped: int  # rows without a usable length


class TraceStats(NamedTuple):
    requests: int
    duration_s: float
    mean_rps: float
    peak_rps: float  # busiest window of peak_window_s
    input_mean: float
    input_cv: float
    output_mean: float
    output_cv: float

    @property
    def peak_factor(self) -> float:
        """Peak rate over mean rate: what a demand given as an average is multiplied by."""
        return self.peak_rps / self.mean_rps


AZURE = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
MOONCAKE = ("timestamp", "input_length", "output_length")
PLAIN = ("arrival_s", "input_tokens", "output_tokens")


def read(path: str | Path) -> Trace:
    """Read one trace file; TraceError when it is missing, empty or of no known format."""
    path = Path(path)
    if path.is_dir():
        raise TraceError(f"{path} is a directory; name a trace file")
    if not path.is_file():
        raise TraceError(f"no file {path}")
    try:
        with open(path, "rb") as f:
            head = f.read(1).lstrip()
    except OSError as exc:
        raise TraceError(f"cannot read {path}: {exc.strerror or exc}") from None
    table = _read_json(path) if head == b"{" else _read_csv(path)
    cols = set(table.column_names)
    if set(AZURE) <= cols:
        names = AZURE
        ts = _wall_clock_s(table.column(AZURE[0]), path.name)
    elif set(MOONCAKE) <= cols:
        names = MOONCAKE
        ts = _numbers(table, MOONCAKE[0], path.name) * 1e-3
    elif set(PLAIN) <= cols:
        names = PLAIN
        ts = _numbers(table, PLAIN[0], path.name)
    else:
        raise TraceError(f"{path.name}: columns {sorted(cols)} are none of Azure {AZURE}, Mooncake "
                         f"{MOONCAKE} or plain {PLAIN}")
    inp, out = (_numbers(table, c, path.name).round().astype(np.int64) for c in names[1:])
    return _tidy(ts, inp, out, path.name)


def _read_csv(path: Path):
    import pyarrow.csv as pacsv

    try:
        return pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types={"TIMESTAMP": "string"}))
    except Exception as exc:  # pyarrow raises ArrowInvalid and friends with a line number
        raise TraceError(f"{path.name}: not a readable CSV trace: {str(exc).splitlines()[0]}") from None


def _read_json(path: Path):
    import pyarrow.json as pajson

    try:
        return pajson.read_json(path)
    except Exception as exc:
        raise TraceError(f"{path.name}: not a readable JSON-lines trace: {str(exc).splitlines()[0]}") from None


def _wall_clock_s(column, name: str) -> np.ndarray:
    """Seconds since the epoch of wall-clock stamps like '2023-11-16 18:15:46.6805900' (7 fractional digits,
    which pyarrow's parser refuses; pandas reads ISO 8601 at any precision)."""
    import pandas as pd

    try:
        stamps = pd.to_datetime(column.to_pandas(), format="ISO8601")
    except (ValueError, TypeError) as exc:
        raise TraceError(f"{name}: TIMESTAMP is not a date and time: {exc}") from None
    return (stamps - pd.Timestamp(0)).dt.total_seconds().to_numpy(np.float64)


def _numbers(table, name: str, file_name: str) -> np.ndarray:
    """A column as float64 (an empty cell is 0, a row the planner then drops); a cell that is not a number is a
    TraceError naming its row and column (a text column would otherwise fail deep inside pyarrow's cast)."""
    import pyarrow as pa

    column = table.column(name)
    try:
        return np.asarray(column.cast("float64").fill_null(0.0), np.float64)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        import pandas as pd

        cells = column.to_pandas()
        bad = cells.notna() & pd.to_numeric(cells, errors="coerce").isna()
        row = int(np.argmax(bad.to_numpy()))
        raise TraceError(f"{file_name}: data row {row + 1}, column {name}: {cells.iloc[row]!r} is not a number; "
                         f"give {name} as a number in every row") from None


def _tidy(ts: np.ndarray, inp: np.ndarray, out: np.ndarray, name: str) -> Trace:
    ok = np.isfinite(ts) & (inp >= 1) & (out >= 1)
    if ok.sum() < 2:
        raise TraceError(f"{name}: fewer than 2 requests with input and output lengths >= 1")
    order = np.argsort(ts[ok], kind="stable")
    ts, inp, out = ts[ok][order], inp[ok][order], out[ok][order]
    if ts[-1] <= ts[0]:
        raise TraceError(f"{name}: every request arrives at the same time; a trace needs a time span")
    return Trace(ts - ts[0], inp, out, int((~ok).sum()))


def peak_rate(arrival_s: np.ndarray, window_s: float) -> float:
    """Most arrivals in any window [t, t + window_s) starting at an arrival, per second. A trace shorter
    than the window gives its mean rate over its span."""
    span = float(arrival_s[-1] - arrival_s[0])
    if span <= window_s:
        return len(arrival_s) / span
    ends = np.searchsorted(arrival_s, arrival_s + window_s, side="left")
    return float(np.max(ends - np.arange(len(arrival_s)))) / window_s


def stats(trace: Trace, window_s: float) -> TraceStats:
    t = trace.arrival_s
    duration = float(t[-1] - t[0])
    # N requests over the span between first and last: N - 1 gaps (an unbiased rate for Poisson arrivals)
    mean_rps = (len(t) - 1) / duration

    def cv(x):
        return float(np.std(x) / np.mean(x))

    return TraceStats(len(t), duration, mean_rps, max(peak_rate(t, window_s), mean_rps),
                      float(trace.input_tokens.mean()), cv(trace.input_tokens),
                      float(trace.output_tokens.mean()), cv(trace.output_tokens))
