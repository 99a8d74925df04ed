import copy
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture
def paper_dict():
    return yaml.safe_load((CONFIGS / "paper.yaml").read_text())


def tiny_fleet(**changes):
    """A small valid fleet document: one model on two skus, one workload. Nested keys via dotted paths."""
    doc = {
        "planning": {"quarters": ["q1", "q2"]},
        "skus": {
            "fast": {"memory_gib": 80, "price_usd_per_gpu_hour": 4.0},
            "slow": {"memory_gib": 80, "price_usd_per_gpu_hour": 2.0},
        },
        "models": {"m": {"params_b": 70, "layers": 80, "kv_heads": 8, "head_dim": 128}},
        "profiles": [
            {"model": "m", "sku": "fast", "gpus_per_instance": 4,
             "prefill": {"max_tokens_per_s": 20000},
             "decode": [{"input_tokens": 1024, "output_tokens": 256, "batch": [1, 8, 32, 64],
                         "tpot_ms": [20, 24, 30, 45]}]},
            {"model": "m", "sku": "slow", "gpus_per_instance": 4,
             "prefill": {"max_tokens_per_s": 8000},
             "decode": [{"input_tokens": 1024, "output_tokens": 256, "batch": [1, 8, 32, 64],
                         "tpot_ms": [35, 40, 55, 80]}]},
        ],
        "workloads": {
            "chat": {"model": "m", "rate_rps": {"q1": 5, "q2": 9}, "input_tokens": 1024, "output_tokens": 256,
                     "slo": {"ttft_s": 1.0, "tpot_ms": 50}},
        },
    }
    doc = copy.deepcopy(doc)
    for dotted, value in changes.items():
        node = doc
        keys = dotted.split(".")
        for k in keys[:-1]:
            node = node[int(k)] if isinstance(node, list) else node[k]
        last = keys[-1]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return doc
