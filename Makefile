# Two commands for a newcomer: `make demo` and `make test`. Both install what they need first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test ui bench clean

install: $(STAMP)

$(STAMP): setup.py pyproject.toml
	@command -v java >/dev/null || { echo "Java 17 is required by Spark (apt-get install openjdk-17-jre-headless)"; exit 2; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: install
	$(BIN)/snds demo

test: install
	$(BIN)/python -m pytest

ui: install
	$(BIN)/snds ui

bench: install
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .snds
