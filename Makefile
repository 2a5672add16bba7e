# RS Geochem Inversion: `make demo` and `make test` set everything up from a fresh Debian 12.
SHELL := /bin/bash
SYSTEM_PYTHON := /usr/bin/python3
VENV := .venv
PYTHON := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.installed
QGIS_PROCESS := /usr/bin/qgis_process.bin
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
export QT_QPA_PLATFORM := offscreen
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: setup test test-matrix demo bench package wheel lint default-model clean

setup: $(VENV_STAMP)

# QGIS 3.22 LTR and Debian's numpy/scipy/GDAL from Debian's packages, only when missing.
$(QGIS_PROCESS):
	$(SUDO) apt-get update
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends \
		qgis python3-qgis qgis-providers python3-venv git libopenblas0-pthread

# The venv sees Debian's packages (qgis, osgeo, numpy, scipy); constraints keep their versions.
$(VENV_STAMP): requirements.txt requirements-dev.txt constraints.txt | $(QGIS_PROCESS)
	$(SYSTEM_PYTHON) -m venv --system-site-packages $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -c constraints.txt -r requirements-dev.txt
	touch $@

test: setup
	$(PYTHON) -m pytest test

# The suite and both workflows on QGIS 3.40 (Debian 13 chroot) and 3.44 (Debian sid chroot), the
# workflows on the host's 3.22; chroots, wheels and their venvs are cached in
# /var/cache/rsgeochem-matrix. HOST_PYTEST_LOG: a `make test` log whose counts the summary shows.
MATRIX_SUITES ?= trixie sid
test-matrix: setup
	$(SUDO) env HOST_PYTEST_LOG=$(HOST_PYTEST_LOG) bash matrix/run.sh $(MATRIX_SUITES)

demo: setup
	$(PYTHON) scripts/demo.py

# Benchmark-only packages and pyDMS (the peer downscaler bench/bench_fusion.py compares with; LGPL,
# not on PyPI: installed from the shared peers' copy when it is there, else that comparison is skipped).
BENCH_STAMP := $(VENV)/.bench-installed
PYDMS_SOURCE := ../shared/peers/pyDMS
$(BENCH_STAMP): bench/requirements.txt constraints.txt | $(VENV_STAMP)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -c constraints.txt -r bench/requirements.txt
	if [ -d $(PYDMS_SOURCE) ]; then \
		tmp=$$(mktemp -d) && cp -r $(PYDMS_SOURCE) $$tmp/pyDMS && chmod -R u+w $$tmp && \
		$(PYTHON) -m pip install --quiet --disable-pip-version-check --no-deps $$tmp/pyDMS && rm -rf $$tmp; \
	fi
	touch $@

bench: setup $(BENCH_STAMP)
	PROJ_LIB=/usr/share/proj $(PYTHON) bench/run.py

# ruff for style; flake8-qgis (.flake8) and scripts/check_qt6.py for what breaks on QGIS 4 / PyQt6
lint: setup
	$(PYTHON) -m ruff check .
	$(PYTHON) -m flake8 .
	$(PYTHON) scripts/check_qt6.py

# Retrain the default inversion model shipped in models/ from the sample data set.
default-model: setup
	$(PYTHON) scripts/train_default_model.py

# Zip for QGIS's "Install from ZIP": committed files only, without tests and dev files
# (export-ignore in .gitattributes).
PACKAGE ?= rsgeochem.zip
package:
	git archive --format=zip --prefix=rsgeochem/ -o $(PACKAGE) HEAD
	@echo "wrote $(PACKAGE)"

# The core (no QGIS glue) as a Python package for Dask workers and the command line (pyproject.toml;
# README "Province scale"): out/dist/rsgeochem-<metadata.txt version>-py3-none-any.whl
wheel: setup
	$(PYTHON) -m pip wheel --quiet --no-deps --no-build-isolation -w out/dist .
	rm -rf build rsgeochem.egg-info
	@ls out/dist/rsgeochem-*.whl

clean:
	rm -rf $(VENV) rsgeochem.zip out build rsgeochem.egg-info
