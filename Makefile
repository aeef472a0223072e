# One-command setup, tests and demo on a CPU machine. See README.md.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.satori-setup
DEMO_DIR ?= $(CURDIR)/outputs/demo
DEMO_PORT ?= 8765
# torch 2.14.1 + torchvision 0.29.1 import cleanly together on CPU-only machines (a CUDA build
# that falls back to the CPU); on a GPU box install the torch that matches your CUDA first.
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
EXTRAS ?= train,eval,serve,dev

.PHONY: setup setup-gpu resolve-gpu gpu-check test test-fast test-py310 lint bench demo learn browser clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_PINS)
	$(BIN)/python -m pip install -q -e '.[$(EXTRAS)]'
	@touch $(STAMP)

# The GPU environment (a CUDA Linux machine): ms-swift, deepspeed, vLLM, VLMEvalKit and the
# rewards in one venv of its own. Not beside the serve extra: vLLM needs pillow>=13, gradio 6
# pillow<13; the demo runs from the CPU environment with --base-url (README "GPU machine").
GPU_VENV ?= .venv-gpu
setup-gpu:
	@test -x $(GPU_VENV)/bin/python || $(PYTHON) -m venv $(GPU_VENV)
	$(GPU_VENV)/bin/python -m pip install -q --upgrade pip
	$(GPU_VENV)/bin/python -m pip install -e '.[gpu]'

# CI: pip's resolver proves `pip install -e '.[gpu]'` resolves on PyPI (dry run, metadata only,
# no CUDA needed, nothing installed; about 2 minutes and 120 MB).
resolve-gpu: setup
	$(BIN)/python .ci/resolve_gpu.py

# On a CUDA machine: the tiny model through `satori eval` and one `satori train` step on the GPU.
# Exit 0 passed, 1 failed, 2 prerequisites missing, 77 no CUDA GPU (skipped).
gpu-check:
	$(if $(wildcard $(GPU_VENV)/bin/python),$(GPU_VENV)/bin/python,$(BIN)/python) benchmarks/gpu_check.py

# Two pytest-xdist workers, whole files each (the slow learn test runs beside the rest): 13 min
# instead of 19 on 2 cores. PYTEST_WORKERS=0 runs everything in one process.
PYTEST_WORKERS ?= 2
PYTEST_PARALLEL := $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist loadfile)
test: setup
	$(BIN)/python -m pytest tests $(PYTEST_PARALLEL)

test-fast: setup
	$(BIN)/python -m pytest tests -m "not slow and not browser" $(PYTEST_PARALLEL)

# The pure-Python core (grammar, pixels, prompts, command builder, rewards) on the lowest
# Python satori supports, so 3.11-only syntax (e.g. possessive regex quantifiers) cannot slip in.
PY310 ?= python3.10
CORE_TESTS := tests/test_grammar.py tests/test_grammars.py tests/test_rewards_rules.py tests/test_rewards_properties.py tests/test_doctests.py \
	tests/test_prompts.py tests/test_process.py
test-py310:
	@test -x .venv310/bin/python || $(PY310) -m venv .venv310
	.venv310/bin/python -m pip install -q -e '.[rewards]' pytest pytest-timeout hypothesis
	.venv310/bin/python -m pytest $(CORE_TESTS) -k "not train_dry_run"

lint: setup
	$(BIN)/ruff check satori_cli tests benchmarks
	$(BIN)/ruff format --check satori_cli tests benchmarks

bench: setup
	$(BIN)/python benchmarks/run_all.py

# Headless Chromium for the browser tests (Debian package; Playwright drives it, no download).
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

demo: setup
	@mkdir -p $(DEMO_DIR)
	$(BIN)/satori doctor --no-hub
	$(BIN)/satori tiny-model --out $(DEMO_DIR)/tiny-model
	$(BIN)/satori data sample --out $(DEMO_DIR)/raw --rows 32
	$(BIN)/satori data prepare $(DEMO_DIR)/raw/data.jsonl --out $(DEMO_DIR)/data --val-ratio 0.1
	$(BIN)/satori data inspect $(DEMO_DIR)/data --rows 8
	# --overwrite: each demo replaces the run the previous one left (satori refuses an existing run folder).
	$(BIN)/satori train --preset smoke --model $(DEMO_DIR)/tiny-model --data $(DEMO_DIR)/data/train.jsonl \
	    --out $(DEMO_DIR)/train --overwrite
	$(BIN)/satori report $(DEMO_DIR)/train
	$(BIN)/satori rewards score $(DEMO_DIR)/train --out $(DEMO_DIR)/reward_scores.jsonl --overwrite
	$(BIN)/satori data sample-bench --out $(DEMO_DIR)/lmu/TinyBench.tsv
	$(BIN)/satori eval --data $(DEMO_DIR)/lmu/TinyBench.tsv --model $(DEMO_DIR)/tiny-model --gpus 2 \
	    --max-new-tokens 16 --data-dir $(DEMO_DIR)/lmu --out $(DEMO_DIR)/eval --overwrite
	# Serving: the tiny model behind ms-swift's OpenAI-compatible server, asked from the command line.
	$(BIN)/satori serve --backend transformers --model $(DEMO_DIR)/tiny-model --port $(DEMO_PORT) & pid=$$!; \
	  $(BIN)/satori predict satori_cli/serve/examples/red_box.png "What color is the box?" \
	    --base-url http://127.0.0.1:$(DEMO_PORT)/v1 --wait 300 --max-new-tokens 16 --out $(DEMO_DIR)/predict.png; \
	  rc=$$?; kill $$pid; wait $$pid; exit $$rc
	@echo "demo finished: everything is under $(DEMO_DIR)"

# Proof that it learns (issue #14): a miniature Qwen2.5-VL, cold-start SFT then GRPO with the four
# rewards, greedy figures on held-out rows after each stage (and with blank images: the control),
# `satori report` plots; about 9 minutes on 2 cores (README "Train", "It learns"). Each run gets a
# fresh folder under $(LEARN_DIR).
LEARN_DIR ?= $(CURDIR)/outputs/learn
learn: setup
	$(BIN)/python benchmarks/learn.py --out $(LEARN_DIR)/$$(date +%Y%m%d-%H%M%S)

clean:
	rm -rf $(VENV) $(GPU_VENV) .venv310 .pytest_cache .ruff_cache outputs
