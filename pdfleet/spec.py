"""fleet.yaml: the validated, frozen description of a planning problem.

Pydantic models with unknown keys rejected and every number range-checked. This module imports
neither JAX nor pandas, so `pdfleet validate` answers fast. Loading errors become `SpecError`,
whose message is one line naming the YAML path and the fix.
"""

from __future__ import annotations

import functools
import math
import re
from pathlib import Path
from typing import Annotated, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from pdfleet.perf.memory import DTYPE_BYTES

Dtype = Literal["fp32", "bf16", "fp16", "fp8", "int8", "fp4", "int4"]
# Upper bounds keep every number far inside float32 range and catch unit slips (1e9 instead of 1e3).
LIMIT = 1e12
Positive = Annotated[float, Field(gt=0, le=LIMIT, allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0, le=LIMIT, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=1, le=10_000_000)]
Price = Annotated[float, Field(gt=0, le=10_000, allow_inf_nan=False)]
Quarter = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_.\-]+$")]
GpuCount = Annotated[int, Field(ge=0, le=10_000_000)]  # a whole number of GPUs (0 allowed)
PurchasePrice = Annotated[float, Field(gt=0, le=10_000_000, allow_inf_nan=False)]  # USD for one GPU
HOURS_PER_QUARTER = 8760 / 4  # 2190: a 365-day year in four quarters


class SpecError(Exception):
    """A fleet.yaml problem: `path` is the dotted YAML path, the message says what to change."""

    def __init__(self, path: str, message: str):
        # one line, whatever a name or value in it holds (a YAML key may contain a line break)
        self.path = _one_line(path)
        self.message = _one_line(message)
        super().__init__(f"{self.path}: {self.message}" if self.path else self.message)


def _one_line(text: str) -> str:
    return text.replace("\r", "\\r").replace("\n", "\\n")


class Strict(BaseModel):
    # strict: `true` or "5" is not a number here (YAML's yes/no/strings are mistakes, not counts)
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True, strict=True)


PerQuarter = Union[NonNegative, dict[Quarter, NonNegative]]
PerQuarterGpus = Union[GpuCount, dict[Quarter, GpuCount]]  # whole GPUs: one number or {quarter: number}
InstanceCount = Annotated[int, Field(ge=1, le=1000)]


class MinInstances(Strict):
    """Fewest instances per role of a served workload in a quarter (N+1 redundancy); each defaults to 1."""

    prefill: InstanceCount = 1
    decode: InstanceCount = 1


class Planning(Strict):
    quarters: list[Quarter] = Field(default_factory=lambda: ["now"], min_length=1, max_length=200)
    rounding: Literal["ceil", "nearest"] = "ceil"
    ttft_quantile: Annotated[float, Field(gt=0, lt=1)] | Literal["mean"] = "mean"
    memory_utilization: Annotated[float, Field(gt=0, le=1)] = 0.9
    seed: Annotated[int, Field(ge=0)] = 0
    roofline: bool = True  # predict (model, sku, TP) combinations that have no measured profile
    tp_degrees: list[Count] = Field(default_factory=lambda: [1, 2, 4, 8], min_length=1, max_length=16)
    # MoE models: also predict expert-parallel shapes of g GPUs (ep = g > 1 from tp_degrees, one node; attention
    # in dp groups of g/dp tensor-parallel GPUs for every dp dividing g)
    expert_parallel: bool = True
    calibration: str | None = None  # roofline efficiencies file (default: data/calibration/default.json)
    # serving engine whose calibration entry predicts roofline candidates (any: the sku's pooled entry)
    engine: Literal["vllm", "sglang", "tensorrt-llm", "any"] = "any"
    # roofline candidates are planned with service times x (1 + margin): 'auto' = the calibration entry's
    # cross-validated error per role (90th percentile of how much slower measurements ran than held-out
    # predictions), or one fraction for every roofline candidate; measured profiles get none. Default 0
    # (off): the shipped errors are large and uneven (decode p90 12 % on H100 TensorRT-LLM to 89 % on MI300X vLLM), so
    # 'auto' reshapes every roofline-based plan; use it when buying on predictions
    prediction_margin: Literal["auto"] | Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0.0
    # ---- fleet economics (README "Fleet economics")
    # hours that put hourly prices and one-time costs on one scale; 2208 = 92 days, the longest quarter
    hours_per_quarter: Annotated[float, Field(gt=0, le=2208, allow_inf_nan=False)] = HOURS_PER_QUARTER
    budget_usd_per_hour: PerQuarter | None = None  # cap on the fleet's USD per hour in a quarter; None: none
    min_instances: InstanceCount | MinInstances = 1  # one number for both roles, or {prefill: n, decode: n}
    headroom: Annotated[float, Field(ge=0, le=10, allow_inf_nan=False)] = 0.0  # plan for demand x (1 + headroom)
    # One-time USD per instance that changes sku or TP between consecutive quarters. 1000 is about a day of
    # an 8-GPU node's rent (8 x ~$4-6/h x 24 h) plus the redeploy work: a service does not hop for a few
    # dollars an hour, but does move when a cheaper sku saves more than that over a quarter (2190 h).
    switch_cost_usd: Annotated[float, Field(ge=0, le=1e9, allow_inf_nan=False)] = 1000.0
    pairing: Literal["any", "same_sku", "same_family"] = "any"  # which prefill sku may feed which decode sku
    # ---- latency models (README "Queue models")
    queue: QueueModel = "mm1"  # prefill: per-instance M/M/1 (the paper), M/G/1 (Pollaczek-Khinchine), pooled M/M/c
    tpot_quantile: Quantile | Literal["mean"] | None = None  # default of slo.tpot_quantile
    peak_window_s: Annotated[float, Field(ge=1, le=86_400, allow_inf_nan=False)] = 300.0  # a trace's busiest window

    @field_validator("prediction_margin", mode="before")
    @classmethod
    def _auto_or_fraction(cls, v):
        """One message for both forms instead of one per branch of the union."""
        ok = v == "auto" or (isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1)
        if not ok:
            raise ValueError("use 'auto' (each calibration entry's cross-validated error) or a fraction from 0 to 1, "
                             "e.g. 0.2")
        return v

    @field_validator("quarters")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("quarter labels must be unique")
        return v

    def min_instances_for(self, role: str) -> int:
        """`min_instances` of one role ('prefill' or 'decode')."""
        if role not in ("prefill", "decode"):
            raise ValueError(f"role must be 'prefill' or 'decode', not {role!r}")
        if isinstance(self.min_instances, MinInstances):
            return getattr(self.min_instances, role)
        return self.min_instances


