# Two entry points on a fresh machine (each installs what it needs into .venv):
#   make demo   simulate data, train the default model (no CV), predict the test file, serve the web app
#               (make demo PORT=8010: another port; make demo DEMO_ARGS=--cv: cross-validate first)
#   make test   run the test suite
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO := runs/demo
PORT ?= 8000
DEMO_ARGS ?=

.PHONY: install install-test demo test bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e .

# install-test also installs Debian's chromium for the browser tests (tests/test_web_browser.py skips without it);
# never `playwright install` (no browser downloads).
install-test: install
	$(BIN)/pip install --quiet -e ".[test]"
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium) \
		|| echo "WARNING: could not install chromium; the browser test will be SKIPPED"

demo: install
	$(BIN)/moa demo --workdir $(DEMO) --port $(PORT) $(DEMO_ARGS)

test: install-test
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) runs
