# Two commands for a newcomer: `make serve` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip -q --disable-pip-version-check

.PHONY: serve test install install-dev protos lint bench llm-local clean help

help:  ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

$(VENV)/.serve-installed: pyproject.toml | $(BIN)/python
	$(PIP) install -e .
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[train,plots,dev]'
	touch $(VENV)/.serve-installed $@

install: $(VENV)/.serve-installed  ## Create .venv with what serving needs.

install-dev: $(VENV)/.dev-installed  ## Create .venv with training, test and lint tools too.

serve: install  ## Run the gateway on 127.0.0.1:50051 with the bundled model.
	$(BIN)/leadgw serve

test: install-dev  ## Run the whole test suite.
	$(BIN)/python -m pytest -q

protos: install-dev  ## Regenerate leadgw_client/pb from protos/.
	$(BIN)/python -m gateway.protogen

lint: install-dev  ## ruff and mypy.
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy gateway runtimes retrieval benchmarks leadgw_client

bench: install-dev  ## leadgw, both floors and MLServer side by side; report in bench-results/.
	-bash benchmarks/mlserver/setup.sh $(PYTHON)
	$(BIN)/leadgw bench --targets scoreleads,modelinfer,onnx-floor,transport-floor,mlserver --mode closed,sweep $(BENCH_ARGS)

llm-local:  ## Serve SmolLM2-135M (or LLM_LOCAL_MODEL=gemma3-270m) on 127.0.0.1:8080 with llama.cpp (.venv-llm; compiles once).
	scripts/llm-local.sh

clean:  ## Remove .venv and caches (not the data directory).
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
