"""Built-in catalogs of GPU SKUs and LLM architectures (``data/catalog/*.yaml``).

Read once per process and cached; every call returns a fresh deep copy, so a caller that edits
an entry (e.g. overriding a price from fleet.yaml) cannot change what the next caller sees.
Only the standard library and PyYAML are imported here: the spec/validation layer uses this
module and must not pull in JAX. Byte sizes derived from these entries (weights, KV cache) are
computed in :mod:`pdfleet.perf.memory`, never here.
"""

from __future__ import annotations

import copy
import functools
from typing import Mapping

import yaml

from pdfleet.paths import DATA_DIR

CATALOG_DIR = DATA_DIR / "catalog"

# Fields every entry carries (optional ones, e.g. tflops_fp4 or MoE/MLA fields, are omitted
# where they do not apply). Documented in data/catalog/README.md.
SKU_REQUIRED = (
    "memory_gib",
    "gpus_per_node",
    "tflops_bf16",
    "hbm_tbps",
    "link_gbps",
    "network_gbps",
    "family",
    "source",
    "source_date",
)
SKU_OPTIONAL = ("tflops_fp8", "tflops_fp4", "price_usd_per_gpu_hour", "price_source", "link_topology")
MODEL_REQUIRED = (
    "params_b",
    "active_params_b",
    "layers",
    "hidden_size",
    "heads",
    "kv_heads",
    "head_dim",
    "vocab_size",
    "weight_dtype",
    "kv_dtype",
    "source",
    "source_date",
)
MODEL_OPTIONAL = ("kv_lora_rank", "qk_rope_head_dim", "experts", "experts_per_token")


def is_moe(model: Mapping) -> bool:
    """A mixture-of-experts model record: more than one routed expert per layer (spec.Model.moe for a fleet's)."""
    return int(model.get("experts") or 0) > 1


@functools.lru_cache(maxsize=None)
def _read(name: str) -> dict:
    """Parse one catalog file; a mapping of entry name -> mapping of fields."""
    path = CATALOG_DIR / name
    with path.open("r", encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of name -> fields")
    return data


def load_skus() -> dict[str, dict]:
    """GPU SKUs by name (e.g. ``"H100-SXM"``); a deep copy of the cached catalog."""
    return copy.deepcopy(_read("skus.yaml"))


def load_models() -> dict[str, dict]:
    """Model architectures by name (e.g. ``"llama-3.1-70b"``); a deep copy of the cached catalog."""
    return copy.deepcopy(_read("models.yaml"))
