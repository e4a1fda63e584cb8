# Two commands do all the set-up on a fresh machine with Python 3.11:
#   make demo   - create .venv, generate a demo world, run the whole chain on it
#   make test   - create .venv, run the whole test suite
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
WORKDIR ?= creditflow-work
STAMP  := $(VENV)/.installed

.PHONY: venv demo test lint bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH (set PYTHON=...)"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test,lint]'
	@touch $(STAMP)

demo: venv
	$(BIN)/creditflow demo --workdir $(WORKDIR)

test: venv
	$(BIN)/python -m pytest

lint: venv
	$(BIN)/ruff check .

bench: venv
	$(BIN)/python -m bench.ingest
	$(BIN)/python -m bench.features

clean:
	rm -rf $(VENV) $(WORKDIR) .pytest_cache