class Sku(Strict):
    memory_gib: Positive
    price_usd_per_gpu_hour: Price
    gpus_per_node: Count = 8
    tflops_bf16: Positive | None = None
    tflops_fp8: Positive | None = None
    tflops_fp4: Positive | None = None
    hbm_tbps: Positive | None = None
    link_gbps: Positive | None = None
    link_topology: Literal["switch", "mesh"] = "switch"  # mesh: one link per peer (MI300X); roofline.hardware_from_sku
    inventory: PerQuarter | None = None  # cap on owned + bought + rented GPUs in use in a quarter
    # ---- fleet economics (README "Fleet economics"); prices in USD, counts in whole GPUs
    owned: PerQuarterGpus | None = None  # GPUs already owned (sunk); None: 0
    owned_usd_per_gpu_hour: Annotated[float, Field(ge=0, le=10_000, allow_inf_nan=False)] = 0.0  # power, hosting
    rent_max: PerQuarterGpus | None = None  # GPUs rentable at price_usd_per_gpu_hour; None: unlimited
    purchase_usd_per_gpu: PurchasePrice | None = None  # one GPU, bought; None: this sku cannot be bought
    amortization_quarters: Annotated[int, Field(ge=1, le=200)] = 12  # straight line, 3 years; needs a purchase price
    lead_time_quarters: Annotated[int, Field(ge=0, le=200)] = 0  # ordered in quarter t, usable from t + lead
    buy_max: PerQuarterGpus | None = None  # GPUs that can be ordered per ordering quarter; None: unlimited
    network_gbps: Positive | None = None  # per-GPU bandwidth to other nodes, Gb/s (bits); KV-cache transfer
    family: Annotated[str, Field(min_length=1, max_length=64)] | None = None  # e.g. hopper; pairing: same_family
    source: str | None = None
    price_source: str | None = None
    source_date: str | None = None

    @field_validator("family")
    @classmethod
    def _lower(cls, v: str | None) -> str | None:
        return v.lower() if v is not None else None


class Model(Strict):
    params_b: Positive
    active_params_b: Positive | None = None
    layers: Count
    hidden_size: Count | None = None
    heads: Count | None = None
    kv_heads: Count | None = None
    head_dim: Count | None = None
    kv_lora_rank: Count | None = None
    qk_rope_head_dim: Annotated[int, Field(ge=0)] = 0
    vocab_size: Count | None = None
    experts: Count | None = None
    experts_per_token: Count | None = None
    weight_dtype: Dtype = "bf16"
    kv_dtype: Dtype = "bf16"
    source: str | None = None
    source_date: str | None = None

    @model_validator(mode="after")
    def _kv_shape(self) -> "Model":
        if self.kv_lora_rank is None and (self.kv_heads is None or self.head_dim is None):
            raise ValueError("give kv_heads and head_dim (or kv_lora_rank for MLA) to size the KV cache")
        if self.active_params_b is not None and self.active_params_b > self.params_b:
            raise ValueError("active_params_b cannot exceed params_b")
        return self

    @property
    def moe(self) -> bool:
        """A mixture-of-experts model: more than one routed expert per layer."""
        return (self.experts or 0) > 1

    @property
    def weight_dtype_bytes(self) -> float:
        return DTYPE_BYTES[self.weight_dtype]

    @property
    def kv_dtype_bytes(self) -> float:
        return DTYPE_BYTES[self.kv_dtype]


class PrefillTable(Strict):
    """Max prefill tokens/s of one instance: one number, or a table over input length."""

    max_tokens_per_s: Positive | list[Positive]
    input_tokens: list[Count] | None = None

    @model_validator(mode="after")
    def _shape(self) -> "PrefillTable":
        if isinstance(self.max_tokens_per_s, list):
            if self.input_tokens is None or len(self.input_tokens) != len(self.max_tokens_per_s):
                raise ValueError("a max_tokens_per_s list needs an input_tokens list of the same length")
            if len(self.max_tokens_per_s) < 1:
                raise ValueError("max_tokens_per_s list is empty")
            if any(b <= a for a, b in zip(self.input_tokens, self.input_tokens[1:])):
                raise ValueError("input_tokens must be strictly increasing")
        elif self.input_tokens is not None:
            raise ValueError("input_tokens goes with a list of max_tokens_per_s; drop it for a single number")
        return self

    def points(self) -> tuple[list[float], list[float]]:
        """(input_tokens, tokens_per_s); a single number is one point at input length 0."""
        if isinstance(self.max_tokens_per_s, list):
            return [float(x) for x in self.input_tokens], [float(x) for x in self.max_tokens_per_s]
        return [0.0], [float(self.max_tokens_per_s)]


