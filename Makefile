# Two commands do all the set-up: `make report` (the main job) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

DOCS_STAMP := $(VENV)/.installed-docs

.PHONY: setup report demo test lint docs

$(STAMP): pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -c constraints.txt -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

report: $(STAMP)
	$(VENV)/bin/dltricks report --quick

demo: $(STAMP)
	$(VENV)/bin/dltricks demo

$(DOCS_STAMP): $(STAMP)
	$(PY) -m pip install -c constraints.txt -e '.[docs]'
	touch $(DOCS_STAMP)

# The documentation site, into site/ (strict: a broken reference or a missing docstring fails).
docs: $(DOCS_STAMP)
	DISABLE_MKDOCS_2_WARNING=true NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy

test: lint
	$(PY) -m pytest -q -n 2
