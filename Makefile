# PersonaLive-Swift — set-up, build, test and demo. `make demo` and `make test` work on a fresh
# Debian 12 machine: they install what is missing first (see `deps`).
#
#   LIBTORCH=/path/to/torch   build against another LibTorch (a PyTorch wheel's torch/ folder or a
#                             CUDA libtorch); unset = Debian's libtorch-dev. TORCH_CUDA=1 links CUDA.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

APT_PACKAGES := libtorch-dev libhdf5-dev libavcodec-dev libavformat-dev libswscale-dev pkg-config \
                libopenblas0-pthread ffmpeg
VENV := .venv
PYTHON := $(CURDIR)/$(VENV)/bin/python
PY_PACKAGES := torch==2.13.0+cpu safetensors h5py numpy
# Each LibTorch gets its own build folder, so switching LIBTORCH never mixes objects.
BUILD_DIR := $(if $(LIBTORCH),.build-libtorch-$(shell echo '$(LIBTORCH)' | md5sum | cut -c1-8),.build)
SWIFT_FLAGS := --scratch-path $(BUILD_DIR)
BIN := $(BUILD_DIR)/release/personalive
FIXTURES ?= $(abspath ../shared/fixtures)

export PERSONALIVE_PYTHON := $(PYTHON)
export PERSONALIVE_FIXTURES := $(FIXTURES)

.PHONY: deps system-deps venv build build-debug test demo bench clean

deps: system-deps venv

# Debian packages: installed when missing (as root), otherwise the exact command is printed.
system-deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else \
	    echo "missing Debian packages; run:"; echo "  sudo apt-get install -y$$missing"; exit 1; \
	  fi; \
	fi

# Project-local Python used by tests for interop checks (h5py, safetensors, torch CPU wheel).
venv: $(VENV)/.ready
$(VENV)/.ready:
	python3 -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check $(PY_PACKAGES)
	touch $@

build: deps
	swift build $(SWIFT_FLAGS) -c release --product personalive

build-debug: deps
	swift build $(SWIFT_FLAGS)

test: deps
	swift build $(SWIFT_FLAGS) --build-tests
	swift test $(SWIFT_FLAGS) --skip-build

# The main job on the embedded default. For now: the parity checks the implemented modules pass.
demo: build
	$(BIN) --version
	$(BIN) fixtures check $(FIXTURES)/diffusers
	@echo "fixtures report above; binary at $(BIN)"

bench: build
	$(BIN) bench ops

clean:
	rm -rf .build .build-libtorch-*
