"""Held-out accuracy of the calibrated roofline (pdfleet.perf.roofline + pdfleet.calibrate).

Data: every measured source pdfleet reads (pdfleet.measured_sources.read_everything: Splitwise,
LLM-Inference-Bench, ML.ENERGY v3, TensorRT-LLM offline and online, SGLang vs vLLM, NIM, dstack
DeepSeek-R1 and Llama-405B). Rows the readers refuse are counted and listed by reason first.

Every split fits the engine-aware calibration on the training rows exactly as the shipped one is
fitted (pdfleet.calibrate.fit_engine_aware: pooled, per GPU architecture (and engine), per sku, per (sku, engine)),
writes it to a temporary file and predicts each held-out row through pdfleet.calibrate.lookup(sku, engine): a
(sku, engine) the training rows lack falls back to (sku, '*'), then to the reference sku moved by
calibrate.transfer, then to the pooled fit — the question a planner asks of an engine or GPU it
has no measurements for.

Splits:
  file        no refit: the calibration file given (default data/calibration/default.json) on
              every row of the current-engine sources. With the pre-issue-#8 file (fitted on Splitwise,
              LLM-Inference-Bench, ML.ENERGY only) this is the baseline; the shipped file is now fitted on
              these rows, so for it this line is in-sample, not accuracy
  source=S    leave one source out (ML.ENERGY tasks count as one source)
  engine=E    leave one engine out (tensorrt-llm, vllm, sglang)
  model=M     leave one model family out (llama-8b, llama-70b, llama-405b, mixtral, qwen3, deepseek, gpt-oss)
Metrics per split, over held-out rows the catalogs know and that are not faster than the datasheet
roofline (the screen calibrate.fit applies): MAPE of the decode step / ITL ('decode' and 'itl' rows), of the
prefill / TTFT ('prefill' rows) and of throughput ('e2e' rows: offline batches; throughput error =
t_measured / t_predicted − 1). --worst N prints each split's N worst held-out rows.

MLPerf Offline acceptance (no refit; MLPerf rows are never fitted): llama2-70b per 8-GPU node on H100, H200,
B200 and MI300X, measured (measured_sources.read_mlperf_offline) against predicted (predicted.mlperf_offline_check:
the best TP layout by predicted.offline_layouts, with the calibration file given), the error and the ranking by
tokens/s per dollar (catalog prices), at measured_sources.MLPERF_INPUT_TOKENS and, for sensitivity, at 128 and
1,023 input tokens. Line `MLPERF within_20pct=<yes|no> same_ranking=<yes|no> worst_error=<%>`.

Expert-parallel check (no refit; these rows are never fitted): TensorRT-LLM's DEPn offline throughput rows
(measured_sources.read_trtllm_ep: attention data parallel + expert parallel over n GPUs) against the expert-parallel
roofline (predicted.ep_throughput_check), per row and per (model, sku) beside the error of the same model's
tensor-parallel rows of that table on that sku (in-sample for the shipped calibration, which is fitted on them).
Line `EP rows=<n> mape=<%> worst=<%>` (worst = largest |error|).

Run:  .venv/bin/python scripts/validate_roofline.py [--steps N] [--calibration FILE] [--only shipped|mlperf|ep]
                                                    [--quick] [--split NAME] [--worst N]
--quick runs only QUICK_SPLITS (the splits that were worst at issue #8's second round; a few minutes instead of
the full run: the reported figures come from the full run). Ends with
`RESULT decode_mape=<worst held-out %> prefill_mape=<worst held-out %>` (worst over the source, engine and model
splits run, with at least MIN_ROWS rows of that kind).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pdfleet import calibrate, measured_sources  # noqa: E402
from pdfleet.perf.roofline import Efficiency  # noqa: E402

IDEAL = Efficiency(*([1.0] * 3 + [0.0] * (len(Efficiency._fields) - 3)))
MIN_ROWS = 3
FAMILIES = {
    "llama-8b": ("llama-3-8b", "llama-3.1-8b", "llama-2-7b", "mistral-7b"),
    "llama-70b": ("llama-2-70b", "llama-3-70b", "llama-3.1-70b", "llama-3.3-70b", "qwen2-72b"),
    "llama-405b": ("llama-3.1-405b",),
    "mixtral": ("mixtral-8x7b", "mixtral-8x22b"),
    "qwen3": ("qwen3-8b", "qwen3-14b", "qwen3-32b", "qwen3-30b-a3b", "qwen3-235b-a22b"),
    "deepseek": ("deepseek-v3", "deepseek-v3.1"),
    "gpt-oss": ("gpt-oss-20b", "gpt-oss-120b"),
}
CURRENT = ("trtllm-perf", "trtllm-online", "sglang-vs-vllm", "nim", "dstack-r1", "dstack-405b")
QUICK_SPLITS = ("source=dstack-405b", "source=trtllm-online", "engine=tensorrt-llm", "model=llama-8b", "model=deepseek")


def source_group(source: str) -> str:
    return source.split(":")[0]


def score(test: pd.DataFrame, pred: np.ndarray) -> dict:
    """{kind: (MAPE %, n)} over rows with a finite prediction that are physically possible."""
    bound = calibrate.predict(test, IDEAL)
    meas = test["time_s"].to_numpy()
    ok = np.isfinite(pred) & (meas >= bound)
    rel = np.where(ok, np.abs(pred / meas - 1.0), np.nan)
    thr = np.where(ok, np.abs(meas / pred - 1.0), np.nan)  # throughput error of e2e rows
    out = {}
    kinds = {"decode": ("decode", "itl"), "prefill": ("prefill",), "e2e": ("e2e",)}
    for kind, err in (("decode", rel), ("prefill", rel), ("e2e", thr)):
        m = test["kind"].isin(kinds[kind]).to_numpy() & np.isfinite(err)
        out[kind] = (float(err[m].mean() * 100.0), int(m.sum())) if m.any() else (float("nan"), 0)
    return out


def predict_with(path, test: pd.DataFrame) -> np.ndarray:
    """Predicted time_s of every test row through calibrate.lookup(sku, engine) on calibration `path`."""
    def eff(r):
        return calibrate.lookup(str(r["sku"]), str(r["engine"]), path=path).efficiency

    return calibrate.predict(test, eff, inputs=calibrate.learned_inputs(path))


def held_out(df: pd.DataFrame, test_mask: np.ndarray, steps: int, worst: int = 0, name: str = "") -> dict:
    train, test = df[~test_mask], df[test_mask].reset_index(drop=True)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "cal.json"
        calibrate.write_calibration(path, calibrate.fit_engine_aware(train, steps=steps))
        pred = predict_with(path, test)
        if worst:
            print_worst(name, test, pred, path, worst)
        return score(test, pred)


def print_worst(name: str, test: pd.DataFrame, pred: np.ndarray, path, n: int) -> None:
    """The n held-out rows with the largest |pred/meas − 1|, with the calibration entry that served them."""
    t = test.assign(pred_s=pred, rel=pred / test["time_s"].to_numpy() - 1.0)
    t["fit"] = [calibrate.lookup(str(r.sku), str(r.engine), path=path).fit for r in t.itertuples()]
    cols = ["source", "model", "sku", "tp", "engine", "kind", "batch", "input_tokens", "output_tokens",
            "weight_dtype", "time_s", "pred_s", "rel", "fit"]
    top = t.reindex(t["rel"].abs().sort_values(ascending=False).index).head(n)
    print(f"\nworst held-out rows of {name}:")
    print(top[cols].to_string(index=False, float_format=lambda x: f"{x:.4g}"))


def splits(df: pd.DataFrame) -> list:
    """(name, held-out mask) of every leave-one-out split (module docstring)."""
    out = []
    groups = df["source"].map(source_group)
    for src in sorted(groups.unique()):
        out.append((f"source={src}", (groups == src).to_numpy()))
    for eng in ("tensorrt-llm", "vllm", "sglang"):
        out.append((f"engine={eng}", (df["engine"] == eng).to_numpy()))
    for fam, names in FAMILIES.items():
        mask = df["model"].isin(names).to_numpy()
        if mask.any():
            out.append((f"model={fam}", mask))
    return out


def mlperf_report(calibration) -> None:
    """The MLPerf Offline acceptance table (module docstring)."""
    from pdfleet import measured_sources, predicted

    main_t = predicted.mlperf_offline_check(calibration)
    print(f"\nMLPerf Offline llama2-70b, 8 GPUs per node, input {measured_sources.MLPERF_INPUT_TOKENS:g} tokens "
          "(assumed), output as logged; tokens/s per $/h at catalog prices; no refit")
    print(f"{'sku':9s} {'engine':13s} {'fit':24s} {'layout':>10s} {'batch':>6s} {'measured':>9s} {'predicted':>9s} "
          f"{'error':>7s} {'meas/$':>7s} {'pred/$':>7s} {'rank m/p':>8s}")
    for r in main_t.itertuples():
        print(f"{r.sku:9s} {r.engine:13s} {r.fit:24s} {f'{r.instances}xTP{r.tp}':>10s} {r.batch:6.0f} "
              f"{r.measured:9.0f} {r.predicted:9.0f} {r.error * 100:+6.1f}% {r.measured_per_usd:7.0f} "
              f"{r.predicted_per_usd:7.0f} {f'{r.measured_rank}/{r.predicted_rank}':>8s}")
    for isl in (128, 1023):
        t = predicted.mlperf_offline_check(calibration, isl)
        errs = ", ".join(f"{s} {e * 100:+.0f}%" for s, e in zip(t["sku"], t["error"]))
        same = (t["measured_rank"] == t["predicted_rank"]).all()
        print(f"  sensitivity, input {isl} tokens: {errs}; same ranking: {'yes' if same else 'no'}")
    within = (main_t["error"].abs() <= 0.2).all()
    same = (main_t["measured_rank"] == main_t["predicted_rank"]).all()
    print(f"MLPERF within_20pct={'yes' if within else 'no'} same_ranking={'yes' if same else 'no'} "
          f"worst_error={main_t['error'].abs().max() * 100:.1f}")


def ep_report(calibration) -> None:
    """The expert-parallel check (module docstring): each DEPn row, then EP against TP per (model, sku)."""
    from pdfleet import predicted

    t = predicted.ep_throughput_check(calibration)
    print("\nExpert parallel (TensorRT-LLM DEPn, trtllm-bench offline max throughput), output tokens/s per GPU; "
          "no refit\n(decode step at the mean context: a2a = all-to-all share of the step, bound = the larger of the "
          "step's compute and memory terms)")
    print(f"{'model':16s} {'sku':9s} {'layout':>9s} {'ISL/OSL':>11s} {'batch':>6s} {'measured':>9s} {'predicted':>9s} "
          f"{'error':>7s} {'step ms':>8s} {'a2a':>5s} {'bound':>7s} {'prefill':>7s}")
    for r in t.itertuples():
        bound = "compute" if r.compute_ms >= r.memory_ms else "memory"
        print(f"{r.model:16s} {r.sku:9s} {f'DP{r.dp}EP{r.ep}':>9s} {f'{r.input_tokens:g}/{r.output_tokens:g}':>11s} "
              f"{r.batch:6.0f} {r.measured:9.0f} {r.predicted:9.0f} {r.error * 100:+6.1f}% {r.step_ms:8.1f} "
              f"{r.alltoall_ms / r.step_ms * 100:4.0f}% {bound:>7s} {r.prefill_share * 100:6.0f}%")
    above = int((t["measured"] > t["ideal"]).sum())
    if above:
        print(f"  {above} rows measured faster than the ideal EP roofline (efficiencies 1): "
              "their batch mapping is wrong")
    # the same model's tensor-parallel rows of the same table on the same sku (kind 'e2e'; throughput error)
    tp, _ = measured_sources.read_trtllm_throughput()
    tp = tp[tp.set_index(["model", "sku"]).index.isin(t.set_index(["model", "sku"]).index)].reset_index(drop=True)
    tp = tp.assign(error=tp["time_s"].to_numpy() / predict_with(calibration, tp) - 1.0)
    print(f"\n{'model':16s} {'sku':9s} {'EP n':>5s} {'EP mape':>8s} {'EP mean':>8s}   {'TP layouts':12s} {'TP n':>5s} "
          f"{'TP mape':>8s} {'TP mean':>8s}")
    for (model, sku), g in t.groupby(["model", "sku"]):
        h = tp[(tp["model"] == model) & (tp["sku"] == sku)]
        tps = ",".join(f"TP{x}" for x in sorted(h["tp"].unique())) or "-"
        tp_cols = (f"{len(h):5d} {h['error'].abs().mean() * 100:7.1f}% {h['error'].mean() * 100:+7.1f}%" if len(h)
                   else f"{0:5d} {'n/a':>8s} {'n/a':>8s}")
        print(f"{model:16s} {sku:9s} {len(g):5d} {g['error'].abs().mean() * 100:7.1f}% {g['error'].mean() * 100:+7.1f}%"
              f"   {tps:12s} {tp_cols}")
    print("  (error = predicted / measured tokens/s - 1; TP rows are in-sample for the shipped calibration)")
    print(f"EP rows={len(t)} mape={t['error'].abs().mean() * 100:.1f} worst={t['error'].abs().max() * 100:.1f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1000, help="Adam steps per fit (shipped fit: 3000)")
    ap.add_argument("--calibration", default=None, help="calibration file of the 'shipped' split")
    ap.add_argument("--only", choices=["shipped", "mlperf", "ep"], default=None,
                    help="only the no-refit baseline, only the MLPerf table, or only the expert-parallel check")
    ap.add_argument("--quick", action="store_true", help=f"only the splits {', '.join(QUICK_SPLITS)}")
    ap.add_argument("--split", default=None, help="only this split, e.g. source=dstack-405b")
    ap.add_argument("--worst", type=int, default=0, help="print each split's N worst held-out rows")
    args = ap.parse_args(argv)
    if args.only == "mlperf":
        mlperf_report(args.calibration)
        return 0
    if args.only == "ep":
        ep_report(args.calibration)
        return 0

    df, refused = measured_sources.read_everything()
    print(f"rows read: {len(df)}; refused by the readers: {len(refused)}")
    for (src, reason), n in refused.groupby(["source", "reason"]).size().items():
        print(f"  refused {n:4d}  {src:15s} {reason}")

    rows = []
    cur = df[df["source"].isin(CURRENT)].reset_index(drop=True)
    # in-sample when the file was fitted on these rows (the shipped one is, since issue #8)
    rows.append(("file (no refit) on current engines", score(cur, predict_with(args.calibration, cur)), False))
    for src in sorted(cur["source"].unique()):
        part = cur[cur["source"] == src].reset_index(drop=True)
        rows.append((f"  file on {src}", score(part, predict_with(args.calibration, part)), False))
    if args.only != "shipped":
        for name, mask in splits(df):
            if (args.quick and name not in QUICK_SPLITS) or (args.split and name != args.split):
                continue
            rows.append((name, held_out(df, mask, args.steps, args.worst, name), True))

    fmt = lambda m: "   n/a" if np.isnan(m[0]) else f"{m[0]:6.1f}"
    print("\nHeld-out MAPE (%) of the calibrated roofline (throughput = offline 'e2e' rows)")
    print(f"{'split':40s} {'decode':>7s} {'n':>5s} {'prefill':>8s} {'n':>5s} {'thruput':>8s} {'n':>5s}")
    for name, res, _ in rows:
        d, p, e = res["decode"], res["prefill"], res["e2e"]
        print(f"{name:40s} {fmt(d):>7s} {d[1]:5d} {fmt(p):>8s} {p[1]:5d} {fmt(e):>8s} {e[1]:5d}")
    scored = [r for r in rows if r[2]] or rows[:1]
    worst = lambda k: max((r[1][k][0] for r in scored if r[1][k][1] >= MIN_ROWS), default=float("nan"))
    mlperf_report(args.calibration)
    ep_report(args.calibration)
    print("goals on every held-out split: decode <= 15 %, prefill/TTFT <= 20 %")
    print(f"RESULT decode_mape={worst('decode'):.1f} prefill_mape={worst('prefill'):.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
