# PersonaLive-Swift — set-up, build, test and demo. `make demo` and `make test` work on a fresh
# Debian 12 machine: they install what is missing first (see `deps`).
#
#   LIBTORCH=/path/to/torch   build against another LibTorch (a CUDA libtorch, another wheel's torch/);
#                             unset = the CPU wheel's that `make venv` installs (the default, measured
#                             faster: README "Choosing a LibTorch"); LIBTORCH=debian = Debian's
#                             libtorch-dev, which `make test` also builds and checks. TORCH_CUDA=1 links CUDA.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

# libavdevice-dev: `live --input /dev/videoN` (V4L2); chromium: the serve tests open the webcam page headless;
# libgloo-dev: gloo's headers, which c10d's ProcessGroupGloo header needs (multi-process training).
APT_PACKAGES := libtorch-dev libhdf5-dev libavcodec-dev libavformat-dev libavdevice-dev libswscale-dev pkg-config \
                libopenblas0-pthread ffmpeg chromium libgloo-dev
VENV := .venv
PYTHON := $(CURDIR)/$(VENV)/bin/python
# mediapipe: FaceMesh for `dataset build --boxes mediapipe` (the wheel carries its face models).
# scikit-image: the independent SSIM/PSNR the evaluation metrics are checked against.
# diffusers: the PyTorch-eager peer of `personalive bench compare` (0.27, the API our UNet mirrors); it imports
# huggingface_hub's cached_download, which 0.26 removed, hence the pin.
PY_PACKAGES := torch==2.13.0+cpu safetensors h5py numpy mediapipe==0.10.14 scikit-image diffusers==0.27.2 huggingface_hub==0.25.2
PY_VERSION := $(shell python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
WHEEL_LIBTORCH := $(CURDIR)/$(VENV)/lib/python$(PY_VERSION)/site-packages/torch
LIBTORCH ?= $(WHEEL_LIBTORCH)
ifeq ($(LIBTORCH),debian)
override LIBTORCH :=
endif
export LIBTORCH
# Each LibTorch gets its own build folder, so switching LIBTORCH never mixes objects (.build is Debian's).
BUILD_DIR := $(if $(LIBTORCH),.build-libtorch-$(shell echo '$(LIBTORCH)' | md5sum | cut -c1-8),.build)
SWIFT_FLAGS := --scratch-path $(BUILD_DIR)
BIN := $(BUILD_DIR)/debug/personalive
FIXTURES ?= $(abspath ../shared/fixtures)

export PERSONALIVE_PYTHON := $(PYTHON)
export PERSONALIVE_FIXTURES := $(FIXTURES)

.PHONY: deps system-deps venv build build-cli release test test-debian demo bench clean

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

# Project-local Python used by tests for interop checks (h5py, safetensors, torch CPU wheel) and by
# `dataset build --boxes mediapipe`. .ready holds the package list installed; a new list reinstalls.
venv:
	@if [ "$$(cat $(VENV)/.ready 2>/dev/null)" != "$(PY_PACKAGES)" ]; then \
	  [ -x $(VENV)/bin/python ] || python3 -m venv $(VENV); \
	  echo "installing into $(VENV): $(PY_PACKAGES)"; \
	  $(VENV)/bin/python -m pip install -q --disable-pip-version-check $(PY_PACKAGES); \
	  echo "$(PY_PACKAGES)" > $(VENV)/.ready; \
	fi

# One debug build serves the tests and the demo (the pixel-heavy Media/Data targets are optimised
# even in debug; the rest of the time is spent inside LibTorch).
# `personalive` (everything but the server) and `personalive-serve` (the Hummingbird server that
# `personalive serve` hands over to). The demo needs only the first.
build: build-cli
	swift build $(SWIFT_FLAGS) --product personalive-serve

build-cli: deps
	swift build $(SWIFT_FLAGS) --product personalive

release: deps
	swift build $(SWIFT_FLAGS) -c release --product personalive
	swift build $(SWIFT_FLAGS) -c release --product personalive-serve

# A skipped test checked nothing, so it fails `make test`; then every fixture case under $(FIXTURES)
# must pass except those named in Tests/not-implemented-fixtures.txt (reported NOT IMPLEMENTED).
# The server's tests (the ServeTests target) run in a process of their own, after the rest: Swift
# Testing runs suites in parallel on a cooperative pool of one thread per core, and the long synchronous
# training tests can hold all of it for minutes, so a server in the same process could not answer
# an HTTP request (seen: a 60 s request deadline missed) or finish a WebSocket handshake.
test: deps
	swift build $(SWIFT_FLAGS) --build-tests
	swift test $(SWIFT_FLAGS) --skip-build --skip ServeTests --xunit-output $(BUILD_DIR)/tests.xml
	swift test $(SWIFT_FLAGS) --skip-build --filter ServeTests --xunit-output $(BUILD_DIR)/serve-tests.xml
	@for x in $(BUILD_DIR)/tests-swift-testing.xml $(BUILD_DIR)/serve-tests-swift-testing.xml; do \
	  if grep -q '<skipped' $$x; then \
	    echo "error: skipped tests in $$x (a skipped check is a failed check here):"; \
	    grep -B1 '<skipped' $$x | grep -o 'name="[^"]*"'; exit 1; \
	  fi; \
	done
	$(BIN) fixtures check $(FIXTURES) \
	  --not-implemented "$$(grep -v '^\s*\(#\|$$\)' Tests/not-implemented-fixtures.txt | paste -sd, -)"
	@if [ -n "$(LIBTORCH)" ]; then $(MAKE) --no-print-directory test-debian; fi

# Debian's libtorch-dev stays supported: built (in .build) and checked with every fixture and a short
# training run, next to the default LibTorch's full test run.
DEBIAN_BIN := .build/debug/personalive
test-debian: deps
	@echo "== Debian's libtorch-dev: build, fixture checks, a short training run (and 2 steps with 2 processes, Gloo)"
	LIBTORCH= swift build --scratch-path .build --product personalive
	LIBTORCH= $(DEBIAN_BIN) --version
	LIBTORCH= $(DEBIAN_BIN) fixtures check $(FIXTURES) \
	  --not-implemented "$$(grep -v '^\s*\(#\|$$\)' Tests/not-implemented-fixtures.txt | paste -sd, -)"
	@scratch=$$(mktemp -d) && trap 'rm -rf "$$scratch"' EXIT && ln -s $(CURDIR)/Configs $$scratch/Configs && \
	  cd $$scratch && $(CURDIR)/$(DEBIAN_BIN) dataset synth --out Datasets/synth.h5 --clips 6 --frames 16 --seed 3 >/dev/null && \
	  $(CURDIR)/$(DEBIAN_BIN) train Configs/tiny/vae.yaml --max-steps 20 && \
	  $(CURDIR)/$(DEBIAN_BIN) train Configs/tiny/vae.yaml --resume latest --max-steps 30 && \
	  test -f Checkpoints/tiny-vae/checkpoint-30/vae.safetensors && \
	  sed 's/run_name: tiny-vae/run_name: tiny-vae-ddp/; s/threads: 2/threads: 1/' Configs/tiny/vae.yaml > vae-ddp.yaml && \
	  $(CURDIR)/$(DEBIAN_BIN) train vae-ddp.yaml --max-steps 2 --nproc 2 --dist-timeout 120 && \
	  test -f Checkpoints/tiny-vae-ddp/checkpoint-2/vae.safetensors

# The main job on the embedded default (tiny configs, synthetic data, no downloads):
# synthetic dataset → tiny VAE → tiny motion extractor → tiny base UNet → stage 1 → stage 2 → stage 3 (and its
# comparison with stage 2 on 200-frame streams of Datasets/synth_long.h5) → animation
# of a synthetic val clip and of the PersonaLive demo video, then a report of every run and each step's
# wall time. Re-running resumes each run from its latest checkpoint (finished runs are skipped).
DEMO_RUNS := Experiments/tiny-vae Experiments/tiny-motion-extractor Experiments/tiny-unet Experiments/tiny-stage1 Experiments/tiny-stage2 \
             Experiments/tiny-stage3
# The animations use the whole pipeline: the stage-2 (4-step) model with the stage-3 temporal
# modules; `evaluate --compare` below compares stages 1 and 2, the stage-3 comparison stages 2 and 3.
DEMO_MODEL := Checkpoints/tiny-stage3
DEMO_OUT := Experiments/animate
DEMO_MEDIA := $(abspath ../shared/media)
DEMO_TIMES := Experiments/demo_times.txt
# 256 identities (so that stage 1 must copy appearance from the reference instead of memorising
# faces), 4-second clips at 10 fps, head turns up to ±45° (so that reference and target frames
# differ clearly in head pose, even on 64² frames) and face-filling framing (zoom 1.5: the face
# takes most of the 64² frame, as in face-cropped portrait data, rather than a third of it).
DEMO_SYNTH := --clips 256 --frames 40 --fps 10 --pose-scale 1.5 --zoom 1.5
# Stage 3's comparison streams long val clips (≥ 200 driving frames; the training clips are 40 frames).
DEMO_SYNTH_LONG := --clips 4 --frames 204 --fps 10 --pose-scale 1.5 --zoom 1.5 --val-fraction 0.5 --seed 9
# Runs one demo step and records its wall time.
define demo_step
	@echo "== $(1)"; start=$$(date +%s); $(2); echo "$(1): $$(( $$(date +%s) - start )) s" >> $(DEMO_TIMES)
endef
# LibTorch runs 2 threads (solver.threads); a second OpenBLAS pool would oversubscribe 2 cores.
# glibc malloc keeps freed activations instead of unmapping and re-faulting them every step
# (system time of the demo 2:31 → 0:31; up to ≈7 % faster steps; numbers unchanged).
demo: export OPENBLAS_NUM_THREADS = 1
demo: export MALLOC_MMAP_THRESHOLD_ = 33554432
demo: export MALLOC_TRIM_THRESHOLD_ = 8589934592
demo: build-cli
	@$(BIN) --version
	@mkdir -p Experiments $(DEMO_OUT) && rm -f $(DEMO_TIMES)
	@if [ ! -f Datasets/synth.h5 ]; then \
	  $(BIN) dataset synth --out Datasets/synth.h5 $(DEMO_SYNTH) && echo "$(DEMO_SYNTH)" > Datasets/synth.options; \
	elif [ "$$(cat Datasets/synth.options 2>/dev/null)" != "$(DEMO_SYNTH)" ]; then \
	  echo "warning: Datasets/synth.h5 was made with other options than '$(DEMO_SYNTH)'; the runs below resume on it."; \
	  echo "         To start over: rm -rf Datasets/synth* Checkpoints/tiny-* Experiments/tiny-*"; \
	fi
	$(BIN) dataset inspect Datasets/synth.h5
	$(call demo_step,vae,$(BIN) train Configs/tiny/vae.yaml --resume latest)
	$(call demo_step,motion extractor,$(BIN) train Configs/tiny/motion_extractor.yaml --resume latest)
	$(call demo_step,base unet,$(BIN) train Configs/tiny/unet.yaml --resume latest)
	$(call demo_step,stage 1,$(BIN) train Configs/tiny/stage1.yaml --resume latest)
	$(call demo_step,stage 2,$(BIN) train Configs/tiny/stage2.yaml --resume latest)
	$(call demo_step,stage 3,$(BIN) train Configs/tiny/stage3.yaml --resume latest)
	$(call demo_step,stage 3 comparison,\
	  if [ "$$(cat Datasets/synth_long.options 2>/dev/null)" != "$(DEMO_SYNTH_LONG)" ]; then \
	    $(BIN) dataset synth --out Datasets/synth_long.h5 $(DEMO_SYNTH_LONG) && echo "$(DEMO_SYNTH_LONG)" > Datasets/synth_long.options; fi && \
	  $(BIN) evaluate --model Checkpoints/tiny-stage2 --dataset Datasets/synth_long.h5 --split val --clips 2 --max-frames 200 \
	  --label stage-2 --out Experiments/eval/long-stage2 && \
	  $(BIN) evaluate --model Checkpoints/tiny-stage3 --dataset Datasets/synth_long.h5 --split val --clips 2 --max-frames 200 \
	  --label stage-3 --out Experiments/eval/long-stage3 && \
	  $(BIN) evaluate --compare Experiments/eval/long-stage2 Experiments/eval/long-stage3 --out Experiments/eval/compare-stage3 && \
	  cat Experiments/eval/compare-stage3/report.md)
	$(call demo_step,animate val clip,$(BIN) dataset export Datasets/synth.h5 --split val --index 0 \
	  --out $(DEMO_OUT)/val_clip.mp4 --reference $(DEMO_OUT)/val_reference.png && \
	  $(BIN) animate --model $(DEMO_MODEL) --reference $(DEMO_OUT)/val_reference.png --driving $(DEMO_OUT)/val_clip.mp4 \
	  --grid --out $(DEMO_OUT)/val_clip_animated.mp4)
	$(call demo_step,animate personalive-demo,$(BIN) animate --model $(DEMO_MODEL) \
	  --reference $(DEMO_MEDIA)/personalive-demo/ref_image.png --driving $(DEMO_MEDIA)/personalive-demo/driving_video.mp4 \
	  --max-frames 100 --grid --out $(DEMO_OUT)/personalive_demo.mp4)
	$(call demo_step,evaluate,$(BIN) evaluate --model Checkpoints/tiny-stage1 --dataset Datasets/synth.h5 --split val --clips 8 \
	  --label stage-1 --out Experiments/eval/tiny-stage1 && \
	  $(BIN) evaluate --model Checkpoints/tiny-stage2 --dataset Datasets/synth.h5 --split val --clips 8 --label stage-2 --out Experiments/eval/tiny-stage2 && \
	  $(BIN) evaluate --compare Experiments/eval/tiny-stage1 Experiments/eval/tiny-stage2 --out Experiments/eval/compare)
	@echo; echo "== report =="; $(BIN) report $(DEMO_RUNS)
	@echo; echo "dataset: Datasets/synth.h5 (frame grid Datasets/synth_grid.png)"
	@echo "runs: $(DEMO_RUNS) (metrics.jsonl, loss_curve.png, validation/)"
	@echo "checkpoints: Checkpoints/tiny-vae Checkpoints/tiny-motion-extractor Checkpoints/tiny-unet Checkpoints/tiny-stage1 Checkpoints/tiny-stage2 Checkpoints/tiny-stage3"
	@echo "stage 3 vs stage 2 on 200-frame streams: Experiments/eval/compare-stage3 (report.md, comparison.png)"
	@echo "animations: $(DEMO_OUT)/val_clip_animated.mp4, $(DEMO_OUT)/personalive_demo.mp4 (reference | driving | keypoints | generated)"
	@echo; echo "== wall time per step =="; cat $(DEMO_TIMES)

bench: build
	$(BIN) bench ops

clean:
	rm -rf .build .build-libtorch-*
