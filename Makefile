# mnist-dataflow-kit — every target bootstraps what it needs; `make help` lists them.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
MNISTKIT := $(VENV)/bin/mnistkit
# Re-install only when the dependency list changes, so `make demo`/`make test` stay fast on re-runs.
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
SHARED ?= $(abspath ../shared)
# Where torch==2.13.0+cpu lives when the configured index lacks it (PyPI has no +cpu wheels).
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
WORK ?= work

.PHONY: help setup demo test test-fast browser lint format clean

help: ## Show this help
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[cpu,test,torch]' || { \
	  echo "PyTorch's CPU wheel is not on this package index; retrying with $(TORCH_CPU_INDEX)"; \
	  $(PY) -m pip install -q -e '.[cpu,test,torch]' --extra-index-url $(TORCH_CPU_INDEX); }
	@rm -f $(VENV)/.installed-*; touch $@

setup: $(STAMP) ## Create .venv and install the kit for CPUs with its test extras (idempotent)

# The demo uses ../shared's MNIST sample when it is there (CI, offline machines); elsewhere the
# kit downloads MNIST once into ~/.cache/mnistkit.
DEMO_DATA ?= $(firstword $(wildcard $(SHARED)/datasets/mnist-sample))
DEMO_EPOCHS ?= 5
DEMO := $(WORK)/demo
demo_data_flag = $(if $(DEMO_DATA),--data-dir $(DEMO_DATA))

demo: $(STAMP) ## Train a small model, export it, predict a test set locally, report accuracy
	rm -rf $(DEMO)
	$(MNISTKIT) train $(demo_data_flag) --epochs $(DEMO_EPOCHS) --output-dir $(DEMO)/train --export-dir $(DEMO)/models
	$(MNISTKIT) convert $(demo_data_flag) --dataset mnist --split test --output $(DEMO)/data/test.txt.gz
	$(MNISTKIT) predict --model $(DEMO)/models --input $(DEMO)/data/test.txt.gz --output $(DEMO)/predictions/test
	$(MNISTKIT) evaluate --predictions '$(DEMO)/predictions/test-[0-9]*.jsonl' $(demo_data_flag) --output-dir $(DEMO)/report
	@echo "Demo outputs in $(DEMO)/: train/ models/ data/ predictions/ report/"

# The serving page is tested in a real headless browser: Debian's chromium and its driver.
browser: ## Install chromium and chromedriver (Debian packages) when missing
	@command -v chromedriver >/dev/null && command -v chromium >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; }

# With CI=true (as .ci/run sets it) a test that would skip for a missing tool or ../shared fails.
test: $(STAMP) tools browser ## Run the whole offline test suite (emulators, terraform, checkov, browser included)
	CI=$(CI) MNISTKIT_SHARED=$(SHARED) $(PY) -m pytest

test-fast: $(STAMP) ## The unit tests only (no training, pipelines, emulators or terraform): the inner loop
	MNISTKIT_SHARED=$(SHARED) $(PY) -m pytest -m "not slow" -q

lint: $(STAMP) tf-lint ## ruff on the Python code
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP) ## Apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# A benchmark, not a CI step: ~15 min on 2 shared cores for a 50-per-module sample (docs/RELIABILITY.md).
MUTATION_ARGS ?= --sample 50
.PHONY: mutation
mutation: $(STAMP) ## Mutation score of the parsing/files/rows/accounting/model modules (mutmut; MUTATION_ARGS=--sample N)
	$(PY) -m pip install -q -e '.[mutation]'
	MNISTKIT_SHARED=$(SHARED) $(PY) benchmarks/mutation.py $(MUTATION_ARGS)

clean: ## Remove build and run outputs (keeps the venvs)
	rm -rf $(WORK) build dist *.egg-info .pytest_cache .ruff_cache

include infra/terraform.mk
