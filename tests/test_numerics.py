"""float32 capacity kernels agree with float64 on every output number of the example configs (issue #10:
within 1e-4 relative), with the same NaN pattern and the same text columns."""

import numpy as np
import pytest

from pdfleet import optimize
from pdfleet import spec as S
from pdfleet.output import schema

from conftest import CONFIGS


@pytest.mark.parametrize("name", ["paper.yaml", "example-fleet.yaml", "procurement.yaml"])
def test_float32_agrees_with_float64(name):
    fleet = S.load(CONFIGS / name)
    wide, narrow = optimize.run(fleet, precision="float64"), optimize.run(fleet, precision="float32")
    assert (wide.manifest["precision"], narrow.manifest["precision"]) == ("float64", "float32")
    for table in ("plan", "fleet"):
        a, b = getattr(wide, table), getattr(narrow, table)
        assert list(a.columns) == list(b.columns)
        for col in a.columns:
            if a[col].dtype.kind in "fiu":
                x, y = a[col].to_numpy(float), b[col].to_numpy(float)
                np.testing.assert_array_equal(np.isfinite(x), np.isfinite(y), err_msg=f"{table}.{col}")
                ok = np.isfinite(x)
                np.testing.assert_allclose(y[ok], x[ok], rtol=1e-4, atol=1e-9, err_msg=f"{table}.{col}")
            else:
                assert a[col].equals(b[col]), f"{table}.{col}"


@pytest.mark.parametrize("name", ["paper.yaml", "example-fleet.yaml", "procurement.yaml", "mixed-skus.yaml"])
def test_no_unexplained_null_or_inf(name):
    """No NaN or inf in a served row except the nulls docs/outputs.md lists (schema.OK_NULLS)."""
    fleet = S.load(CONFIGS / name)
    result = optimize.run(fleet)
    assert schema.unexplained_nulls(result.plan, "plan") == {}
    assert schema.unexplained_nulls(result.fleet, "fleet", lambda s: fleet.skus[s].inventory is not None) == {}
