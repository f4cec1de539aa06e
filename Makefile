# Two commands do all set-up on a fresh machine (Python 3.11 and make are all it needs):
#   make repro   create .venv if missing, install, run the pipeline (`dvc repro`)
#   make test    create .venv if missing, install, run the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
export OMP_NUM_THREADS ?= 1
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: install repro test smoke lock

install: $(VENV)/.installed

# torch goes first, pinned, so nothing pulls a different (CUDA) build; then the exact lock.
$(VENV)/.installed: pyproject.toml requirements.lock
	test -x $(PY) || python3.11 -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

repro: install
	dvc repro

test: install
	HF_HUB_OFFLINE=1 $(PY) -m pytest

# The whole DAG on tiny params in a throw-away clone of HEAD: report, no-op re-run, dvc push/pull.
smoke: install
	HF_HUB_OFFLINE=1 $(PY) -m pipeline.smoke

# Re-pin requirements.lock from the current venv (after changing pyproject.toml dependencies).
lock:
	$(PY) -m pip freeze --exclude-editable | grep -v -E '^(torch|maq-hub)==' > requirements.lock
