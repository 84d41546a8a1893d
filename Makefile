# The two commands: `make run` (set up everything and run the whole system) and
# `make test` (set up everything and run the whole test suite). Both are idempotent.
#
# PYTHON picks the interpreter (`make PYTHON=/usr/bin/python3 test`), VENV the folder of the
# virtual environment. A .venv made by another Python than $(PYTHON), or one whose install
# never finished, is rebuilt from scratch; pip's own output is in $(VENV)/pip.log and its
# end is shown when it fails.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# extra arguments for `python -m venv` (e.g. --system-site-packages)
VENV_ARGS ?=
# (in variables: a comma inside $(call ...) would split its arguments). spark: pyspark (~490 MB,
# ~40 s to install) so the slow tier's Spark test (tests/integration/test_spark_archive.py) runs:
# installed by `make test` and `make bench` only (`make run` and `make test-fast` do without).
SETUP_EXTRAS := '.[test,ml]'
TEST_EXTRAS  := '.[test,ml,spark]'
BENCH_EXTRAS := '.[test,bench,ml,spark]'

.PHONY: setup venv check-python run test test-fast test-core bench lab lint clean broker-stop interop \
	screenshots FORCE

# Which Python this is: its installation and version (a venv answers for the Python that made it).
WHICH_PY := import sys; print("Python", sys.version.split()[0], "in", sys.base_prefix)

# Is $(PYTHON) new enough for requires-python in pyproject.toml, and can it make a venv?
define CHECK_PYTHON
import re, sys
have = sys.version_info[:3]
shown = ".".join(map(str, have))
text = open("pyproject.toml", encoding="utf-8").read()
found = re.search(r'^requires-python\s*=\s*"([^"]*)"', text, re.M)
spec = found.group(1) if found else ""
def num(v):
    parts = [int(p) for p in v.split(".")[:3]]
    return tuple(parts + [0] * (3 - len(parts)))
tests = {">=": lambda a, b: a >= b, ">": lambda a, b: a > b, "<=": lambda a, b: a <= b,
         "<": lambda a, b: a < b, "==": lambda a, b: a == b, "!=": lambda a, b: a != b,
         "~=": lambda a, b: a >= b}
ok = True
for clause in filter(None, (c.strip() for c in spec.split(","))):
    m = re.fullmatch(r"(>=|<=|==|!=|~=|>|<)\s*(\d+(?:\.\d+)*)", clause)
    if m and not tests[m.group(1)](have, num(m.group(2))):
        ok = False
if not ok:
    sys.exit(f"make: sensorlib needs Python {spec} (requires-python in pyproject.toml), but "
             f"PYTHON={sys.argv[1]} is Python {shown} ({sys.executable}).\n"
             f"  Fix: install a Python {spec} (python.org, your distribution, pyenv or uv) and "
             f"run `make PYTHON=/path/to/that/python3 ...`.")
try:
    import ensurepip, venv
except ImportError:
    sys.exit(f"make: PYTHON={sys.argv[1]} (Python {shown}) cannot create virtual environments "
             f"(no venv/ensurepip module).\n"
             f"  Fix on Debian/Ubuntu: sudo apt-get install python3-venv "
             f"(or python{have[0]}.{have[1]}-venv), then run make again.")
endef
export CHECK_PYTHON
export WHICH_PY

# A venv made by $(PYTHON), rebuilt when another Python made it, when it no longer runs, or
# when its install never finished (no stamp).
define MAKE_VENV
command -v $(PYTHON) >/dev/null 2>&1 || { \
  echo "make: PYTHON=$(PYTHON) not found. Fix: install Python 3.11+ or run \`make PYTHON=/path/to/python3 ...\`" >&2; \
  exit 1; }; \
$(PYTHON) -c "$$CHECK_PYTHON" "$(PYTHON)" || exit 1; \
want="$$($(PYTHON) -c "$$WHICH_PY")"; \
if [ -e $(VENV) ]; then \
  have="$$($(BIN)/python -c "$$WHICH_PY" 2>/dev/null || true)"; \
  why=""; \
  if [ -z "$$have" ]; then why="its Python no longer runs"; \
  elif [ "$$have" != "$$want" ]; then why="it was made by $$have, not PYTHON=$(PYTHON) ($$want)"; \
  elif [ ! -f $(STAMP) ]; then why="its last install did not finish"; fi; \
  if [ -n "$$why" ]; then echo "make: rebuilding $(VENV): $$why"; rm -rf $(VENV); fi; \