class DecodeTable(Strict):
    """TPOT against decode batch, measured at one input/output length (the paper's benchmark)."""

    input_tokens: Count
    output_tokens: Count
    batch: list[Positive] = Field(min_length=1, max_length=64)
    tpot_ms: list[Positive] = Field(min_length=1, max_length=64)

    @model_validator(mode="after")
    def _shape(self) -> "DecodeTable":
        if len(self.batch) != len(self.tpot_ms):
            raise ValueError("batch and tpot_ms must have the same length")
        if any(b <= a for a, b in zip(self.batch, self.batch[1:])):
            raise ValueError("batch must be strictly increasing")
        return self

    @property
    def label(self) -> str:
        return f"in{self.input_tokens}/out{self.output_tokens}"

    def tpot_envelope(self) -> list[float]:
        """TPOT as planned: the running maximum of the measured values, so a larger batch is never
        faster. A noisy dip (12, 11, 13 ms) would otherwise let B* sit past a batch that misses the SLO."""
        out, top = [], 0.0
        for t in self.tpot_ms:
            top = max(top, t)
            out.append(top)
        return out


def check_shape(gpus: int, dp: int, ep: int) -> None:
    """The instance-shape rule of profiles and deploy pools (Profile's docstring); ValueError saying what to fix."""
    if gpus % dp:
        raise ValueError(f"dp {dp} does not divide gpus_per_instance {gpus}: the instance is dp attention "
                         f"groups of gpus_per_instance / dp GPUs; use a divisor of {gpus}")
    if ep not in (1, gpus):
        raise ValueError(f"ep {ep} must be 1 (experts tensor-parallel) or gpus_per_instance {gpus} (experts "
                         "spread over every GPU)")
    if dp > 1 and ep == 1:
        raise ValueError(f"dp {dp} with ep 1 is {dp} separate instances; use dp 1, or ep {gpus} for "
                         "data-parallel attention with expert-parallel MoE layers")


class Profile(Strict):
    """Measured (or predicted) tables of one instance shape. The shape: gpus_per_instance GPUs as `dp`
    attention groups of gpus_per_instance / dp tensor-parallel GPUs each, and `ep` = 1 (experts
    tensor-parallel with the rest: plain TP, the default) or ep = gpus_per_instance (whole routed experts
    spread over every GPU: expert parallelism, MoE models only). dp > 1 needs ep = gpus_per_instance (dp
    groups without expert parallelism are dp separate instances). The same rule as `pdfleet estimate`'s
    dp/ep columns (pdfleet.estimate.check)."""

    model: str
    sku: str
    gpus_per_instance: Count
    dp: Count = 1
    ep: Count = 1
    engine: str | None = None
    source: str | None = None
    origin: Literal["profile", "roofline"] = "profile"  # measured tables, or tables predicted by pdfleet
    prefill: PrefillTable | None = None
    decode: list[DecodeTable] | None = Field(default=None, min_length=1, max_length=32)

    @model_validator(mode="after")
    def _some_role(self) -> "Profile":
        if self.prefill is None and self.decode is None:
            raise ValueError("a profile needs prefill, decode or both")
        return self

    @model_validator(mode="after")
    def _shape(self) -> "Profile":
        check_shape(self.gpus_per_instance, self.dp, self.ep)
        return self

    @property
    def tensor_parallel(self) -> bool:
        """The plain tensor-parallel shape (dp = ep = 1)."""
        return self.dp == 1 and self.ep == 1


Quantile = Annotated[float, Field(gt=0, lt=1)]
QueueModel = Literal["mm1", "mg1", "mmc"]
TPOT_MS_MIN = 1.0  # slo.tpot_ms below this is a unit slip (seconds written for milliseconds)
TTFT_S_MAX = 1000.0  # slo.ttft_s above this is a unit slip (milliseconds written for seconds)
Z90 = 1.2815515655446004  # standard normal quantile at 0.9
Z99 = 2.3263478740408408  # at 0.99


class Slo(Strict):
    ttft_s: Positive
    tpot_ms: Positive
    ttft_quantile: Quantile | Literal["mean"] | None = None
    # None: the paper's TPOT at the mean decode batch (table). "mean" or a quantile: per-request TPOT at the
    # live batch under Poisson arrivals (pdfleet.perf.live_decode).
    tpot_quantile: Quantile | Literal["mean"] | None = None

    @field_validator("tpot_ms")
    @classmethod
    def _tpot_in_ms(cls, v: float) -> float:
        # Unit slip: 0.04 is 40 ms written in seconds. Measured decode steps take milliseconds (the paper's
        # DeepSeek-V3 on 8 x H200: 12.8 ms at batch 10), so an SLO under 1 ms per token cannot be met.
        if v < TPOT_MS_MIN:
            raise ValueError(f"{v:g} ms per token is faster than any GPU decodes (the SLO must be >= "
                             f"{TPOT_MS_MIN:g} ms); tpot_ms is in milliseconds: {v * 1000:g}?")
        return v

    @field_validator("ttft_s")
    @classmethod
    def _ttft_in_s(cls, v: float) -> float:
        # Unit slip: 2000 is 2 s written in milliseconds; a first-token budget of over 16 minutes is not a
        # latency SLO.
        if v > TTFT_S_MAX:
            raise ValueError(f"{v:g} s looks like milliseconds (the SLO must be <= {TTFT_S_MAX:g} s); "
                             f"ttft_s is in seconds: {v / 1000:g}?")
        return v


