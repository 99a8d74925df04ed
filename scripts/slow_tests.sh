#!/usr/bin/env bash
# The slow tests (marked `slow`, left out of the default `pytest` run): the scale tests of issue #10.
# Needs the project installed (the README's test command makes .venv) and a machine with 24 GiB of memory.
#     bash scripts/slow_tests.sh            # every slow test
#     PDFLEET_SCALE_ROWS=200000 bash scripts/slow_tests.sh   # a smaller fleet, same checks
set -euo pipefail
cd "$(dirname "$0")/.."
python=.venv/bin/python
[ -x "$python" ] || python=python3
exec "$python" -m pytest -m slow -v "$@"
