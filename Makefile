# One set of targets for people and CI. Needs only Python 3.11+ on the PATH.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
READY  := $(VENV)/.ready
CODE   := engine broker agents flowbus
# flowbus/engine, flowbus/broker and flowbus/agents are links to the top-level folders, so the
# type checker (and any tool that maps module names to paths) sees flowbus.engine.x as
# engine/x.py: `mypy flowbus` checks all four packages and every import between them.
# Test files run in this many processes at once: most tests wait on daemons, leases and
# faults, not the CPU (on 2 cores, 3 workers finish the suite in about 0.85 of the time).
TEST_WORKERS ?= 3

.PHONY: demo test lint format bench clean

$(READY): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "flowbus needs Python 3.11 or newer (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,examples]'
	@touch $@

demo: $(READY)
	FLOWBUS_HOME=$${FLOWBUS_HOME:-$(CURDIR)/.demo} $(BIN)/python examples/demo_stack.py
	COLUMNS=$${COLUMNS:-120} FLOWBUS_HOME=$${FLOWBUS_HOME:-$(CURDIR)/.demo} $(BIN)/flowbus runs ls --flow etl-flow --limit 5

lint: $(READY)
	$(BIN)/ruff check $(CODE) tests bench examples
	$(BIN)/ruff format --check $(CODE) tests bench examples
	$(BIN)/mypy flowbus

format: $(READY)
	$(BIN)/ruff format $(CODE) tests bench examples
	$(BIN)/ruff check --fix $(CODE) tests bench examples

test: lint
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=10

bench: $(READY)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache out .demo
