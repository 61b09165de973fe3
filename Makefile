# Thin wrapper over CMake. `make` builds everything, `make test` runs the suite, `make run` the main job.
#   make CUDA_ARCH=90        build CUDA code for one architecture only (default: 80 and 90)
#   make BUILD=build-cpu CMAKE_FLAGS=-DPT_WITH_CUDA=OFF   a CPU-only build
BUILD      ?= build
JOBS       ?= $(shell nproc)
CUDA_ARCH  ?=
CMAKE_FLAGS ?=
# nvcc is often outside PATH (/usr/local/cuda/bin); point CMake at it when it exists.
NVCC := $(or $(shell command -v nvcc 2>/dev/null),$(wildcard /usr/local/cuda/bin/nvcc))

CMAKE_ARGS := -DCMAKE_BUILD_TYPE=Release \
  $(if $(NVCC),-DCMAKE_CUDA_COMPILER=$(NVCC)) \
  $(if $(CUDA_ARCH),-DCMAKE_CUDA_ARCHITECTURES="$(CUDA_ARCH)") $(CMAKE_FLAGS)

.PHONY: all deps configure build test bench run demo profile clean data pretrain-mini gpu-kit gpu-check \
        compare compare-deps fuzz

all: build

deps:
	@./scripts/install_deps.sh

$(BUILD)/CMakeCache.txt: | deps
	cmake -S . -B $(BUILD) $(CMAKE_ARGS)

configure: deps
	cmake -S . -B $(BUILD) $(CMAKE_ARGS)

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j$(JOBS)
	@for app in train_prune pretrain; do if [ -x $(BUILD)/$$app ]; then ln -sf $(BUILD)/$$app $$app; fi; done

# The project reads its data files (WikiText-2, OPT's tokenizer) from data/. Where ../shared/data exists (these
# machines) it is linked; then scripts/fetch_data.py checks every file against its published checksum, fetches what
# is missing where a network allows, and says on one line per file exactly what to put where when it cannot.
# make data DATA_DIR=/path SHARED_DATA=/other FETCH_FLAGS="--offline | --source-dir DIR"
DATA_DIR    ?= data
SHARED_DATA ?= ../shared/data
FETCH_FLAGS ?=
data:
	@if [ ! -e $(DATA_DIR) ] && [ -d $(SHARED_DATA) ]; then ln -s $(SHARED_DATA) $(DATA_DIR) && echo "data: linked $(SHARED_DATA)"; fi
	@command -v python3 >/dev/null || { echo "data: python3 is needed to check and fetch $(DATA_DIR)/ (apt-get install python3)"; exit 1; }
	@python3 scripts/fetch_data.py --data $(DATA_DIR) $(FETCH_FLAGS)

# Tests that need data/ report skipped without it, so an incomplete data/ does not stop the suite.
test: build
	@$(MAKE) --no-print-directory data || echo "test: data/ is incomplete (above): the tests that need it will report skipped"
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS)

bench: build
	@for b in $(BUILD)/bench/bench_*; do [ -x "$$b" ] && echo "== $$b" && "$$b" --benchmark_min_time=0.05; done; true

# The project beside PyTorch on the same cases (scripts/compare.py; bench/reference/ is the PyTorch side).
#   make compare                      the CPU table, into bench/results/compare-cpu-<date>/
#   make compare DEVICE=cuda          the GPU table (a CUDA build on a GPU machine)
#   make compare QUICK=1              tiny shapes, seconds: checks the harness, the numbers mean nothing
#   make compare COMPARE_ARGS="--only adamw --rounds 9"
DEVICE ?= cpu
QUICK ?=
COMPARE_ARGS ?=
compare: build compare-deps
	python3 scripts/compare.py --build $(BUILD) --device $(DEVICE) $(if $(QUICK),--quick) $(COMPARE_ARGS)

# PyTorch and transformers for the baselines (pip, only when missing; see scripts/compare_deps.sh).
compare-deps:
	@./scripts/compare_deps.sh

# The main job. Until the train_prune app lands this runs the smoke demo.
run: build data
	@if [ -x $(BUILD)/train_prune ]; then ./$(BUILD)/train_prune --config configs/quickstart.ini; \
	 else ./$(BUILD)/pt_demo; fi

# The small OPT model of configs/opt-mini-pretrain.ini (about an hour on a 2-core CPU; resumes if stopped).
pretrain-mini: build data
	./$(BUILD)/pretrain --config configs/opt-mini-pretrain.ini

demo: build
	./$(BUILD)/pt_demo

# The GPU kit (.gpu-kit/): the tests, benchmarks and apps of a Release build for sm_90 with the shared libraries
# they load (CUDA's excepted) and the data, compressed, to carry to a GPU machine; scripts/gpu_check.sh runs it
# there. CUDA_ARCH applies when $(BUILD) is configured here for the first time.
gpu-kit: data
	$(MAKE) build CUDA_ARCH=$(or $(CUDA_ARCH),90)
	scripts/make_gpu_kit.sh --build $(BUILD) --out .gpu-kit

# The GPU check on this machine: on a GPU machine the real run, elsewhere a toy run that proves the kit.
gpu-check: gpu-kit
	OUT=$(or $(OUT),gpu-check-out) scripts/gpu_check.sh --kit .gpu-kit

# libFuzzer harnesses (tests/fuzz/README.md), the whole project under ASan + UBSan, built with Debian's clang 14 in
# build-fuzz/ (installed for this target only), then each harness run FUZZ_SECONDS, nice'd, one at a time.
#   make fuzz FUZZ_SECONDS=600 FUZZ_TARGETS="safetensors checkpoint"
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= ini_config train_prune_config tokenizer_encode safetensors checkpoint hf_config
fuzz:
	@./scripts/install_deps.sh --fuzz
	@$(MAKE) --no-print-directory data || echo "fuzz: data/ is incomplete (above): tokenizer_encode checks nothing without data/opt-tokenizer"
	cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 \
	  -DPT_WITH_CUDA=OFF -DPT_FUZZ=ON -DPT_BUILD_TESTS=OFF -DPT_BUILD_BENCH=OFF $(CMAKE_FLAGS)
	cmake --build build-fuzz -j$(JOBS) --target fuzz_harnesses
	./scripts/run_fuzzers.sh build-fuzz $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# Build with -lineinfo for Nsight Compute source views (separate build folder).
profile:
	$(MAKE) BUILD=build-profile CMAKE_FLAGS="-DPT_LINEINFO=ON $(CMAKE_FLAGS)" build

clean:
	rm -rf $(BUILD) build-profile build-fuzz train_prune pretrain