fi; \
if [ ! -e $(VENV) ]; then \
  echo "make: creating $(VENV) with $(PYTHON) ($$want)"; \
  $(PYTHON) -m venv $(VENV_ARGS) $(VENV) || exit 1; \
fi
endef

# pip install into the venv, its output in $(VENV)/pip.log; on failure the log's end is shown.
define PIP_INSTALL
echo "make: pip install $(1) into $(VENV) (log: $(VENV)/pip.log) ..."; \
$(BIN)/python -m pip install --progress-bar off $(1) >>$(VENV)/pip.log 2>&1 || { \
  echo "make: pip install failed; the end of $(VENV)/pip.log (progress lines left out):" >&2; \
  grep -Ev '^(INFO: pip is looking at|Collecting |Requirement already satisfied|Obtaining )|^  (Downloading|Using cached|Obtaining|Preparing|Installing|Getting|Checking) ' \
    $(VENV)/pip.log | tail -n 40 >&2; \
  exit 1; }
endef

# Force the install when the venv does not match $(PYTHON) (checked again, and fixed, inside).
VENV_STATE := $(shell test -f $(STAMP) && test "$$($(BIN)/python -c '$(WHICH_PY)' 2>/dev/null)" = "$$($(PYTHON) -c '$(WHICH_PY)' 2>/dev/null)" && echo ok)
ifneq ($(VENV_STATE),ok)
$(STAMP): FORCE
endif
FORCE:

$(STAMP): pyproject.toml constraints.txt
	@$(MAKE_VENV)
	@: >$(VENV)/pip.log
	@$(call PIP_INSTALL,--upgrade pip)
	@$(call PIP_INSTALL,-c constraints.txt -e $(SETUP_EXTRAS))
	@touch $(STAMP)

## check-python: is $(PYTHON) one sensorlib supports (requires-python) and able to make a venv?
check-python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "make: PYTHON=$(PYTHON) not found" >&2; exit 1; }
	@$(PYTHON) -c "$$CHECK_PYTHON" "$(PYTHON)"
	@echo "make: PYTHON=$(PYTHON) is Python $$($(PYTHON) -c 'import platform; print(platform.python_version())'): fine for sensorlib"

## venv: only the virtual environment (made, or rebuilt, for $(PYTHON)); no packages
venv:
	@$(MAKE_VENV)

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

## test: the whole suite against a real broker the tests start themselves, on
## $(TEST_WORKERS) workers (pytest-xdist; each worker has its own broker and browser, a test
## file stays on one worker); TEST_WORKERS=0 runs it in one process
TEST_WORKERS ?= 3
test: setup interop
	@$(call PIP_INSTALL,-c constraints.txt -e $(TEST_EXTRAS))
	$(BIN)/pytest --durations=25 $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

## test-fast: the pure unit tests only (no broker, no browser, no Kafka jars needed)
test-fast: $(STAMP)
	$(BIN)/pytest -m unit tests/unit

## test-core: the middle tier: unit + the real-broker and HTTP tests, no browser, nothing slow
test-core: setup
	$(BIN)/pytest -m "not slow and not browser" $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

## bench: every benchmark, one table (also written as JSON)
bench: setup
	@$(call PIP_INSTALL,-c constraints.txt -e $(BENCH_EXTRAS))
	$(BIN)/python benchmarks/run_all.py

## lab: JupyterLab on the notebooks (http://127.0.0.1:8888, local only); prints the URL with its token
lab: setup
	ARROW_DEFAULT_MEMORY_POOL=$${ARROW_DEFAULT_MEMORY_POOL:-system} $(BIN)/jupyter lab --ip=127.0.0.1 --port=$${SENSORLIB_JUPYTER_PORT:-8888} --no-browser \
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
