# `make run` sets up, indexes the packaged seed documents and answers an example question.
# `make test` sets up, then runs lint (ruff), type checks (mypy) and the test suite (pytest).
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
QUESTION ?= How many U.S. military personnel are forward deployed in the region?
export HF_HUB_OFFLINE := 1

.PHONY: install run test lint browser bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/verbatim index
	$(BIN)/verbatim ask "$(QUESTION)"
	$(BIN)/verbatim serve --host 127.0.0.1 --port 8000

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

# The browser test drives Debian's Chromium with Playwright (no browser download).
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

test: lint browser
	$(BIN)/pytest -q

bench: install
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.http_load

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
