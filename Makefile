# Every target installs what it needs into .venv first.
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed
export OMP_NUM_THREADS ?= 1

.PHONY: install sysdeps test fsdd clean-venv

$(STAMP): setup.py
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q "pip==23.2.1"  # newer pip rejects ci_sdr (an espnet dependency) metadata
	$(VENV)/bin/python -m pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

# espeak-ng (Debian's package) voices the synthetic-speaker tests; installed when missing.
sysdeps:
	@command -v espeak-ng >/dev/null || { echo "installing espeak-ng (apt-get)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq espeak-ng >/dev/null; }

test: $(STAMP) sysdeps
	$(VENV)/bin/python -m pytest -q test

# The main job: FSDD digits recipe end to end on CPU, then print the results table.
fsdd: $(STAMP)
	cd egs/fsdd/asr1 && ./run.sh $(ARGS)
	cat egs/fsdd/asr1/RESULTS.md

clean-venv:
	rm -rf $(VENV)