class Lengths(Strict):
    """A token-length distribution: `mean` with an optional coefficient of variation `cv` (0 = fixed), or
    its median `p50` with `p90` or `p99`, read as a lognormal (sigma = ln(p90 / p50) / z_0.9)."""

    mean: Positive | None = None
    cv: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] | None = None
    p50: Positive | None = None
    p90: Positive | None = None
    p99: Positive | None = None

    @model_validator(mode="after")
    def _one_form(self) -> "Lengths":
        upper = [p for p in (self.p90, self.p99) if p is not None]
        if self.mean is not None:
            if self.p50 is not None or upper:
                raise ValueError("give mean (with cv) or percentiles (p50 with p90 or p99), not both")
        elif self.p50 is None or len(upper) != 1:
            raise ValueError("give mean (with optional cv), or p50 with exactly one of p90 or p99")
        elif upper[0] < self.p50:
            raise ValueError("the upper percentile is below p50; percentiles must increase")
        return self

    @property
    def sigma(self) -> float:
        """Lognormal sigma of the percentile form (0 for the mean form)."""
        if self.mean is not None:
            return 0.0
        upper, z = (self.p90, Z90) if self.p90 is not None else (self.p99, Z99)
        return math.log(upper / self.p50) / z

    @property
    def average(self) -> float:
        """E[L]: the mean, or exp(ln p50 + sigma^2 / 2) of the lognormal."""
        return self.mean if self.mean is not None else self.p50 * math.exp(self.sigma**2 / 2)

    @property
    def scv(self) -> float:
        """Squared coefficient of variation Var[L] / E[L]^2 (lognormal: exp(sigma^2) - 1)."""
        if self.mean is not None:
            return (self.cv or 0.0) ** 2
        return math.expm1(self.sigma**2)


TokenLengths = Union[Count, Lengths]


class Pool(Strict):
    """One role of a running deployment: which sku, how many GPUs per instance, how many instances."""

    sku: str
    gpus_per_instance: Count
    dp: Count = 1  # the instance shape, as a profile's (Profile)
    ep: Count = 1
    instances: Annotated[int, Field(ge=1, le=1_000_000)]

    @model_validator(mode="after")
    def _shape(self) -> "Pool":
        check_shape(self.gpus_per_instance, self.dp, self.ep)
        return self


class Deploy(Strict):
    """A deployment that already runs: optimize reports its latencies and headroom instead of choosing."""

    prefill: Pool
    decode: Pool


class Workload(Strict):
    model: str
    rate_rps: PerQuarter | None = None
    tokens_per_minute: PerQuarter | None = None
    input_tokens: TokenLengths | None = None  # a number, or a distribution {mean, cv} / {p50, p90}
    output_tokens: TokenLengths | None = None
    trace: str | None = None  # Azure CSV, Mooncake JSONL or CSV (arrival_s, input_tokens, output_tokens)
    queue: QueueModel | None = None  # prefill queue model; None: planning.queue
    slo: Slo
    overhead_s: NonNegative = 0.0
    deploy: Deploy | None = None
    _trace: object = PrivateAttr(default=None)  # traces.TraceStats of a resolved `trace`

    @property
    def trace_stats(self):
        """traces.TraceStats of the workload's trace (None without one)."""
        return self._trace

    @model_validator(mode="after")
    def _one_demand(self) -> "Workload":
        if self.trace is None:
            if (self.rate_rps is None) == (self.tokens_per_minute is None):
                raise ValueError("give exactly one of rate_rps or tokens_per_minute")
        elif self.rate_rps is not None and self.tokens_per_minute is not None:
            raise ValueError("give at most one of rate_rps or tokens_per_minute beside a trace")
        return self

    @property
    def input_mean(self) -> float:
        return mean_tokens(self.input_tokens)

    @property
    def output_mean(self) -> float:
        return mean_tokens(self.output_tokens)

    @property
    def input_scv(self) -> float:
        """Squared coefficient of variation of the input length (0 for a fixed length)."""
        return self.input_tokens.scv if isinstance(self.input_tokens, Lengths) else 0.0


def mean_tokens(value: TokenLengths) -> float:
    return value.average if isinstance(value, Lengths) else float(value)


class Fleet(Strict):
    """The whole file. `skus`/`models` may name catalog entries (a list of names, or name -> overrides);
    `profile_files` lists YAML files of further profiles, relative to the fleet.yaml."""

    planning: Planning = Field(default_factory=Planning)
    skus: dict[str, Sku] = Field(min_length=1)
    models: dict[str, Model] = Field(default_factory=dict)
    profile_files: list[str] = Field(default_factory=list)
    profiles: list[Profile] = Field(default_factory=list)
    workloads_file: str | None = None  # demand.csv | demand.parquet (pdfleet/demand_file.py), relative to the fleet.yaml
    workloads: dict[str, Workload] = Field(min_length=1)


# ---------------------------------------------------------------- cross-references and per-quarter values


SKU_PER_QUARTER = ("owned", "rent_max", "buy_max", "inventory")  # sku fields given as a number or per quarter


def per_quarter(value, quarters: list[str], path: str) -> list[float]:
    """Expand one value or a {quarter: value} map to one value per planning quarter."""
    if not isinstance(value, dict):
        return [float(value)] * len(quarters)
    unknown = sorted(set(value) - set(quarters))
    if unknown:
        raise SpecError(f"{path}.{unknown[0]}", f"not a planning quarter; use one of {quarters}")
    missing = [q for q in quarters if q not in value]
    if missing:
        raise SpecError(path, f"no value for quarter {missing[0]}; give every quarter in planning.quarters")
    return [float(value[q]) for q in quarters]


