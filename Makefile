# Set-up is part of every target and idempotent: a fresh clone needs only `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# torch first, pinned: this wheel is the CPU build; an unpinned torch would pull several GB of CUDA packages.
TORCH_SPEC ?= torch==2.13.0
# OpenMP threads spin by default; with another busy process on a 2-core machine that is ~5x slower.
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: setup run test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev,export]"
	touch $(STAMP)

run: setup
	$(PY) -m monai.bundle run training --config_file bundles/unet/configs/train.json

test: setup
	$(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check unet_med tests benchmarks
	$(VENV)/bin/mypy

bench: setup
	$(PY) benchmarks/bench_network.py

clean:
	rm -rf $(VENV) .pytest_cache
