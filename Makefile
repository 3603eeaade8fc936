# Targets the README uses. `make test` and `make demo` set themselves up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: test lint demo bench docs clean venv

$(BIN)/incident: pyproject.toml
	@echo "Setting up $(VENV): a virtualenv with incident and its test tools (first run only: 15-30 s, longer on a slow network) ..."
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(BIN)/incident
	@echo "$(VENV) is ready."

venv: $(BIN)/incident

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict incident_cli
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest -q

demo: venv
	$(BIN)/python examples/demo.py

bench: venv
	$(BIN)/python bench/run.py

# docs/commands.md's reference, from every command's --help (a test checks it is current).
docs: venv
	$(BIN)/python scripts/commands_doc.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