def _check_references(fleet: Fleet) -> None:
    def known(kind: str, names) -> str:
        return f"define it under {kind}: (known: {', '.join(sorted(names))})"

    for i, p in enumerate(fleet.profiles):
        if p.model not in fleet.models:
            raise SpecError(f"profiles[{i}].model", f"unknown model '{p.model}'; {known('models', fleet.models)}")
        if p.sku not in fleet.skus:
            raise SpecError(f"profiles[{i}].sku", f"unknown sku '{p.sku}'; {known('skus', fleet.skus)}")
        if p.ep > 1 and not fleet.models[p.model].moe:
            raise SpecError(f"profiles[{i}].ep", f"ep {p.ep} needs a mixture-of-experts model; {p.model} has no "
                            "routed experts (models.*.experts); use ep 1")
    for name, w in fleet.workloads.items():
        if w.overhead_s >= w.slo.ttft_s:
            raise SpecError(f"workloads.{name}.overhead_s", f"{w.overhead_s:g} s is not below slo.ttft_s "
                            f"{w.slo.ttft_s:g} s; overhead is TTFT spent outside prefill, so lower it")
        if w.model not in fleet.models:
            raise SpecError(f"workloads.{name}.model", f"unknown model '{w.model}'; {known('models', fleet.models)}")
        for field in ("input_tokens", "output_tokens"):
            if getattr(w, field) is None and w.trace is None:
                raise SpecError(f"workloads.{name}.{field}", "required field is missing; add it (a number, or "
                                "{mean, cv}, or {p50, p90}), or name a trace: to take it from")
        for field in ("rate_rps", "tokens_per_minute"):
            if getattr(w, field) is not None:
                per_quarter(getattr(w, field), fleet.planning.quarters, f"workloads.{name}.{field}")
        if w.deploy is not None:
            for role in ("prefill", "decode"):
                sku = getattr(w.deploy, role).sku
                if sku not in fleet.skus:
                    raise SpecError(f"workloads.{name}.deploy.{role}.sku",
                                    f"unknown sku '{sku}'; {known('skus', fleet.skus)}")
    _check_ttft_fits_prefill(fleet)
    quarters = fleet.planning.quarters
    if fleet.planning.budget_usd_per_hour is not None:
        per_quarter(fleet.planning.budget_usd_per_hour, quarters, "planning.budget_usd_per_hour")
    for name, s in fleet.skus.items():
        for field in SKU_PER_QUARTER:
            if getattr(s, field) is not None:
                per_quarter(getattr(s, field), quarters, f"skus.{name}.{field}")
        if s.inventory is not None and s.owned is not None:
            inventory = per_quarter(s.inventory, quarters, f"skus.{name}.inventory")
            owned = per_quarter(s.owned, quarters, f"skus.{name}.owned")
            for q, cap, own in zip(quarters, inventory, owned):
                if cap < own:
                    raise SpecError(f"skus.{name}.inventory", f"{cap:g} GPUs in quarter {q} is below owned ({own:g}); "
                                    f"inventory caps owned + bought + rented GPUs, so it must be >= owned: "
                                    f"raise inventory or lower owned")


def _prefill_s(table: PrefillTable, length: float) -> float:
    """Seconds one instance takes to prefill one prompt of `length` tokens: length / TPmax(length), TPmax read
    linearly between measured lengths and held at the ends (as pdfleet.perf.table.interp)."""
    xs, ys = table.points()
    if length <= xs[0]:
        return length / ys[0]
    for (x0, y0), (x1, y1) in zip(zip(xs, ys), zip(xs[1:], ys[1:])):
        if length <= x1:
            return length / (y0 + (y1 - y0) * (length - x0) / (x1 - x0))
    return length / ys[-1]


def _check_ttft_fits_prefill(fleet: Fleet) -> None:
    """A mean TTFT SLO below overhead + one prompt's prefill time on the fastest measured profile cannot be met
    by any number of instances (every queue model's mean TTFT is the wait plus that service time). Checked
    only with planning.roofline off (a predicted sku or TP might be faster) and for mean-TTFT SLOs (an M/M/1
    quantile of the exponential sojourn can sit below one service time)."""
    if fleet.planning.roofline:
        return
    for name, w in fleet.workloads.items():
        q = w.slo.ttft_quantile if w.slo.ttft_quantile is not None else fleet.planning.ttft_quantile
        if q != "mean" or w.input_tokens is None:
            continue
        times = [(_prefill_s(p.prefill, w.input_mean), p) for p in fleet.profiles
                 if p.model == w.model and p.prefill is not None and p.origin == "profile"]
        if not times:
            continue
        fastest, p = min(times, key=lambda t: t[0])
        if w.overhead_s + fastest >= w.slo.ttft_s:
            raise SpecError(f"workloads.{name}.slo.ttft_s",
                            f"{w.slo.ttft_s:g} s is below overhead_s + the prefill of one {w.input_mean:g}-token "
                            f"prompt on the fastest measured profile ({p.sku} x {p.gpus_per_instance}: "
                            f"{w.overhead_s + fastest:.3g} s), so no fleet meets it; raise ttft_s, shorten the "
                            f"prompt, or add a faster profile")


# ---------------------------------------------------------------- loading with one-line errors


