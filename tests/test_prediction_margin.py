"""planning.engine and planning.prediction_margin: roofline candidates planned slower by the margin,
plan rows carrying prediction_error, measured profiles untouched."""

import copy

import numpy as np
import pytest
import yaml

from pdfleet import optimize, predicted, spec

from conftest import CONFIGS


@pytest.fixture(scope="module")
def mixed_doc():
    return yaml.safe_load((CONFIGS / "mixed-skus.yaml").read_text())


def _with(doc, **planning):
    d = copy.deepcopy(doc)
    d.setdefault("planning", {}).update(planning)
    return spec.from_dict(d)


def test_margin_scales_roofline_tables_exactly(mixed_doc):
    base = {(p.model, p.sku, p.gpus_per_instance): p for p in predicted.predict(_with(mixed_doc, prediction_margin=0.0)).profiles}
    slow = {(p.model, p.sku, p.gpus_per_instance): p for p in predicted.predict(_with(mixed_doc, prediction_margin=0.25)).profiles}
    assert base.keys() == slow.keys() and base
    for key, b in base.items():
        s = slow[key]
        if b.prefill is not None:  # capacity / 1.25
            np.testing.assert_allclose(np.asarray(s.prefill.points()[1]) * 1.25, b.prefill.points()[1], rtol=1e-6)
        for tb, ts in zip(b.decode or [], s.decode or []):  # TPOT x 1.25 (rounded to 1e-6 ms)
            np.testing.assert_allclose(ts.tpot_ms, np.asarray(tb.tpot_ms) * 1.25, rtol=1e-5, atol=2e-6)
        assert "margin prefill +25%, decode +25% (fixed)" in s.source and "fit " in s.source


def test_engine_and_margin_keys_validate(mixed_doc):
    assert _with(mixed_doc).planning.engine == "any" and _with(mixed_doc).planning.prediction_margin == 0.0
    assert _with(mixed_doc, prediction_margin="auto", engine="vllm").planning.prediction_margin == "auto"
    for bad in ({"engine": "ollama"}, {"prediction_margin": 1.5}, {"prediction_margin": "sometimes"},
                {"prediction_margin": True}):
        with pytest.raises(spec.SpecError) as err:
            _with(mixed_doc, **bad)
        if "prediction_margin" in bad:  # one message naming the key itself, not one per branch of the union
            assert err.value.path == "planning.prediction_margin" and "'auto'" in err.value.message
            assert str(err.value).count("got") == 1


def test_plan_rows_carry_prediction_error_and_margin_costs_capacity(mixed_doc):
    plain = optimize.run(_with(mixed_doc, prediction_margin=0.0))
    safe = optimize.run(_with(mixed_doc, prediction_margin=0.5))
    for res in (plain, safe):
        plan = res.plan
        roof = plan["source"] == "roofline"
        assert "prediction_error" in plan and roof.any()
        assert plan.loc[~roof, "prediction_error"].isna().all()
        served = roof & (plan["instances"] > 0)
        assert served.any() and (plan.loc[served, "prediction_error"] > 0).all()  # shipped file has cv_error
        # engine 'any': each measured sku's own entry pooled over its engines, not borrowed; measured rows: null
        assert (plan.loc[served, "calibration_fit"] == plan.loc[served, "sku"] + "/*").all()
        assert not plan.loc[served, "fit_borrowed"].any()
        assert plan.loc[~roof, "calibration_fit"].isna().all() and plan.loc[~roof, "fit_borrowed"].isna().all()
    # 50 % slower service times can only need as many or more GPUs for the same demand
    assert safe.plan["gpus"].sum() >= plain.plan["gpus"].sum()
    assert safe.manifest["prediction_margin"] == 0.5


def test_auto_margin_is_the_serving_entrys_cross_validated_error(mixed_doc):
    from pdfleet import calibrate

    fleet = _with(mixed_doc, prediction_margin="auto", engine="vllm")
    prof = next(p for p in predicted.predict(fleet).profiles if p.sku == "H100-SXM")
    served = calibrate.lookup("H100-SXM", "vllm")
    pre = calibrate.role_error(served, "prefill")[0]
    dec = calibrate.role_error(served, "decode")[0]
    assert f"fit {served.fit}" in prof.source
    assert f"margin prefill +{pre:.0%}, decode +{dec:.0%} (auto)" in prof.source


def test_summary_says_what_margin_roofline_rows_were_planned_with():
    import pandas as pd

    from pdfleet import report

    plan = pd.DataFrame({"source": ["roofline", "profile"], "instances": [3, 2], "prediction_error": [0.3, float("nan")]})
    line = report._margin_line(plan, {"prediction_margin": "auto", "engine": "vllm"})
    assert line.startswith("1 plan rows rest on roofline predictions (engine vllm)") and "up to 30%" in line
    assert "planned 20% slower" in report._margin_line(plan, {"prediction_margin": 0.2})
    assert "no margin" in report._margin_line(plan, {"prediction_margin": 0.0})
    assert report._margin_line(plan.iloc[1:], {"prediction_margin": 0.2}) == ""


