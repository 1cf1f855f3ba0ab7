# Two commands from a fresh clone: `make demo` and `make test`. Each makes .venv when missing, installs the CPU
# build of torch (pinned) and then smolalign exactly as the README says. For a CUDA build of torch, follow the
# README's manual steps instead (or: make install TORCH_INDEX=https://download.pytorch.org/whl/cu128).
VENV ?= .venv
PYTHON ?= python3
TORCH ?= torch==2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
PY := $(VENV)/bin/python

.PHONY: install test demo clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install $(TORCH) --index-url $(TORCH_INDEX)
	$(PY) -m pip install -e ".[dev]"
	touch $@

install: $(VENV)/.installed

test: install
	$(PY) -m pytest -q

demo: install
	$(VENV)/bin/smolalign demo

clean:
	rm -rf $(VENV) runs demo