# Fields whose type is a union: pydantic puts the branch's name (e.g. 'constrained-float',
# 'dict[constrained-str,constrained-int]', 'MinInstances') in loc right after them. Only there, and only an
# item shaped like a branch name, is dropped, so a workload named 'int' or a sku named 'owned' keeps its name.
_UNION_FIELDS = {"rate_rps", "tokens_per_minute", "inventory", "max_tokens_per_s", "ttft_quantile",
                 "tpot_quantile", "input_tokens", "output_tokens",
                 "owned", "rent_max", "buy_max", "budget_usd_per_hour", "min_instances"}
_BRANCH = re.compile(r"^(int|float|str|bool|constrained-\w+|[\w-]+\[.*\]|MinInstances|Lengths)$")


def _path(loc) -> str:
    parts: list[str] = []
    previous = None
    for item in loc:
        if previous in _UNION_FIELDS and isinstance(item, str) and _BRANCH.match(item):
            previous = None
            continue
        parts.append(f"[{item}]" if isinstance(item, int) else ("." if parts else "") + str(item))
        previous = item
    return "".join(parts)


def _hint(err: dict) -> str:
    kind, msg = err["type"], err["msg"]
    got = err.get("input")
    shown = "" if isinstance(got, (dict, list)) or got is None else f" (got {got!r})"
    if kind == "missing":
        return "required field is missing; add it"
    if kind == "extra_forbidden":
        return _unknown_key(err["loc"][-1])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    return f"{msg}{shown}"


def from_dict(data, base_dir: str | Path = ".") -> Fleet:
    """Validate a parsed fleet.yaml document; raise SpecError on the first problem.

    base_dir resolves relative `profile_files`.
    """
    if not isinstance(data, dict):
        raise SpecError("", "fleet.yaml must be a mapping with planning, skus, models, profiles, workloads")
    data, rows = _workloads_file(data, Path(base_dir))
    origins = _Origins(rows)
    data, origins.profiles = _expand(data, Path(base_dir))
    try:
        fleet = Fleet.model_validate(data)
    except ValidationError as exc:
        problems = [(_origin(_path(e["loc"]), origins), _hint(e)) for e in _one_per_field(exc.errors())]
        shown = problems[:MAX_PROBLEMS]
        message = "; ".join([shown[0][1]] + [f"{p}: {m}" for p, m in shown[1:]])
        if len(problems) > MAX_PROBLEMS:
            message += f"; and {len(problems) - MAX_PROBLEMS} more problem(s)"
        raise SpecError(shown[0][0], message) from None
    try:
        _check_references(fleet)
    except SpecError as exc:
        raise SpecError(_origin(exc.path, origins), exc.message) from None
    return _resolve_traces(fleet, Path(base_dir))


def _resolve_traces(fleet: Fleet, base_dir: Path) -> Fleet:
    """Workloads that name a trace get from it what they leave out: the input and output length
    distributions (mean and cv) and the demand. A demand given beside a trace is the quarter's average
    rate and is planned at the trace's peak (x peak / mean rate, planning.peak_window_s); without one, the
    trace's own peak rate is planned in every quarter. The resolved workload holds rate_rps per quarter
    and the trace's absolute path (pdfleet simulate replays it)."""
    if not any(w.trace for w in fleet.workloads.values()):
        return fleet
    from pdfleet import traces

    workloads = dict(fleet.workloads)
    for name, w in fleet.workloads.items():
        if w.trace is None:
            continue
        path = (base_dir / w.trace).resolve()
        try:
            st = traces.stats(traces.read(path), fleet.planning.peak_window_s)
        except traces.TraceError as exc:
            raise SpecError(f"workloads.{name}.trace", f"{exc}; paths are relative to the fleet.yaml") from None
        inp = w.input_tokens or Lengths(mean=st.input_mean, cv=st.input_cv)
        out = w.output_tokens or Lengths(mean=st.output_mean, cv=st.output_cv)
        resolved = w.model_copy(update={"input_tokens": inp, "output_tokens": out, "trace": str(path)})
        if w.rate_rps is None and w.tokens_per_minute is None:
            rate = {q: st.peak_rps for q in fleet.planning.quarters}
        else:
            average = demand_rps(resolved, fleet.planning.quarters, name)
            rate = {q: r * st.peak_factor for q, r in zip(fleet.planning.quarters, average)}
        workloads[name] = resolved.model_copy(update={"rate_rps": rate, "tokens_per_minute": None})
        workloads[name]._trace = st
    return fleet.model_copy(update={"workloads": workloads})


class _Origins:
    """Where entries came from: profiles (inline, or profile_files[i]: FILE[j]) and workloads_file rows."""

    def __init__(self, rows):
        self.rows = rows
        self.profiles: list[str] = []


def _workloads_file(data: dict, base_dir: Path):
    """Merge the rows of `workloads_file` into `workloads` (a name in both is an error)."""
    name = data.get("workloads_file")
    if name is None:
        return data, None
    if not isinstance(name, str):
        raise SpecError("workloads_file", "must be the path of a .csv or .parquet file, relative to the fleet.yaml")
    from pdfleet import demand_file

    loaded, rows = demand_file.load(base_dir / name, ((data.get("planning") or {}) if isinstance(
        data.get("planning"), dict) else {}).get("quarters", ["now"]))
    written = data.get("workloads") or {}
    if not isinstance(written, dict):
        raise SpecError("workloads", f"must be a mapping of name -> fields, not a {type(written).__name__}")
    both = sorted(set(loaded) & set(written), key=str)
    if both:
        raise SpecError(f"workloads.{both[0]}", f"also a row of workloads_file {name}; keep one of the two")
    return {**data, "workloads": {**written, **loaded}}, rows


