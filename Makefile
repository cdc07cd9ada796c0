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

.PHONY: demo test install clean cross-tools

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

# Lint and type checks first (seconds), then the tests; configuration in pyproject.toml.
test: $(STAMP) cross-tools
	$(PY) -m ruff check src tests benchmarks experiments
	$(PY) -m mypy
	$(PY) -m pytest -q tests

# tests/kernels/test_portable_build.py cross-compiles the core for aarch64 and runs its C++ test under qemu, and runs
# the host's build on emulated older x86-64 CPUs (qemu-x86_64, from the same qemu-user package).
# Its two Debian packages are installed where we can (root with apt-get); anywhere else, or if the install
# fails, the tests skip and say which package is missing. Nothing to do when the tools are there.
CROSS_PACKAGES := g++-aarch64-linux-gnu qemu-user
APT_INSTALL := DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(CROSS_PACKAGES)
cross-tools:
	@if command -v aarch64-linux-gnu-g++ >/dev/null && \
	    { command -v qemu-aarch64 || command -v qemu-aarch64-static; } >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing $(CROSS_PACKAGES) for the aarch64 portable-build test"; \
	  { $(APT_INSTALL) >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && $(APT_INSTALL) >/dev/null 2>&1; }; } || \
	    echo "could not install $(CROSS_PACKAGES): the aarch64 portable-build test will skip"; \
	else \
	  echo "aarch64 cross tools absent (not root with apt-get): the aarch64 portable-build test will skip"; \
	fi

clean:
	rm -rf $(VENV) build
