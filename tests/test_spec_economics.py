"""Fleet economics keys in fleet.yaml: owned / rented / bought GPUs, budget, operations, pairing.

Each key: accepted with a valid value, its default when absent, and every bad value rejected with a
one-line SpecError naming the exact YAML path (and exit 2 from `pdfleet validate`).
"""

import json
import math
import subprocess
import sys

import pytest
import yaml
from click.testing import CliRunner

from pdfleet import catalog, spec
from pdfleet.cli import main

from conftest import tiny_fleet

QUARTERS = ["q1", "q2"]  # tiny_fleet's planning.quarters


def load(**changes):
    return spec.from_dict(tiny_fleet(**changes))


# ---------------------------------------------------------------- defaults and valid values


def test_defaults_when_absent():
    f = load()
    p, s = f.planning, f.skus["fast"]
    assert p.hours_per_quarter == 2190.0 == 8760 / 4
    assert p.budget_usd_per_hour is None and p.min_instances == 1 and p.headroom == 0.0
    assert p.switch_cost_usd == 1000.0 and p.pairing == "any"
    assert p.min_instances_for("prefill") == p.min_instances_for("decode") == 1
    assert s.owned is None and s.owned_usd_per_gpu_hour == 0.0 and s.rent_max is None
    assert s.purchase_usd_per_gpu is None and s.amortization_quarters == 12 and s.lead_time_quarters == 0
    assert s.buy_max is None and s.network_gbps is None and s.family is None
    assert spec.sku_per_quarter(f, "fast", "owned", 0) == [0.0, 0.0]
    for field in ("rent_max", "buy_max", "inventory"):
        assert spec.sku_per_quarter(f, "fast", field, math.inf) == [math.inf, math.inf]
    assert spec.budget_per_quarter(f) == [math.inf, math.inf]


VALID = {  # dotted path -> (value, attribute check)
    "skus.fast.owned": (16, lambda f: f.skus["fast"].owned == 16),
    "skus.fast.owned_usd_per_gpu_hour": (0.35, lambda f: f.skus["fast"].owned_usd_per_gpu_hour == 0.35),
    "skus.fast.rent_max": ({"q1": 0, "q2": 64}, lambda f: f.skus["fast"].rent_max == {"q1": 0, "q2": 64}),
    "skus.fast.purchase_usd_per_gpu": (30_000, lambda f: f.skus["fast"].purchase_usd_per_gpu == 30_000.0),
    "skus.fast.amortization_quarters": (20, lambda f: f.skus["fast"].amortization_quarters == 20),
    "skus.fast.lead_time_quarters": (2, lambda f: f.skus["fast"].lead_time_quarters == 2),
    "skus.fast.buy_max": (8, lambda f: f.skus["fast"].buy_max == 8),
    "skus.fast.network_gbps": (400, lambda f: f.skus["fast"].network_gbps == 400.0),
    "skus.fast.family": ("Hopper", lambda f: f.skus["fast"].family == "hopper"),  # compared in lower case
    "planning.hours_per_quarter": (2208, lambda f: f.planning.hours_per_quarter == 2208.0),
    "planning.budget_usd_per_hour": ({"q1": 100, "q2": 250.5},
                                     lambda f: spec.budget_per_quarter(f) == [100.0, 250.5]),
    "planning.min_instances": (2, lambda f: f.planning.min_instances_for("decode") == 2),
    "planning.headroom": (0.25, lambda f: f.planning.headroom == 0.25),
    "planning.switch_cost_usd": (0, lambda f: f.planning.switch_cost_usd == 0.0),
    "planning.pairing": ("same_family", lambda f: f.planning.pairing == "same_family"),
}


@pytest.mark.parametrize("key", sorted(VALID))
def test_each_key_accepted(key):
    value, check = VALID[key]
    assert check(load(**{key: value}))


def test_min_instances_per_role():
    p = load(**{"planning.min_instances": {"decode": 3}}).planning
    assert (p.min_instances_for("prefill"), p.min_instances_for("decode")) == (1, 3)
    p = load(**{"planning.min_instances": {"prefill": 2, "decode": 4}}).planning
    assert (p.min_instances_for("prefill"), p.min_instances_for("decode")) == (2, 4)
    with pytest.raises(ValueError):
        p.min_instances_for("both")


