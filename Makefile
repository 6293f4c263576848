# saelab: `make demo` and `make test` work on a fresh machine with no GPU and no hub access.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch lies on these machines' local disk; set TORCH_SPEC to choose
# another build (e.g. a CUDA one), or VENV_FLAGS=--system-site-packages to reuse yours.
DEFAULT_TORCH := torch==2.13.0
VENV_FLAGS ?=
PYTEST_FLAGS ?=

.PHONY: install lint format demo test test-slow bench clean-venv

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV_FLAGS) $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@if [ -n "$(TORCH_SPEC)" ]; then \
		echo "installing $(TORCH_SPEC)"; $(PY) -m pip install -q "$(TORCH_SPEC)"; \
	elif $(PY) -c "import torch" 2>/dev/null; then \
		echo "torch already importable: $$($(PY) -c 'import torch; print(torch.__version__)')"; \
	else \
		echo "installing $(DEFAULT_TORCH)"; $(PY) -m pip install -q "$(DEFAULT_TORCH)"; \
	fi
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/saelab demo

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.installed
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: lint
	$(PY) -m pytest -q $(PYTEST_FLAGS)

test-slow: $(VENV)/.installed
	$(PY) -m pytest -q -m slow --durations=15 $(PYTEST_FLAGS)

bench: $(VENV)/.installed
	$(VENV)/bin/saelab bench all
	$(VENV)/bin/saelab bench report --readme > docs/results.md

clean-venv:
	rm -rf $(VENV)
