#!/usr/bin/env bash
# One leg of the QGIS version matrix, run INSIDE a matrix chroot (or on the host) from a copy of
# the tree whose .venv is the target's venv: the whole pytest suite, then both shipped workflows as
# `make demo` runs them. Writes versions.env, pytest.log, demo.log and result.env to OUT.
# Usage: matrix/leg.sh OUT [--no-pytest]
set -uo pipefail
trap 'exit 130' INT TERM  # interrupted: stop here (pytest would return normally and the workflows start)
cd "$(dirname "$0")/.."
OUT=${1:?usage: leg.sh OUT [--no-pytest]}
PYTEST=${2:-}
PYTHON=.venv/bin/python
mkdir -p "$OUT"
export QT_QPA_PLATFORM=offscreen PYTHONDONTWRITEBYTECODE=1

$PYTHON - > "$OUT/versions.env" <<'EOF'
import platform
import numpy
import scipy
from osgeo import gdal
from qgis.core import Qgis
print(f'qgis={Qgis.version().split("-")[0]}')
print(f'python={platform.python_version()}')
print(f'numpy={numpy.__version__}')
print(f'scipy={scipy.__version__}')
print(f'gdal={gdal.__version__}')
EOF
cat "$OUT/versions.env"

pytest_exit=-
if [ "$PYTEST" != --no-pytest ]; then
    $PYTHON -m pytest test -rfEs 2>&1 | tee "$OUT/pytest.log"
    pytest_exit=${PIPESTATUS[0]}
fi

echo "=== workflows (scripts/demo.py) ==="
$PYTHON scripts/demo.py --out "$OUT/demo" --images '' > "$OUT/demo.log" 2>&1
demo_exit=$?
tail -n 12 "$OUT/demo.log"
printf 'pytest_exit=%s\ndemo_exit=%s\n' "$pytest_exit" "$demo_exit" > "$OUT/result.env"