def test_per_quarter_helpers():
    f = load(**{"skus.fast.owned": {"q1": 8, "q2": 16}, "skus.fast.inventory": 16, "skus.fast.buy_max": 4,
                "planning.budget_usd_per_hour": 500})
    assert spec.sku_per_quarter(f, "fast", "owned", 0) == [8.0, 16.0]
    assert spec.sku_per_quarter(f, "fast", "inventory", math.inf) == [16.0, 16.0]
    assert spec.sku_per_quarter(f, "fast", "buy_max", math.inf) == [4.0, 4.0]
    assert spec.sku_per_quarter(f, "slow", "owned", 0) == [0.0, 0.0]
    assert spec.budget_per_quarter(f) == [500.0, 500.0]
    with pytest.raises(ValueError):
        spec.sku_per_quarter(f, "fast", "price_usd_per_gpu_hour", 0)


def test_inventory_equal_to_owned_is_fine():
    f = load(**{"skus.fast.owned": {"q1": 8, "q2": 16}, "skus.fast.inventory": {"q1": 8, "q2": 16.5}})
    assert spec.sku_per_quarter(f, "fast", "inventory", math.inf) == [8.0, 16.5]


def test_purchase_terms_without_a_price_are_ignored_not_rejected():
    s = load(**{"skus.fast.buy_max": 8, "skus.fast.amortization_quarters": 4,
                "skus.fast.lead_time_quarters": 1}).skus["fast"]
    assert s.purchase_usd_per_gpu is None and s.buy_max == 8


def test_catalog_skus_carry_network_and_family():
    skus = catalog.load_skus()
    assert skus["H100-SXM"]["network_gbps"] == 400 and skus["A100-SXM-80GB"]["network_gbps"] == 200
    assert skus["B200"]["family"] == "blackwell" and skus["MI300X"]["family"] == "cdna3"
    for name, s in skus.items():
        assert 10 <= s["network_gbps"] <= 800, name  # Gb/s per GPU: bits, never the GB/s of link_gbps
        assert s["family"] in {"ampere", "hopper", "blackwell", "ada", "cdna2", "cdna3"}, name
    doc = tiny_fleet()
    doc["skus"] = {"H100-SXM": {"owned": 8}, "L40S": None}
    for p, sku in zip(doc["profiles"], ["H100-SXM", "L40S"]):
        p["sku"] = sku
    f = spec.from_dict(doc)
    assert f.skus["H100-SXM"].network_gbps == 400 and f.skus["H100-SXM"].owned == 8
    assert f.skus["L40S"].family == "ada"


def test_schema_lists_the_new_keys():
    schema = spec.json_schema()
    text = json.dumps(schema)
    for key in ("owned", "owned_usd_per_gpu_hour", "rent_max", "purchase_usd_per_gpu", "amortization_quarters",
                "lead_time_quarters", "buy_max", "network_gbps", "family", "hours_per_quarter",
                "budget_usd_per_hour", "min_instances", "headroom", "switch_cost_usd", "pairing"):
        assert f'"{key}"' in text, key
    result = CliRunner().invoke(main, ["schema"])
    assert result.exit_code == 0 and "switch_cost_usd" in result.output


# ---------------------------------------------------------------- bad values: exact path, one line, exit 2


