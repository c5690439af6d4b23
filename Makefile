# The two commands of the README: `make demo` and `make test`. Both create or reuse .venv.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint eval clean

$(STAMP): pyproject.toml
	@bash scripts/bootstrap.sh "$(PYTHON)"

# `make demo DEMO_ARGS=--keep` keeps the stack running after the conversation, until Ctrl-C.
demo: $(STAMP)
	@$(BIN)/python scripts/demo.py $(DEMO_ARGS)

# Both tiers (what CI runs); `make test-fast` is the unit tier alone (no worker processes).
test: $(STAMP)
	bash scripts/test.sh

test-fast: $(STAMP)
	bash scripts/test.sh tests/unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy .

clean:
	rm -rf var build *.egg-info

eval: $(STAMP)
	$(BIN)/python -m tests.eval.run
