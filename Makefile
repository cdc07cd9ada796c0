# The README's two set-up commands: `make demo` and `make test`. Both create .venv on a fresh machine.
#
# TORCH_SPEC pins the PyTorch build that set-up installs. The default is the CPU build used here; CUDA users
# override it, e.g.  make demo TORCH_SPEC="torch==2.13.0" TORCH_INDEX="--index-url https://download.pytorch.org/whl/cu126"
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
BUILD_DEPS := "scikit-build-core>=0.10" "nanobind>=2.0" ninja
STAMP := $(VENV)/.horq-installed
NATIVE_SOURCES := $(shell find csrc -type f) CMakeLists.txt pyproject.toml

.PHONY: demo test install clean

install: $(STAMP)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# torch is installed first and pinned, so nothing later can pull an unpinned (CUDA) build.
$(STAMP): $(VENV)/bin/python $(NATIVE_SOURCES)
	$(PY) -m pip install -q $(TORCH_INDEX) "$(TORCH_SPEC)"
	$(PY) -m pip install -q $(BUILD_DEPS)
	$(PY) -m pip install -q --no-build-isolation -e ".[train,test]" "$(TORCH_SPEC)"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/horq demo

test: $(STAMP)
	$(PY) -m pytest -q tests

clean:
	rm -rf $(VENV) build