BAD = {  # case -> (changes to tiny_fleet, exact YAML path of the error)
    "negative owned": ({"skus.fast.owned": -1}, "skus.fast.owned"),
    "fractional owned": ({"skus.fast.owned": 2.5}, "skus.fast.owned"),
    "fractional owned in a map": ({"skus.fast.owned": {"q1": 1, "q2": 2.5}}, "skus.fast.owned.q2"),
    "boolean owned": ({"skus.fast.owned": True}, "skus.fast.owned"),
    "unknown quarter in owned": ({"skus.fast.owned": {"q1": 1, "q2": 1, "q9": 1}}, "skus.fast.owned.q9"),
    "missing quarter in owned": ({"skus.fast.owned": {"q1": 1}}, "skus.fast.owned"),
    "inventory below owned": ({"skus.fast.owned": {"q1": 8, "q2": 16}, "skus.fast.inventory": 12},
                              "skus.fast.inventory"),
    "negative owned cost": ({"skus.fast.owned_usd_per_gpu_hour": -0.1}, "skus.fast.owned_usd_per_gpu_hour"),
    "negative rent_max": ({"skus.fast.rent_max": {"q1": 1, "q2": -4}}, "skus.fast.rent_max.q2"),
    "unknown quarter in rent_max": ({"skus.fast.rent_max": {"q1": 1, "q2": 1, "2027Q1": 1}},
                                    "skus.fast.rent_max.2027Q1"),
    "zero purchase price": ({"skus.fast.purchase_usd_per_gpu": 0}, "skus.fast.purchase_usd_per_gpu"),
    "huge purchase price": ({"skus.fast.purchase_usd_per_gpu": 1e8}, "skus.fast.purchase_usd_per_gpu"),
    "zero amortization": ({"skus.fast.amortization_quarters": 0}, "skus.fast.amortization_quarters"),
    "negative lead time": ({"skus.fast.lead_time_quarters": -1}, "skus.fast.lead_time_quarters"),
    "fractional buy_max": ({"skus.fast.buy_max": 1.5}, "skus.fast.buy_max"),
    "zero network": ({"skus.fast.network_gbps": 0}, "skus.fast.network_gbps"),
    "empty family": ({"skus.fast.family": ""}, "skus.fast.family"),
    "pairing foo": ({"planning.pairing": "foo"}, "planning.pairing"),
    "min_instances 0": ({"planning.min_instances": 0}, "planning.min_instances"),
    "min_instances prefill 0": ({"planning.min_instances": {"prefill": 0}}, "planning.min_instances.prefill"),
    "min_instances unknown role": ({"planning.min_instances": {"prefil": 2}}, "planning.min_instances.prefil"),
    "headroom -1": ({"planning.headroom": -1}, "planning.headroom"),
    "hours_per_quarter 0": ({"planning.hours_per_quarter": 0}, "planning.hours_per_quarter"),
    "hours_per_quarter above a quarter": ({"planning.hours_per_quarter": 8760}, "planning.hours_per_quarter"),
    "negative budget": ({"planning.budget_usd_per_hour": -5}, "planning.budget_usd_per_hour"),
    "unknown quarter in budget": ({"planning.budget_usd_per_hour": {"q1": 1, "q2": 1, "q3": 1}},
                                  "planning.budget_usd_per_hour.q3"),
    "negative switch cost": ({"planning.switch_cost_usd": -1}, "planning.switch_cost_usd"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_value_names_the_exact_path(case):
    changes, path = BAD[case]
    with pytest.raises(spec.SpecError) as exc:
        load(**changes)
    assert exc.value.path == path, str(exc.value)
    assert "\n" not in str(exc.value) and exc.value.message


def test_inventory_below_owned_says_which_quarter_and_why():
    with pytest.raises(spec.SpecError) as exc:
        load(**{"skus.fast.owned": {"q1": 8, "q2": 16}, "skus.fast.inventory": {"q1": 8, "q2": 12}})
    msg = exc.value.message
    assert "quarter q2" in msg and "owned + bought + rented" in msg and ">= owned" in msg


def test_a_sku_named_like_a_union_field_keeps_its_name():
    doc = tiny_fleet()
    doc["skus"]["owned"] = {"memory_gib": -1, "price_usd_per_gpu_hour": 1.0}
    with pytest.raises(spec.SpecError) as exc:
        spec.from_dict(doc)
    assert exc.value.path == "skus.owned.memory_gib"


@pytest.mark.parametrize("case", sorted(BAD))
def test_validate_exits_2_with_one_error_line(tmp_path, case):
    changes, path = BAD[case]
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(yaml.safe_dump(tiny_fleet(**changes), sort_keys=False))
    result = CliRunner().invoke(main, ["validate", str(fleet)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}:"), result.output


def test_validate_subprocess_stderr_is_one_line(tmp_path):
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(yaml.safe_dump(tiny_fleet(**{"planning.min_instances": {"prefill": 0}}), sort_keys=False))
    proc = subprocess.run([sys.executable, "-m", "pdfleet.cli", "validate", str(fleet)], capture_output=True,
                          text=True)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: planning.min_instances.prefill:"), proc.stderr
    assert "Traceback" not in proc.stderr
