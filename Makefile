# Two commands for a new user: `make demo` and `make test`. Both create or refresh .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BUILD ?= build
DEMO_DATA ?= $(BUILD)/demo/data
DEMO_RUNS ?= $(BUILD)/demo/runs
WORKERS ?= $(shell nproc 2>/dev/null || echo 2)
BENCH_ARGS ?=
SEEDS ?=

# Keep every cache and offline log inside the build tree; W&B stays offline unless the user says otherwise.
export XDG_CACHE_HOME ?= $(CURDIR)/$(BUILD)/cache
export MPLCONFIGDIR ?= $(CURDIR)/$(BUILD)/cache/matplotlib
export WANDB_DIR ?= $(CURDIR)/$(BUILD)/wandb
export WANDB_MODE ?= offline
export NUMBA_CACHE_DIR ?= $(CURDIR)/$(BUILD)/cache/numba

.PHONY: venv test test-fast lint demo bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# The distribution was called "asc" before it took a name of its own (asc-dcase2022): drop the old record.
	$(PY) -m pip uninstall --quiet --yes asc 2>/dev/null || true
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

lint: venv
	$(PY) -m ruff check asc tests benchmarks

test: venv
	mkdir -p $(MPLCONFIGDIR) $(WANDB_DIR)
	$(PY) -m ruff check asc tests benchmarks
	$(PY) -m pytest -q tests

# Every test but those marked slow (they train networks or write datasets); `make test` runs them all.
test-fast: venv
	mkdir -p $(MPLCONFIGDIR) $(WANDB_DIR)
	$(PY) -m pytest -q -m "not slow" tests

# make demo SEEDS="0 1 2": one pipeline per seed (build/demo/runs/seed<N>), then their spread (build/demo/spread.md).
demo: venv
	mkdir -p $(MPLCONFIGDIR) $(WANDB_DIR)
	$(VENV)/bin/asc synth $(DEMO_DATA) --size demo --workers $(WORKERS)
	$(VENV)/bin/asc cache $(DEMO_DATA) --workers $(WORKERS)
ifeq ($(strip $(SEEDS)),)
	$(VENV)/bin/asc pipeline --configs configs/builtin --data.root $(DEMO_DATA) --out $(DEMO_RUNS) --skip-done
else
	for seed in $(SEEDS); do $(VENV)/bin/asc pipeline --configs configs/builtin --data.root $(DEMO_DATA) \
		--out $(DEMO_RUNS)/seed$$seed --skip-done --seed_everything=$$seed || exit 1; done
	$(PY) -m benchmarks.spread $(foreach seed,$(SEEDS),$(DEMO_RUNS)/seed$(seed)) --out $(BUILD)/demo/spread.md
endif

# One table of every benchmark (benchmarks/run.py), also written to $(BUILD)/bench/bench.{json,md};
# BENCH_ARGS=--quick checks the machinery in a few minutes (its figures mean nothing).
bench: venv
	mkdir -p $(MPLCONFIGDIR) $(WANDB_DIR)
	$(PY) -m benchmarks.run --out $(BUILD)/bench --workers $(WORKERS) $(BENCH_ARGS)

clean:
	rm -rf $(BUILD)
