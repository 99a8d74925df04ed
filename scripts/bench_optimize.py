"""Benchmark: every fleet solver on synthetic fleets of growing size (scripts/gen_fleet.py).

    python scripts/bench_optimize.py [--sizes 1000,20000,100000] [--seed 0] [--milp-time-limit 600]

For each size (workload-quarter rows): generate the fleet in memory, validate it, `optimize.prepare` it
once (capacities + fleet problem; its time is reported), then run each solver on the same fleet problem
inside jax.enable_x64(True): exact, lagrangian and evolution through search.solve.run, milp (HiGHS,
with the time limit) through search.milp.solve so that its optimality flag and dual bound are read.
milp.solve and lagrangian first drop dominated candidates (search/prune.py: exact, same optimum); the
header line per size gives the pair variables before and after.
milp runs in a spawned process (HiGHS out of memory then ends that process, not the benchmark); it is
skipped above --milp-max-rows and evolution above --evolution-max-rows (said in the table).

Table columns: objective = spend + penalties of unserved rows in USD per hour (objective_usd /
(hours_per_quarter x quarters)); bound = the solver's certified lower bound, same unit; gap = (objective
- bound) / objective; vs_milp = (objective - milp objective) / milp objective where milp returned a plan
(marked * when milp stopped at its time limit without proving optimality); unserved = rows with demand
left unserved; breaks = the plan breaks a shared limit (exact only).

Then, for the largest size, the end-to-end `pdfleet optimize` time (optimize.run, solver auto: prepare,
search, predictions, tables). With --profile, lagrangian is run once more per size under cProfile and
the pdfleet functions where its time goes are listed (the timed run above is not profiled).

Last line:
    RESULT rows=<R> lagrangian_s=<s> milp_s=<s> speedup=<milp_s / lagrangian_s> gap=<fraction>
at --result-rows (default 20000, else the largest size), gap = (lagrangian objective - milp objective) /
milp objective; when milp did not prove optimality the better of its dual bound and lagrangian's own
certified bound replaces its objective (the optimum is at least both; the line before says which); nan
where milp was skipped, or no bound is known.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import math
import pstats
import sys
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))
import gen_fleet  # noqa: E402

SOLVERS = ("exact", "lagrangian", "evolution", "milp")


def _load() -> str:
    """1-minute load average / CPUs (other processes on the machine skew wall times)."""
    import os

    try:
        return f"{os.getloadavg()[0]:.1f}/{os.cpu_count()}"
    except OSError:
        return "n/a"


def source_version() -> str:
    """The pdfleet code measured: git HEAD, and a hash of every pdfleet/*.py as it is on disk (the
    working tree may differ from HEAD)."""
    import hashlib
    import subprocess

    import pdfleet

    root = Path(pdfleet.__file__).resolve().parent
    digest = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        digest.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes())
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=root, timeout=10).stdout.strip() or "?"
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "."], capture_output=True, text=True,
                               cwd=root, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        head, dirty = "?", ""
    return f"git {head}{' + uncommitted changes' if dirty else ''}, pdfleet sources sha256 {digest.hexdigest()[:12]}"


def _fmt(x, spec=".2f") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return format(x, spec)


def run_size(rows: int, args, log) -> dict:
    """Generate, prepare and solve one size; returns {solver: record} and the prepare timings."""
    import jax

    from pdfleet import optimize, spec
    from pdfleet.search import lagrangian, milp, prune, solve

    t0 = time.perf_counter()
    doc = gen_fleet.generate(rows, args.seed, args.quarters)
    t1 = time.perf_counter()
    fleet = spec.from_dict(doc)
    t2 = time.perf_counter()
    prep = optimize.prepare(fleet)
    t3 = time.perf_counter()
    fp = prep.fleet_problem
    q, w, cp, cd = fp.shape
    hours = fp.economics.hours * q
    pairs = milp.size(fp)
    kept = milp.size(prune.prune(fp))
    log(f"# rows={w * q} workloads={w} quarters={q} candidates/role<={cp}x{cd} feasible pairs={pairs} "
        f"(after dominance pruning {kept}) profiles={len(fleet.profiles)}")
    log(f"# generate {t1 - t0:.2f} s, validate {t2 - t1:.2f} s, prepare {t3 - t2:.2f} s "
        + ", ".join(f"{k} {v:.2f}" for k, v in prep.timings.items()))
    out = {"rows": w * q, "workloads": w, "prepare_s": t3 - t2, "solvers": {}, "fp": fp, "fleet": fleet}
    for name in args.solvers:
        rec = {"name": name}
        if name == "milp" and rows > args.milp_max_rows:
            rec["skipped"] = f"skipped: rows {rows} > --milp-max-rows {args.milp_max_rows}"
        elif name == "evolution" and rows > args.evolution_max_rows:
            rec["skipped"] = f"skipped: rows {rows} > --evolution-max-rows {args.evolution_max_rows}"
        elif name == "evolution" and not (Path(solve.__file__).parent / "evolution.py").exists():
            rec["skipped"] = "skipped: pdfleet/search/evolution.py not present"
        if "skipped" in rec:
            out["solvers"][name] = rec
            continue
        if name == "milp":
            got = milp_in_subprocess(fp, args.milp_time_limit)
            if "crashed" in got:
                rec["skipped"] = got["crashed"]
                out["solvers"][name] = rec
                log(f"#   milp: {got['crashed']}")
                continue
            objective, bound, unserved = got["objective"], got["bound"], got["unserved"]
            rec.update(seconds=got["seconds"], optimal=got["optimal"], note=got["message"])
        else:
            with jax.enable_x64(True):
                t = time.perf_counter()
                o = solve.run(fp, name, seed=args.seed)
                rec["seconds"] = time.perf_counter() - t
            objective, bound = o.plan.objective_usd, o.lower_bound_usd
            unserved = int(((o.plan.pair_c < 0) & (fp.demand_rps > 0)).sum())
            rec.update(optimal=None, note="; ".join(o.notes), breaks=bool(o.breaks_limits))
        rec.update(objective=objective / hours, bound=bound / hours, gap=lagrangian.gap(objective, bound),
                   unserved=unserved if math.isfinite(objective) else None)
        out["solvers"][name] = rec
        log(f"#   {name}: {rec['seconds']:.2f} s, objective {rec['objective']:.2f} USD/h, bound {rec['bound']:.2f}, "
            f"load average {_load()}" + (f" ({rec['note']})" if rec["note"] else ""))
    ref = out["solvers"].get("milp", {})
    for rec in out["solvers"].values():
        if "objective" in rec and ref.get("objective") is not None and math.isfinite(ref["objective"]):
            rec["vs_milp"] = (rec["objective"] - ref["objective"]) / ref["objective"]
    if args.profile and "lagrangian" in args.solvers:
        log(profile_lagrangian(fp, args.profile))
    return out


def _milp_child(fp, time_limit, conn):
    import jax

    from pdfleet.search import milp

    with jax.enable_x64(True):
        res = milp.solve(fp, time_limit=time_limit)
    conn.send({"objective": res.plan.objective_usd, "bound": res.lower_bound_usd, "optimal": bool(res.optimal),
               "message": str(res.message), "seconds": res.seconds,
               "unserved": int(((res.plan.pair_c < 0) & (fp.demand_rps > 0)).sum())})
    conn.close()


def milp_in_subprocess(fp, time_limit: float) -> dict:
    """search.milp.solve in a spawned process, so that HiGHS running out of memory on a big fleet ends
    that process, not the benchmark. `seconds` is milp.solve's own time (building the program, HiGHS,
    costing the plan), without the process start."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_milp_child, args=(fp, time_limit, child))
    proc.start()
    child.close()
    try:
        got = parent.recv()
    except EOFError:
        got = None
    proc.join()
    if got is None:
        return {"crashed": f"milp process died (exit code {proc.exitcode}; -9 is usually out of memory)"}
    return got


def profile_lagrangian(fp, top: int) -> str:
    """cProfile of one lagrangian run: the pdfleet functions by cumulative time."""
    import jax

    from pdfleet.search import lagrangian

    prof = cProfile.Profile()
    with jax.enable_x64(True):
        t = time.perf_counter()
        prof.enable()
        res = lagrangian.solve(fp)
        prof.disable()
        wall = time.perf_counter() - t
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf)
    stats.sort_stats("cumulative").print_stats(r"pdfleet|scipy/optimize/_milp|_linprog|jax/_src/pjit", top)
    lines = [ln for ln in buf.getvalue().splitlines() if ln.strip() and not ln.startswith(("   Ordered", "   List"))]
    head = f"# profile lagrangian: {wall:.2f} s under cProfile, {res.iterations} iterations"
    return "\n".join([head] + ["#   " + ln for ln in lines[-(top + 1):]])


def table(results: list[dict]) -> str:
    head = f"{'rows':>7} {'solver':<10} {'wall_s':>8} {'objective':>12} {'bound':>12} {'gap':>9} {'vs_milp':>9} " \
           f"{'unserved':>8}  note"
    lines = [head, "-" * len(head)]
    for r in results:
        milp_opt = r["solvers"].get("milp", {}).get("optimal")
        for name, rec in r["solvers"].items():
            if "skipped" in rec:
                lines.append(f"{r['rows']:>7} {name:<10} {'-':>8} {'-':>12} {'-':>12} {'-':>9} {'-':>9} {'-':>8}  "
                             f"{rec['skipped']}")
                continue
            note = []
            if rec.get("breaks"):
                note.append("breaks limits")
            if name == "milp" and not rec.get("optimal"):
                note.append("not proven optimal (time limit)" if math.isfinite(rec["objective"])
                            else "no plan" + ("" if math.isfinite(rec["bound"]) else " and no finite bound")
                            + " within the time limit")
            vs = rec.get("vs_milp")
            vs_s = _fmt(vs, "+.4%") + ("*" if vs is not None and milp_opt is False else "")
            lines.append(f"{r['rows']:>7} {name:<10} {rec['seconds']:>8.2f} {_fmt(rec['objective']):>12} "
                         f"{_fmt(rec['bound']):>12} {_fmt(rec['gap'], '.4%'):>9} {vs_s:>9} {_fmt(rec['unserved'], 'd'):>8}  "
                         + ", ".join(note))
        lines.append(f"{r['rows']:>7} {'(prepare)':<10} {r['prepare_s']:>8.2f}")
    return "\n".join(lines)


def result_line(results: list[dict], rows: int) -> tuple[str, str | None]:
    """(RESULT line, the note line before it or None)."""
    r = next((x for x in results if x["rows"] == rows), None)
    note = None
    lag_s = milp_s = gap = float("nan")
    if r is None:
        note = f"# RESULT: no size with {rows} rows was run"
    else:
        lag, ref = r["solvers"].get("lagrangian", {}), r["solvers"].get("milp", {})
        lag_s = lag.get("seconds", float("nan"))
        milp_s = ref.get("seconds", float("nan"))
        if "skipped" in ref or not ref:
            note = f"# RESULT: milp was not run at {rows} rows ({ref.get('skipped', 'not requested')}): no gap"
        elif ref.get("optimal"):
            gap = (lag["objective"] - ref["objective"]) / ref["objective"]
        else:
            # the optimum is at least the better of the two certified lower bounds: the gap against it is an
            # upper bound on the gap to the HiGHS optimum
            bounds = {"milp's dual bound": ref.get("bound", float("nan")),
                      "lagrangian's own certified bound": lag.get("bound", float("nan"))}
            bounds = {k: v for k, v in bounds.items() if math.isfinite(v) and v > 0}
            if bounds:
                which, bound = max(bounds.items(), key=lambda kv: kv[1])
                gap = (lag["objective"] - bound) / bound
                note = (f"# RESULT: milp did not prove optimality within its time limit ({ref.get('note')}); "
                        f"gap is against {which} {bound:.4f} USD/h (at most the gap to the optimum)")
            else:
                note = (f"# RESULT: milp returned neither a plan nor a finite dual bound within its time limit "
                        f"({ref.get('note')}), and lagrangian no bound: no gap")
    speed = milp_s / lag_s if lag_s > 0 else float("nan")
    return (f"RESULT rows={rows} lagrangian_s={lag_s:.3f} milp_s={milp_s:.3f} speedup={speed:.2f} gap={gap:.6f}",
            note)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,20000,100000", help="comma-separated workload-quarter rows")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quarters", type=int, default=4)
    ap.add_argument("--milp-time-limit", type=float, default=600.0, help="HiGHS time limit per size, seconds")
    ap.add_argument("--milp-max-rows", type=int, default=20000, help="skip milp above this many rows")
    ap.add_argument("--evolution-max-rows", type=int, default=20000, help="skip evolution above this many rows")
    ap.add_argument("--solvers", default=",".join(SOLVERS), help="comma-separated subset of " + ",".join(SOLVERS))
    ap.add_argument("--result-rows", type=int, default=None,
                    help="size of the RESULT line (default 20000 if run, else the largest size)")
    ap.add_argument("--no-end-to-end", action="store_true", help="skip optimize.run at the largest size")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="also profile lagrangian per size with cProfile, top N pdfleet functions")
    args = ap.parse_args(argv)
    args.sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    args.solvers = [s.strip() for s in args.solvers.split(",") if s.strip()]
    bad = sorted(set(args.solvers) - set(SOLVERS))
    if bad:
        ap.error(f"unknown solver(s) {bad}; choose from {SOLVERS}")

    def log(msg):
        print(msg, flush=True)

    import jax

    log(f"# bench_optimize: sizes {args.sizes}, seed {args.seed}, backend {jax.default_backend()}, "
        f"milp time limit {args.milp_time_limit:g} s (skipped above {args.milp_max_rows} rows), "
        f"evolution skipped above {args.evolution_max_rows} rows")
    log(f"# code: {source_version()}")
    results = [run_size(n, args, log) for n in args.sizes]
    log("")
    log(table(results))
    if not args.no_end_to_end and results:
        from pdfleet import optimize

        big = max(results, key=lambda r: r["rows"])
        t = time.perf_counter()
        res = optimize.run(big["fleet"], solver="auto")
        wall = time.perf_counter() - t
        timings = {k: v for k, v in res.timings.items() if k != "solvers_s"}
        log(f"\n# end-to-end optimize.run(solver=auto) at {big['rows']} rows: {wall:.2f} s, solver "
            f"{res.manifest['solver']}, cost {res.manifest['cost_usd_per_hour']:.2f} USD/h, gap "
            f"{_fmt(res.manifest['gap'], '.4%')}; "
            + ", ".join(f"{k} {v:.2f}" for k, v in timings.items())
            + "; solvers " + ", ".join(f"{k} {v:.2f}" for k, v in res.timings.get("solvers_s", {}).items()))
    rows = args.result_rows or (20000 if 20000 in [r["rows"] for r in results] else
                                max((r["rows"] for r in results), default=0))
    line, note = result_line(results, rows)
    if note:
        log(note)
    log(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
