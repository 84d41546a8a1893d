# The two commands: `make run` (set up everything and run the whole system) and
# `make test` (set up everything and run the whole test suite). Both are idempotent.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup run test test-fast bench lab lint clean broker-stop interop screenshots

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test]'
	@touch $(STAMP)

## setup: the virtual environment, the packages and the Kafka jars (once; cached after)
setup: $(STAMP)
	$(BIN)/sensorlib broker fetch

## run: the whole system — broker, topics, producer, processor, dashboard (Ctrl-C stops all)
run: setup
	$(BIN)/sensorlib up

## interop: kafkajs for the test that reads our topics like the reference's Node dashboard
interop:
	@if command -v npm >/dev/null 2>&1; then \
	  npm install --prefix tests/interop --no-audit --no-fund --silent; \
	else echo "npm not found: the Node.js interop test will be skipped"; fi

## test: the whole suite against a real broker the tests start themselves
test: setup interop
	$(BIN)/pytest

## test-fast: the pure unit tests only (no broker, no browser)
test-fast: setup
	$(BIN)/pytest tests/unit

## bench: every benchmark, one table (also written as JSON)
bench: setup
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test,bench]'
	$(BIN)/python benchmarks/run_all.py

## lab: JupyterLab on the notebooks (http://127.0.0.1:8888, local only); prints the URL with its token
lab: setup
	$(BIN)/jupyter lab --ip=127.0.0.1 --port=$${SENSORLIB_JUPYTER_PORT:-8888} --no-browser \
		$$(test "$$(id -u)" = 0 && echo --allow-root) notebooks/

## screenshots: report + every notebook over a week of history → build/screenshots/*.png and notebooks/img/report.png
screenshots: setup
	$(BIN)/python notebooks/tools/screenshots.py

lint: setup
	$(BIN)/ruff check sensorlib tests benchmarks dashboards notebooks/tools

broker-stop:
	-$(BIN)/sensorlib broker stop

clean: broker-stop
	rm -rf $(VENV) build *.egg-info .pytest_cache
