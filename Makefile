# Two entry points: `make demo` and `make test`. Both bootstrap .venv from scratch on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.microexp-installed

.PHONY: demo test lint bench clean venv browser

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# CPU torch first: here the 2.13.0 CPU wheel lies on disk; elsewhere fall back to PyTorch's CPU index
	$(PY) -m pip install -q torch==2.13.0 || $(PY) -m pip install -q torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/microexp demo

# Debian's chromium for the browser tests (playwright drives it): installed with apt-get when missing. Where apt-get
# is unavailable or fails, make test goes on and the browser tests skip, saying chromium is not installed.
browser:
	@if command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; then :; \
	elif command -v apt-get >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get update -qq \
	     && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; then :; \
	else echo "chromium is not installed and apt-get could not install it: the browser tests will skip"; fi

test: $(STAMP) browser
	$(VENV)/bin/ruff check src tests
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests

bench: $(STAMP)
	$(VENV)/bin/microexp bench --json bench.json

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
