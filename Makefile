# make demo : create .venv, install, meta-train Oja's rule on built-in data
# make test : create .venv if needed, install, run the fast test suite
# make test-tier2 : tests that spawn processes or check whole presets (CI runs both tiers;
#                   it installs Brian2 into .venv-brian2 for the export's tests)
# make test-slow : the full reproduction tests (minutes)
# make test-oldest : the fast suite in .venv-oldest, the oldest versions pyproject.toml allows
# make test-mujoco : installs the optional MuJoCo Playground and tests the mujoco task
# make docs-check : rerun the commands behind the numbers in README and docs, and compare
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-tier2 test-slow test-oldest test-mujoco docs-check lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/metaplastic run oja

# two workers (compilation is single-threaded; they share the persistent compile cache)
XDIST := -n auto --dist loadscope

# the suite compiles its programs cheaply (tests/conftest.py); the tests that compare the
# bits of differently compiled programs run in a second call, at XLA's default options
FAST := not slow and not tier2 and not mujoco
test: $(STAMP)
	$(PY) -m pytest -q -m "$(FAST) and not xla_defaults" $(XDIST) --durations=15
	METAPLASTIC_TEST_XLA_OPT=default $(PY) -m pytest -q -m "$(FAST) and xla_defaults" $(XDIST)

# Brian2 for the export's tests, in an environment of its own: Brian2 2.9, the last
# release for Python 3.11, fails to import with NumPy >= 2.4, which .venv may have
BRIAN2_VENV ?= .venv-brian2
BRIAN2_STAMP := $(BRIAN2_VENV)/.installed
$(BRIAN2_STAMP):
	$(PYTHON) -m venv $(BRIAN2_VENV)
	$(BRIAN2_VENV)/bin/python -m pip install --quiet "brian2>=2.7" "numpy<2.4"
	touch $(BRIAN2_STAMP)

TIER2 := tier2 and not mujoco
WITH_BRIAN2 := METAPLASTIC_BRIAN2_PYTHON=$(abspath $(BRIAN2_VENV))/bin/python
test-tier2: $(STAMP) $(BRIAN2_STAMP)
	$(WITH_BRIAN2) $(PY) -m pytest -q -m "$(TIER2) and not xla_defaults" $(XDIST) --durations=10
	$(WITH_BRIAN2) METAPLASTIC_TEST_XLA_OPT=default $(PY) -m pytest -q -m "$(TIER2) and xla_defaults" $(XDIST)

test-slow: $(STAMP)
	METAPLASTIC_TEST_XLA_OPT=default $(PY) -m pytest -q -m slow

# every direct dependency at the lowest version its bound allows (uv's lowest-direct
# resolution; their own dependencies as new as fits): the declared bounds, tested
OLDEST ?= .venv-oldest
test-oldest: $(STAMP)
	$(PY) -m pip install --quiet "uv>=0.5"
	$(VENV)/bin/uv venv $(OLDEST) --python $(PYTHON) --quiet --allow-existing
	VIRTUAL_ENV=$(OLDEST) $(VENV)/bin/uv pip install --quiet --resolution lowest-direct -e ".[dev]"
	$(OLDEST)/bin/python -m metaplastic.cli --version
	$(OLDEST)/bin/python -m pytest -q -m "$(FAST) and not xla_defaults" $(XDIST)
	METAPLASTIC_TEST_XLA_OPT=default $(OLDEST)/bin/python -m pytest -q -m "$(FAST) and xla_defaults" $(XDIST)

# the optional mujoco task family: installs MuJoCo Playground (~500 MB) and runs its tests
test-mujoco: $(STAMP)
	$(PY) -m pip install --quiet -e ".[dev,mujoco]"
	$(PY) -m pytest -q -m mujoco

docs-check: $(STAMP)
	$(PY) tools/docs_check.py

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks examples tools

bench: $(STAMP)
	$(PY) benchmarks/bench_oja.py --cli
	$(PY) benchmarks/bench_bandwidth.py
	$(PY) benchmarks/bench_hml_cartpole.py --with-termination
	$(PY) benchmarks/bench_mlpp.py

clean:
	rm -rf $(VENV) $(OLDEST) runs .pytest_cache
