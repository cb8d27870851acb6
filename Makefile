# Two commands from a fresh clone:  `make run` (the main job)  and  `make test` (the whole suite).
VENV        ?= .venv
PYTHON      ?= python3
CONSTRAINTS ?= constraints.txt
# e.g. --system-site-packages: the venv sees a GPU machine's own torch (README "GPU machines")
VENV_ARGS   ?=
PROFILE     ?= auto
# A command prefix for work that may wait (`make test` sets nice -n 15 for lint and the unit tests)
BACKGROUND  ?=
BIN          = $(VENV)/bin
# A folder of wheels pip also looks in (--find-links) when it exists, e.g. the CPU torch wheel, or
# every wheel on an offline machine (README "GPU machines"); without it pip uses PyPI alone.
WHEELS_DIR  ?= /opt/wheels
STAMP        = $(VENV)/.installed

export HF_HUB_OFFLINE = 1
export TOKENIZERS_PARALLELISM = false
export PREFECT_SERVER_ANALYTICS_ENABLED = false

.PHONY: install run pipeline test test-unit test-integration test-fast lint format up down bench clean

install: $(STAMP)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV_ARGS) $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install $(if $(wildcard $(WHEELS_DIR)),--find-links $(WHEELS_DIR)) \
		$(if $(CONSTRAINTS),-c $(CONSTRAINTS)) -e '.[dev,k8s,postgres]'
	touch $@

## The main job: the train-and-evaluate flow on the embedded default
## (ephemeral Prefect API, sqlite MLflow under data/, bundled base model, CPU-sized profile without a GPU).
run: install
	$(BIN)/python -m flows.train_and_evaluate --profile $(PROFILE)

## The same pipeline without Prefect (scripts, debugging).
pipeline: install
	$(BIN)/recipe-embed run --profile $(PROFILE)

## Lint, type-check, and every test: unit, data contracts, integration (real servers), gpu (skipped without CUDA).
## Two pytest processes side by side: the integration tests mostly wait on servers and deployment runs,
## the unit and data tests mostly compute, so the unit tests (and lint) run at a lower CPU priority and with
## one math thread (OMP_NUM_THREADS=1: two processes of two-thread torch on 2 cores slowed both) in the
## integration tests' idle time, and the whole takes about as long as the integration tests alone.
## Output comes line by line, each line whole; each process ends with its own summary.
test: install
	$(MAKE) --no-print-directory -j3 -Oline lint test-integration test-unit BACKGROUND="nice -n 15 env OMP_NUM_THREADS=1"

test-unit: install
	$(BACKGROUND) $(BIN)/python -m pytest tests/unit tests/data tests/gpu $(PYTEST_ARGS)

test-integration: install
	$(BIN)/python -m pytest tests/integration $(PYTEST_ARGS)

## Unit and data tests, without the ones that train a model (slow) or start servers (integration).
test-fast: install
	$(BIN)/python -m pytest tests/unit tests/data -m "not integration and not slow" $(PYTEST_ARGS)

lint: install
	$(BACKGROUND) $(BIN)/ruff check .
	$(BACKGROUND) $(BIN)/ruff format --check .
	$(BACKGROUND) $(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

up: install
	bash infra/up.sh

down:
	bash infra/down.sh

bench: install
	$(BIN)/python bench/synth_bench.py
	$(BIN)/python bench/eval_speed.py
	$(BIN)/python bench/train_throughput.py
	$(BIN)/python bench/input_pipeline.py
	$(BIN)/python bench/length_buckets.py
	$(BIN)/python bench/search_bench.py

clean:
	rm -rf data .pytest_cache .mypy_cache .ruff_cache
