"""Benchmark: one synthetic fleet end to end at scale, time and peak memory per stage.

    python scripts/bench_scale.py [--rows 100000] [--seed 0] [--solver auto]

Stages: generate (scripts/gen_fleet.py, in memory), validate (spec.from_dict), then optimize.run, whose
manifest times roofline, build, capacity, problem, search and tables. Memory: the process's resident set
(/proc/self/status VmRSS) sampled every 20 ms by a thread; a stage's peak is the largest sample inside its
time window (the windows inside optimize.run follow from its manifest timings, so their edges are as
exact as the sampling). The issue's target is 1,000,000 rows on a 2-core, 24 GiB machine; the default is
smaller because the search at that size takes far longer than a benchmark should (see issue #6).

Last line:
    RESULT rows=<rows> seconds=<total wall> peak_rss_gib=<largest sample>
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gen_fleet  # noqa: E402

STAGES_IN_RUN = ("roofline_s", "build_s", "capacity_s", "problem_s", "search_s", "tables_s")


def rss_bytes() -> int:
    """Resident set of this process now (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class Sampler:
    """(time, rss) samples every `every_s` seconds on a daemon thread."""

    def __init__(self, every_s: float = 0.02):
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every_s,), daemon=True)

    def _run(self, every_s: float) -> None:
        while not self._stop.is_set():
            self.samples.append((time.perf_counter(), rss_bytes()))
            time.sleep(every_s)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def peak(self, start: float, end: float) -> int:
        """Largest sample in [start, end]; a window shorter than the sampling period gets the last sample
        before its end."""
        inside = [r for t, r in self.samples if start <= t <= end]
        before = [r for t, r in self.samples if t <= end]
        return max(inside) if inside else (before[-1] if before else 0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000, help="workload-quarter rows (4 quarters)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--solver", default="auto", help="auto | exact | lagrangian | evolution | milp")
    args = ap.parse_args(argv)

    from pdfleet import optimize
    from pdfleet import spec as S

    windows: list[tuple[str, float, float]] = []
    with Sampler() as sampler:
        t0 = time.perf_counter()
        doc = gen_fleet.generate(args.rows, args.seed)
        t1 = time.perf_counter()
        fleet = S.from_dict(doc)
        t2 = time.perf_counter()
        result = optimize.run(fleet, solver=args.solver)
        t3 = time.perf_counter()
    windows += [("generate", t0, t1), ("validate", t1, t2)]
    edge = t2
    for name in STAGES_IN_RUN:
        took = float(result.manifest["timings_s"].get(name, 0.0))
        windows.append((name.removesuffix("_s"), edge, edge + took))
        edge += took
    windows.append(("other", edge, t3))
    gib = 1024**3
    print(f"bench_scale: {args.rows:,} rows, {len(fleet.workloads):,} workloads, solver {result.manifest['solver']}, "
          f"gap {result.manifest['gap']}, cpus {os.cpu_count()}")
    print(f"{'stage':<10} {'seconds':>9} {'peak_rss_gib':>13}")
    for name, start, end in windows:
        print(f"{name:<10} {end - start:>9.2f} {sampler.peak(start, end) / gib:>13.3f}")
    peak = max((r for _, r in sampler.samples), default=rss_bytes())
    print(f"RESULT rows={args.rows} seconds={t3 - t0:.2f} peak_rss_gib={peak / gib:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
