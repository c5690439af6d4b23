# The two commands of the README: `make demo` and `make test`. Both create or reuse .venv.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint eval clean

$(STAMP): pyproject.toml
	@bash scripts/bootstrap.sh "$(PYTHON)"

# `make demo DEMO_ARGS=--keep` keeps the stack running after the conversation, until Ctrl-C.
demo: $(STAMP)
	@$(BIN)/python scripts/demo.py $(DEMO_ARGS)

test: $(STAMP)
	bash scripts/test.sh

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy .

clean:
	rm -rf var build *.egg-info

eval: $(STAMP)
	$(BIN)/python -m tests.eval.run