def _origin(path: str, origins) -> str:
    """Rename profiles[k] to where profile k was written (inline, or profile_files[i]: FILE[j]), and a
    workloads_file workload's path to its file row and column."""
    rows = getattr(origins, "rows", None)
    if rows is not None and rows.rename(path):
        return rows.rename(path)
    origins = getattr(origins, "profiles", origins)
    if path.startswith("profiles[") and origins:
        k = int(path[len("profiles[") : path.index("]")])
        if k < len(origins):
            return origins[k] + path[path.index("]") + 1 :]
    return path


def _expand(data: dict, base_dir: Path) -> tuple[dict, list[str]]:
    """Resolve catalog names and overrides in skus/models, and append profiles from profile_files."""
    from pdfleet import catalog

    data = dict(data)
    for section in ("planning", "workloads"):
        if data.get(section) is not None and not isinstance(data[section], dict):
            raise SpecError(section, f"must be a mapping of name -> fields, not a {type(data[section]).__name__}")
    calibration = (data.get("planning") or {}).get("calibration")
    if isinstance(calibration, str):
        path = base_dir / calibration
        if not path.is_file():
            raise SpecError("planning.calibration", f"no file {path}; paths are relative to the fleet.yaml")
        data["planning"] = {**data["planning"], "calibration": str(path)}
    for section, entries in (("skus", catalog.load_skus()), ("models", catalog.load_models())):
        data[section] = _with_catalog(data.get(section), entries, section)
    profiles = data.get("profiles") or []
    if not isinstance(profiles, list):
        raise SpecError("profiles", "must be a list of profiles (each starts with '- model:')")
    origins = [f"profiles[{k}]" for k in range(len(profiles))]
    profiles = list(profiles)
    files = data.get("profile_files") or []
    if not isinstance(files, list):
        raise SpecError("profile_files", "must be a list of YAML file paths")
    for i, name in enumerate(files):
        items = _read_profile_file(base_dir / str(name), f"profile_files[{i}]")
        origins += [f"profile_files[{i}]:{name}[{j}]" for j in range(len(items))]
        profiles += items
    data["profiles"] = profiles
    models = data["models"]
    for ref in [w.get("model") for w in (data.get("workloads") or {}).values() if isinstance(w, dict)] + [
        p.get("model") for p in profiles if isinstance(p, dict)
    ]:
        if isinstance(ref, str) and ref not in models and ref in catalog.load_models():
            models[ref] = catalog.load_models()[ref]  # a workload may name a catalog model directly
    return data, origins


def _with_catalog(section, entries: dict, name: str) -> dict:
    """A list of catalog names, or a mapping whose entries override catalog fields of the same name."""
    if section is None:
        return {}
    if isinstance(section, list):
        bad = [i for i, n in enumerate(section) if not isinstance(n, str)]
        if bad:
            raise SpecError(f"{name}[{bad[0]}]", "a list here holds catalog names; give fields as a mapping instead")
        unknown = [n for n in section if n not in entries]
        if unknown:
            raise SpecError(f"{name}.{unknown[0]}", f"not in the catalog ({', '.join(sorted(entries))}); "
                            f"give its fields as a mapping instead")
        return {n: entries[n] for n in section}
    if not isinstance(section, dict):
        raise SpecError(name, "must be a mapping of name -> fields, or a list of catalog names")
    merged = {}
    for key, fields in section.items():
        if not isinstance(key, str):
            raise SpecError(f"{name}.{key}", "names must be strings; quote the name")
        if fields is not None and not isinstance(fields, dict):
            raise SpecError(f"{name}.{key}", "must be a mapping of fields (or empty to take the catalog entry)")
        merged[key] = {**entries.get(key, {}), **(fields or {})}
    return merged


def _read_profile_file(path: Path, where: str) -> list:
    try:
        items = parse_yaml(read_text(path, where), str(path))
    except SpecError as exc:
        hint = "; paths are relative to the fleet.yaml" if "cannot read" in exc.message else ""
        raise SpecError(where, exc.message + hint) from None
    if not isinstance(items, list):
        raise SpecError(where, f"{path} must hold a YAML list of profiles")
    return items


MAX_PROBLEMS = 5  # a validation error lists this many problems (in the models' field order) on one `; `-separated line


def _one_per_field(errors: list[dict]) -> list[dict]:
    """One error per YAML field. A union (number | per-quarter map, count | {mean, cv}) reports one error per
    branch under the same field; keep the most specific, preferring a branch whose type matched (a bad
    {mean, cv} beats "should be an integer")."""
    groups: list[tuple[str, list[dict]]] = []
    for e in errors:
        p = _path(e["loc"])
        for key, members in groups:
            if _within(p, key) or _within(key, p):
                members.append(e)
                break
        else:
            groups.append((p, [e]))
    best = []
    for _, members in groups:
        matched = [e for e in members if not e["type"].endswith("_type")] or members
        best.append(max(matched, key=lambda e: len(e["loc"])))
    return best


def _within(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent + ".") or path.startswith(parent + "[")


@functools.cache
def _field_names() -> frozenset[str]:
    """Every key a fleet.yaml may hold at some level (the fields of the models above)."""
    names, seen, todo = set(), {Fleet}, [Fleet]
    while todo:
        model = todo.pop()
        for key, info in model.model_fields.items():
            names.add(key)
            new = [t for t in _types_in(info.annotation) if t not in seen]
            seen.update(new)
            todo += new
    return frozenset(names)


