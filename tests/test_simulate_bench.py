"""scripts/bench_simulate.py runs on a tiny size and ends with a RESULT line that parses."""

import re
import subprocess
import sys

from conftest import ROOT


def test_bench_simulate_tiny():
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_simulate.py"), "--requests", "2000", "--decode-requests",
         "300", "--rows", "2", "--numpy-requests", "500", "--numpy-decode-requests", "100", "--repeat", "1"],
        capture_output=True, text=True, check=True, timeout=300).stdout
    last = out.strip().splitlines()[-1]
    m = re.fullmatch(r"RESULT requests_per_s=(\d+) numpy_ratio=([0-9.]+)", last)
    assert m, last
    assert int(m.group(1)) > 0 and float(m.group(2)) > 0
    assert "least_work" in out and "decode" in out
