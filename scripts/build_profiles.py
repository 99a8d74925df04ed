"""Convert Splitwise's measured performance into pdfleet profile tables: data/profiles/splitwise.yaml.

Source: Mutinifni/splitwise-sim data/perf_model.csv @ 8f99e7dc (MIT), copied unchanged to
../shared/data/perf/splitwise_perf_model.csv. Columns: prompt_time = prefill of the batch (ms),
token_time = one decode step (ms); repeated measurements are averaged.

- prefill: batch-1 rows over prompt sizes 128..8192: max_tokens_per_s(L) = L / prompt_time(L). One request
  at a time is exactly the M/M/1 server the paper assumes.
- decode: the batch sweep (batch 1..64 at prompt 512, 128 output tokens): tpot_ms = token_time.
The power-capped `h100-80gb-pcap` rows are left out (a setting, not a sku one can buy).

Usage: python scripts/build_profiles.py [--csv PATH] [--out data/profiles/splitwise.yaml] [--check]
--check exits 1 if the file on disk differs from what the CSV gives (used by the tests).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CSV = ROOT.parent / "shared" / "data" / "perf" / "splitwise_perf_model.csv"
DEFAULT_OUT = ROOT / "data" / "profiles" / "splitwise.yaml"
MODELS = {"llama2-70b": "llama-2-70b", "bloom-176b": "bloom-176b"}
SKUS = {"a100-80gb": "A100-SXM-80GB", "h100-80gb": "H100-SXM"}
DECODE_PROMPT, DECODE_TOKENS = 512, 128
HEADER = """\
# Measured profiles converted by scripts/build_profiles.py -- do not edit by hand.
# Source: Splitwise (Patel et al., ISCA 2024) performance model, Mutinifni/splitwise-sim
# data/perf_model.csv @ 8f99e7dc, MIT license; vLLM-based measurements on DGX-A100 and DGX-H100.
# prefill: batch-1 prompt sweep, max_tokens_per_s = input_tokens / prompt_time.
# decode: batch sweep at 512 input / 128 output tokens, tpot_ms = token_time. Repeats averaged.
"""


def profiles(csv: Path) -> list[dict]:
    df = pd.read_csv(csv)
    df = df[df["model"].isin(MODELS) & df["hardware"].isin(SKUS)]
    out = []
    for (model, hw, tp), g in df.groupby(["model", "hardware", "tensor_parallel"], sort=True):
        pre = g[g["batch_size"] == 1].groupby("prompt_size")["prompt_time"].mean()
        dec = g[(g["prompt_size"] == DECODE_PROMPT) & (g["token_size"] == DECODE_TOKENS)]
        dec = dec.groupby("batch_size")["token_time"].mean()
        out.append({
            "model": MODELS[model],
            "sku": SKUS[hw],
            "gpus_per_instance": int(tp),
            "engine": "vllm (splitwise-sim perf model)",
            "source": f"splitwise_perf_model.csv: {model} {hw} TP{tp}",
            "prefill": {
                "input_tokens": [int(x) for x in pre.index],
                "max_tokens_per_s": [round(float(L / (t / 1e3)), 1) for L, t in pre.items()],
            },
            "decode": [{
                "input_tokens": DECODE_PROMPT,
                "output_tokens": DECODE_TOKENS,
                "batch": [int(b) for b in dec.index],
                "tpot_ms": [round(float(t), 3) for t in dec.values],
            }],
        })
    return out


def render(profs: list[dict]) -> str:
    return HEADER + yaml.safe_dump(profs, sort_keys=False, default_flow_style=None, width=200)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args(argv)
    text = render(profiles(args.csv))
    if args.check:
        same = args.out.exists() and args.out.read_text() == text
        print("up to date" if same else f"{args.out} differs from {args.csv}")
        return 0 if same else 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out}: {text.count('- model:')} profiles")
    return 0


if __name__ == "__main__":
    sys.exit(main())
