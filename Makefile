# The two commands of the README: `make demo` and `make test`. Both create or reuse .venv.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint eval clean

$(STAMP): pyproject.toml
	@bash scripts/bootstrap.sh "$(PYTHON)"

# `make demo ARGS=--serve` (or DEMO_ARGS=--serve) keeps the stack running after the conversations and
# prints the dashboard's URL and a login, until Ctrl-C.
demo: $(STAMP)
	@$(BIN)/python scripts/demo.py $(DEMO_ARGS) $(ARGS)

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