def test_auto_margin_refuses_a_calibration_without_cross_validated_errors(mixed_doc, tmp_path):
    """'auto' takes each entry's cv_error; a file without any (what `pdfleet calibrate` writes) would plan with no
    margin while the summary says one was applied, so it is a one-line planning.prediction_margin error instead."""
    import json

    from pdfleet import calibrate

    data = json.loads(calibrate.DEFAULT_CALIBRATION.read_text())
    data.pop(calibrate.EP_ERROR_KEY)
    for by_engine in data["skus"].values():
        for entry in by_engine.values():
            entry.pop("cv_error", None)
    path = tmp_path / "no_cv.json"
    path.write_text(json.dumps(data))
    fleet = _with(mixed_doc, prediction_margin="auto", calibration=str(path))
    with pytest.raises(spec.SpecError) as err:
        predicted.predict(fleet)
    assert err.value.path == "planning.prediction_margin" and "cv_error" in str(err.value)
    assert predicted.predict(_with(mixed_doc, prediction_margin=0.2, calibration=str(path))).profiles  # a fraction


def test_a_sku_never_measured_is_planned_with_the_transfer_band():
    """L4 and H100-PCIE were never measured: their roofline is H100-SXM's fit moved to them, and their band is at
    least the file's leave-one-sku-out error of such a move (calibrate.transfer_band): for L4 (another NVIDIA
    architecture) the dense band; for H100-PCIE (Hopper) serving a mixture-of-experts model, the MoE band, which a
    move misses by far more (it carries no MoE fit). H100-SXM itself keeps its own cross-validated band. The plan's
    prediction_error and the 'auto' margin agree."""
    import json

    from pdfleet import calibrate

    doc = {"planning": {"prediction_margin": "auto", "engine": "tensorrt-llm"},
           "skus": ["H100-SXM", "L4", "H100-PCIE"], "models": ["llama-3.1-8b", "qwen3-30b-a3b"],
           "workloads": {
               "chat": {"model": "llama-3.1-8b", "rate_rps": 5, "input_tokens": 1000, "output_tokens": 200,
                        "slo": {"ttft_s": 2.0, "tpot_ms": 80}},
               "moe": {"model": "qwen3-30b-a3b", "rate_rps": 5, "input_tokens": 1000, "output_tokens": 200,
                       "slo": {"ttft_s": 2.0, "tpot_ms": 80}}}}
    fleet = spec.from_dict(doc)
    data = json.loads(calibrate.DEFAULT_CALIBRATION.read_text())
    dense = data[calibrate.TRANSFER_ERROR_KEY]["by_group"]
    moe = data[calibrate.TRANSFER_ERROR_KEY]["by_group_moe"]
    own = data["skus"]["H100-SXM"]["tensorrt-llm"]["cv_error"]
    assert own["decode"] < dense["same_vendor"]["decode"] < moe["same_family"]["decode"]  # else nothing is told apart
    profiles = predicted.predict(fleet).profiles

    def decode_margin(model, sku):
        p = next(p for p in profiles if p.model == model and p.sku == sku and p.gpus_per_instance == 1)
        return p.source.split("decode +")[1].split("%")[0]

    assert decode_margin("llama-3.1-8b", "L4") == f"{dense['same_vendor']['decode']:.0%}"[:-1]
    assert decode_margin("qwen3-30b-a3b", "H100-PCIE") == f"{moe['same_family']['decode']:.0%}"[:-1]
    assert decode_margin("llama-3.1-8b", "H100-SXM") == f"{own['decode']:.0%}"[:-1]
    res = optimize.run(fleet)
    plan = res.plan
    group = {"L4": "same_vendor", "H100-PCIE": "same_family"}
    assert res.manifest["roofline_moved_skus"] == {s: f"H100-SXM/tensorrt-llm, {g}" for s, g in sorted(group.items())}
    from pdfleet import report

    line = report._margin_line(plan, res.manifest)
    assert "for a sku without a fit of its own at least the error of moving a fit" in line
    used = sorted(set(plan.loc[plan["source"] == "roofline", "sku"]) & set(group))
    assert line.endswith(", ".join(f"{s} (H100-SXM/tensorrt-llm, {group[s]})" for s in used))
    moved = 0
    for r in plan[plan["source"] == "roofline"].itertuples():
        expect = own[r.role]
        if r.sku in group:  # the band of the move (the e2e band where the group measured the role only in batches)
            bands = (moe if r.model == "qwen3-30b-a3b" else dense)[group[r.sku]]
            expect, moved = max(expect, bands.get(r.role, bands["e2e"])), moved + 1
        assert r.prediction_error == pytest.approx(expect), (r.workload, r.role, r.sku)
        # the plan says which fit served the row, and that a moved or other-engine fit is borrowed
        assert r.calibration_fit == "H100-SXM/tensorrt-llm" and r.fit_borrowed == (r.sku in group), r.sku
    assert moved >= 2
    # the MoE model's decode goes to the measured H100-SXM: H100-PCIE would be planned 2.9x slower
    assert plan.loc[(plan["workload"] == "moe") & (plan["role"] == "decode"), "sku"].item() == "H100-SXM"
