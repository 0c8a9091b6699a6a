# Two commands for a newcomer: `make demo` and `make test`. Both install what they need first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install services demo test ui bench clean

# Debian's Chromium, which the browser test drives through Playwright (Playwright never downloads a browser here).
CHROMIUM := /usr/bin/chromium
# Services the production-shape tests start (snds_assets_tests/services.py): Azurite (Azure Blob emulator, npm,
# installed under .tools/) and PostgreSQL (Debian package, server binaries under /usr/lib/postgresql/<v>/bin).
# Missing pieces are installed with apt-get, which needs root (CI runs as root on Debian).
TOOLS := .tools
AZURITE := $(TOOLS)/node_modules/.bin/azurite-blob
AZURITE_VERSION := 3.35.0
APT_INSTALL := DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends

install: $(STAMP)

$(STAMP): setup.py pyproject.toml
	@{ test -x "$$JAVA_HOME/bin/java" || command -v java >/dev/null; } || { echo "Java 17 is required by Spark: set JAVA_HOME or put java on PATH (apt-get install openjdk-17-jre-headless)"; exit 2; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

services: $(AZURITE)
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  echo "installing PostgreSQL (Debian package postgresql)"; \
	  apt-get update -qq && $(APT_INSTALL) postgresql; } \
	  || { echo "PostgreSQL server is missing: apt-get install postgresql (as root)"; exit 2; }
	@test -x $(CHROMIUM) || { \
	  echo "installing Chromium (Debian package chromium) for the browser test"; \
	  apt-get update -qq && $(APT_INSTALL) chromium; } \
	  || { echo "Chromium is missing: apt-get install chromium (as root)"; exit 2; }

$(AZURITE):
	@command -v npm >/dev/null || { echo "installing Node.js and npm (Debian packages)"; \
	  apt-get update -qq && $(APT_INSTALL) nodejs npm; } \
	  || { echo "npm is missing: apt-get install nodejs npm (as root)"; exit 2; }
	npm install --prefix $(TOOLS) --no-audit --no-fund --loglevel=error azurite@$(AZURITE_VERSION)
	@test -x $@ && touch $@

demo: install
	$(BIN)/snds demo

test: install services
	$(BIN)/python -m pytest

ui: install
	$(BIN)/snds ui

bench: install
	$(BIN)/python bench/definitions_bench.py
	$(BIN)/python bench/generate_bench.py
	$(BIN)/python bench/ingest_bench.py
	$(BIN)/python bench/extract_bench.py
	$(BIN)/python bench/history_bench.py
	$(BIN)/python bench/orphans_bench.py

clean:
	rm -rf $(VENV) .snds $(TOOLS)
