"""Where pdfleet's shipped data lives (catalogs, calibration, measured profiles).

In a checkout (and an editable install) it is data/ beside the package; an installed wheel carries the
same folder as the package `pdfleet_data` (pyproject.toml maps it).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path


def data_dir() -> Path:
    beside = Path(__file__).resolve().parent.parent / "data"
    if (beside / "catalog").is_dir():
        return beside
    spec = importlib.util.find_spec("pdfleet_data")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    raise FileNotFoundError("pdfleet's data folder (catalogs, calibration) is missing; reinstall pdfleet")


DATA_DIR = data_dir()
