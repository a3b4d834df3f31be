# Two commands: `make run` (set up, open the app on the demo) and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
DEMO_WS ?= .tltui-demo

.PHONY: install run lint test test-fast bench docs clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/tltui --workspace $(DEMO_WS) demo

# ruff (rules and format), the import contracts of pyproject.toml [tool.importlinter], and mypy
lint: $(STAMP)
	$(VENV)/bin/ruff check tltui tests bench
	$(VENV)/bin/ruff format --check tltui tests bench
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

test: lint
	$(PY) -m pytest -q -n 3 --dist loadgroup

test-fast: $(STAMP)
	$(PY) -m pytest -q -n 3 --dist loadgroup -m "not e2e"

bench: $(STAMP)
	$(PY) -m bench

# the preset and settings reference (docs/reference/) from the pydantic models
docs: $(STAMP)
	$(PY) -m tltui.core.reference

clean:
	rm -rf $(VENV) $(DEMO_WS) .pytest_cache
