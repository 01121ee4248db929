# deepfake_exp — every target installs the virtual environment first, so on a fresh clone
# `make train` and `make test` are the only two commands you need.
SHELL := /bin/bash
PYTHON_SYS ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.install.stamp
ARGS ?=
EXPERIMENT ?= synthetic_cpu

.DEFAULT_GOAL := help
.PHONY: help install train evaluate preprocess test test-e2e test-fast test-slurm lint format tensorboard bench report analyze gpu-check gpu-wheels clean clean-all

help: ## Show this help
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON_SYS) >/dev/null || { echo "error: $(PYTHON_SYS) not found (set PYTHON_SYS=/path/to/python3.11)"; exit 1; }
	$(PYTHON_SYS) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --progress-bar off -c constraints.txt -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP) ## Create .venv and install the package with dev tools (runs once)

train: $(STAMP) ## Synthetic data -> preprocess -> train -> evaluate (EXPERIMENT=..., ARGS="key=value ...")
	$(PY) -m deepfake_exp.preprocess experiment=$(EXPERIMENT) $(ARGS)
	$(PY) -m deepfake_exp.train experiment=$(EXPERIMENT) $(ARGS)

preprocess: $(STAMP) ## Extract faces for a dataset (ARGS="dataset=dfdc dataset.root=...")
	$(PY) -m deepfake_exp.preprocess $(ARGS)

evaluate: $(STAMP) ## Evaluate a run (ARGS="run_dir=outputs/train/runs/...")
	$(PY) -m deepfake_exp.evaluate $(ARGS)

test: $(STAMP) ## Run the test suite on CPU (all but the multi-run e2e pipelines: make test-e2e)
	$(PY) -m pytest -m "not e2e" $(ARGS)

test-e2e: $(STAMP) ## The multi-run end-to-end pipelines (protocol report sets, GPU-check smoke on CPU)
	$(PY) -m pytest -m e2e $(ARGS)

test-fast: $(STAMP) ## Run tests without the slow end-to-end ones
	$(PY) -m pytest -m "not slow" $(ARGS)

lint: $(STAMP) ## ruff check + format check
	$(VENV)/bin/ruff check deepfake_exp tests
	$(VENV)/bin/ruff format --check deepfake_exp tests

format: $(STAMP) ## Apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix deepfake_exp tests
	$(VENV)/bin/ruff format deepfake_exp tests

tensorboard: $(STAMP) ## Open TensorBoard over every run in outputs/
	$(VENV)/bin/tensorboard --logdir outputs --bind_all

analyze: $(STAMP) ## Embeddings -> PCA -> t-SNE -> HDBSCAN clusters + bias table (ARGS="ckpt_path=...")
	$(PY) -m deepfake_exp.analyze $(ARGS)

report: $(STAMP) ## Run (or collect) the report experiments -> outputs/report/report.md + .csv
	$(PY) -m deepfake_exp.report $(ARGS)

bench: $(STAMP) ## Benchmarks: ratios measured side by side, printed and saved under outputs/bench
	$(PY) -m deepfake_exp.bench $(ARGS)

gpu-check: ## On a CUDA node (its own Python/torch, offline): GPU figures -> outputs/gpu_check (ARGS passed on)
	bash scripts/gpu_check.sh $(ARGS)

gpu-wheels: ## On a machine with network: wheels an offline GPU node needs -> gpu_wheels/ (PY_VERSION=3.12)
	bash scripts/gpu_wheels.sh $(ARGS)

test-slurm: $(STAMP) ## Start a one-node SLURM cluster on localhost (root) and run the SLURM tests
	bash scripts/slurm_localhost.sh
	$(PY) -m pytest -m slurm $(ARGS)

clean: ## Remove outputs/ and caches (keeps .venv and data/)
	rm -rf outputs .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

clean-all: clean ## Also remove .venv and generated data/
	rm -rf $(VENV) data