def _types_in(annotation) -> list[type]:
    """Strict models mentioned anywhere in a type annotation (inside unions, lists, dicts)."""
    if isinstance(annotation, type) and issubclass(annotation, Strict):
        return [annotation]
    return [t for arg in getattr(annotation, "__args__", ()) for t in _types_in(arg)]


def _unknown_key(key) -> str:
    """The hint for a key no model has: name it and, when one is close, the key it probably meant."""
    import difflib

    close = difflib.get_close_matches(str(key), sorted(_field_names()), n=1, cutoff=0.75)
    guess = f"; did you mean '{close[0]}'?" if close else ""
    return f"unknown key {str(key)!r}{guess} (remove it or fix its spelling; pdfleet schema lists every key)"


class _UniqueKeyLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """SafeLoader that rejects a key written twice in one mapping (PyYAML silently keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key '{key}' (the first would be silently lost)", key_node.start_mark)
            seen.add(key) if isinstance(key, (str, int, float, bool)) else None
        return super().construct_mapping(node, deep)


def parse_yaml(text: str, name: str):
    """YAML text -> Python data, every problem a one-line SpecError naming line and column."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError("", f"{where}: YAML syntax error: {problem}; fix the indentation, quoting or key there") from None
    except RecursionError:
        raise SpecError("", f"{name}: nested too deeply to be a fleet.yaml") from None


def read_text(path: Path, where: str = "") -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SpecError(where, f"{path} is not UTF-8 text; save it as UTF-8") from None
    except (OSError, ValueError) as exc:
        raise SpecError(where, f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None


def load(path: str | Path) -> Fleet:
    """Read and validate a fleet.yaml file."""
    p = Path(path)
    return from_dict(parse_yaml(read_text(p), p.name), base_dir=p.parent)


def json_schema() -> dict:
    """JSON Schema of fleet.yaml, including the catalog-name list form of skus and models."""
    from pdfleet import catalog

    schema = Fleet.model_json_schema()
    for section, entries in (("skus", catalog.load_skus()), ("models", catalog.load_models())):
        mapping = schema["properties"][section]
        # A catalog name maps to overrides of its catalog fields (or to nothing): no field is required there.
        name = mapping["additionalProperties"]["$ref"].rsplit("/", 1)[-1]
        override = {k: v for k, v in schema["$defs"][name].items() if k != "required"}
        schema["$defs"][f"{name}Override"] = {**override, "title": f"{name} (catalog entry: fields override it)"}
        entry = {"anyOf": [{"$ref": f"#/$defs/{name}Override"}, {"type": "null"}]}
        mapping["properties"] = {n: entry for n in sorted(entries)}
        names = {"type": "array", "items": {"type": "string"}, "description": "names of catalog entries"}
        schema["properties"][section] = {"anyOf": [mapping, names], "title": mapping.get("title", section)}
    # workloads may all come from workloads_file (a table): one of the two is required
    schema["required"] = [r for r in schema.get("required", []) if r != "workloads"]
    schema["anyOf"] = [{"required": ["workloads"]}, {"required": ["workloads_file"]}]
    return schema


def demand_rps(workload: Workload, quarters: list[str], name: str) -> list[float]:
    """Request rate per quarter. tokens_per_minute counts input + output tokens (the paper's eq. 1)."""
    if workload.rate_rps is not None:
        return per_quarter(workload.rate_rps, quarters, f"workloads.{name}.rate_rps")
    tpm = per_quarter(workload.tokens_per_minute, quarters, f"workloads.{name}.tokens_per_minute")
    per_request = workload.input_mean + workload.output_mean
    return [t / 60.0 / per_request for t in tpm]


def ttft_quantile(fleet: Fleet, workload: Workload) -> float | None:
    """The TTFT quantile a workload's SLO bounds; None means the mean (the paper's choice)."""
    q = workload.slo.ttft_quantile if workload.slo.ttft_quantile is not None else fleet.planning.ttft_quantile
    return None if q == "mean" else float(q)


def queue_model(fleet: Fleet, workload: Workload) -> str:
    """The prefill queue model of a workload: its own `queue`, else planning.queue."""
    return workload.queue or fleet.planning.queue


def tpot_quantile(fleet: Fleet, workload: Workload) -> float | None:
    """None: TPOT at the mean batch (the paper); 0.0: the mean TPOT at the live batch; q: its q quantile."""
    q = workload.slo.tpot_quantile if workload.slo.tpot_quantile is not None else fleet.planning.tpot_quantile
    return None if q is None else (0.0 if q == "mean" else float(q))


def sku_per_quarter(fleet: Fleet, sku_name: str, field: str, default: float) -> list[float]:
    """One value per planning quarter of a sku's `owned`, `rent_max`, `buy_max` or `inventory`.

    An absent field gives `default` for every quarter (0 for owned, math.inf for an unlimited cap).
    `buy_max` is indexed by the quarter a GPU is ordered in, the others by the quarter it is used in.
    """
    if field not in SKU_PER_QUARTER:
        raise ValueError(f"field must be one of {SKU_PER_QUARTER}, not {field!r}")
    value = getattr(fleet.skus[sku_name], field)
    quarters = fleet.planning.quarters
    if value is None:
        return [float(default)] * len(quarters)
    return per_quarter(value, quarters, f"skus.{sku_name}.{field}")


def budget_per_quarter(fleet: Fleet) -> list[float]:
    """The fleet's budget in USD per hour for each planning quarter; math.inf where none is given."""
    budget = fleet.planning.budget_usd_per_hour
    quarters = fleet.planning.quarters
    if budget is None:
        return [math.inf] * len(quarters)
    return per_quarter(budget, quarters, "planning.budget_usd_per_hour")
