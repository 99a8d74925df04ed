"""Property tests (hypothesis): the loader never raises anything but SpecError, whatever the document, and
every valid tiny fleet plans without NaN or inf in an output column of a row whose status is `ok`."""

import copy
import math

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pdfleet import spec
from pdfleet.output import schema

SKUS = ("s0", "s1")
TABLE_BATCH = [1, 8, 32, 64]


def _decode_table(base: float, slope: float) -> dict:
    return {"input_tokens": 1024, "output_tokens": 256, "batch": TABLE_BATCH,
            "tpot_ms": [round(base * (1 + slope * b), 3) for b in TABLE_BATCH]}


lengths = st.one_of(
    st.integers(1, 8000),
    st.builds(lambda m, cv: {"mean": m, "cv": cv}, st.floats(16, 8000), st.floats(0, 2)),
    st.builds(lambda p50, f: {"p50": p50, "p90": round(p50 * f, 1)}, st.floats(16, 4000).map(lambda x: round(x, 1)),
              st.floats(1, 3)),
)


@st.composite
def workload(draw) -> dict:
    ttft = draw(st.floats(0.3, 30))
    slo = {"ttft_s": ttft, "tpot_ms": draw(st.floats(1, 300))}
    if draw(st.booleans()):
        slo["ttft_quantile"] = draw(st.sampled_from([0.5, 0.9, 0.99]))
    return {"model": "m", "rate_rps": draw(st.floats(0, 60)), "input_tokens": draw(lengths),
            "output_tokens": draw(lengths), "overhead_s": draw(st.floats(0, 0.2)) if ttft > 0.2 else 0.0,
            "slo": slo}


@st.composite
def fleet_doc(draw) -> dict:
    """A tiny valid fleet: one quarter, one model, two skus with one measured profile each, 1-2 workloads."""
    skus = {s: {"memory_gib": draw(st.sampled_from([40, 80, 141])),
                "price_usd_per_gpu_hour": draw(st.floats(0.3, 12))} for s in SKUS}
    profiles = [{"model": "m", "sku": s, "gpus_per_instance": draw(st.sampled_from([1, 2, 4, 8])),
                 "prefill": {"max_tokens_per_s": draw(st.floats(1000, 60000))},
                 "decode": [_decode_table(draw(st.floats(4, 60)), draw(st.floats(0, 0.03)))]} for s in SKUS]
    n = draw(st.integers(1, 2))
    return {"planning": {"quarters": ["q1"], "roofline": False, "queue": draw(st.sampled_from(["mm1", "mg1", "mmc"])),
                         "rounding": draw(st.sampled_from(["ceil", "nearest"]))},
            "skus": skus,
            "models": {"m": {"params_b": draw(st.sampled_from([7, 13, 70])), "layers": draw(st.sampled_from([32, 80])),
                             "kv_heads": 8, "head_dim": 128}},
            "profiles": profiles,
            "workloads": {f"w{i}": draw(workload()) for i in range(n)}}


JUNK = st.one_of(st.none(), st.booleans(), st.integers(-10**30, 10**30),
                 st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
                 st.lists(st.integers(-3, 3), max_size=3), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
                 st.just({"mean": -1}), st.just({"q9": 1}), st.just([{"model": 1}]))


def _slots(doc, prefix=()):
    """Every (container, key) in a document, so a mutation can hit any level."""
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    for k, v in items:
        yield doc, k, prefix + (k,)
        yield from _slots(v, prefix + (k,))


@st.composite
def broken_doc(draw) -> dict:
    """A valid fleet with 1-3 mutations: a value replaced by junk, a key deleted, or an unknown key added."""
    doc = copy.deepcopy(draw(fleet_doc()))
    for _ in range(draw(st.integers(1, 3))):
        slots = list(_slots(doc))
        container, key, _ = slots[draw(st.integers(0, len(slots) - 1))]
        action = draw(st.sampled_from(["junk", "delete", "extra"]))
        if action == "junk":
            # a copy: st.just hands out the same dict each time, and a later mutation (or the loader) must not
            # change it for the draws after (hypothesis then reports FlakyStrategyDefinition)
            container[key] = copy.deepcopy(draw(JUNK))
        elif action == "delete":
            del container[key]
        elif isinstance(container, dict):
            container[draw(st.text(min_size=1, max_size=8))] = copy.deepcopy(draw(JUNK))
    return doc


def _loads_or_spec_error(doc) -> spec.Fleet | None:
    try:
        return spec.from_dict(doc)
    except spec.SpecError as exc:
        assert str(exc) and "\n" not in str(exc), str(exc)  # one line
        return None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(broken_doc())
def test_loader_raises_only_spec_error_on_broken_fleets(doc):
    _loads_or_spec_error(doc)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab:-[]{}, \n\t'\"#&*!|>?%@0.5e")), max_size=60))
def test_loader_raises_only_spec_error_on_any_text(text):
    try:
        doc = spec.parse_yaml(text, "fleet.yaml")
    except spec.SpecError as exc:
        assert "\n" not in str(exc)
        return
    _loads_or_spec_error(doc)


@settings(max_examples=100, deadline=None)
@given(fleet_doc())
def test_generated_fleets_are_valid(doc):
    """The generator is meant to make valid fleets; the only refusal it may hit is an SLO no profile can meet."""
    try:
        spec.from_dict(doc)
    except spec.SpecError as exc:
        assert exc.path.endswith(".slo.ttft_s") and "no fleet meets it" in exc.message, str(exc)


@pytest.fixture(scope="module")
def planner():
    from pdfleet import optimize

    return optimize.run


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fleet_doc())
def test_every_valid_fleet_plans_without_nan_in_ok_rows(planner, doc):
    fleet = _loads_or_spec_error(doc)
    assume(fleet is not None)
    result = planner(fleet)
    plan = result.plan
    assert len(plan) == 2 * len(fleet.workloads)  # a prefill and a decode row per workload and quarter
    # nulls on served rows only where docs/outputs.md says (pdfleet/output/schema.py OK_NULLS), no inf anywhere
    assert schema.unexplained_nulls(plan, "plan") == {}
    capped = lambda sku: fleet.skus[sku].inventory is not None  # noqa: E731
    assert schema.unexplained_nulls(result.fleet, "fleet", capped) == {}
    assert math.isfinite(float(plan.loc[plan["status"] == "ok", "cost_usd_per_hour"].sum()))
