# Two entry points on a fresh machine: `make demo` and `make test`.
# Both create and reuse the virtual environment in .venv with the `poet` console script.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_OUT ?= out/hh-rlhf-harmless-smollm2-poet
# torch is pinned so pip takes the CPU wheel instead of several GB of CUDA packages.
TORCH ?= torch==2.13.0

.PHONY: demo test bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(BIN)/python -m pip install -q --disable-pip-version-check "$(TORCH)"
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[train,test,dask,gcp]'
	touch $@

demo: $(VENV)/.installed
	HF_HUB_OFFLINE=1 $(BIN)/poet prepare \
		--input samples/hh-rlhf/harmless-base-test.jsonl.gz \
		--tokenizer samples/tokenizers/smollm2-135m-instruct \
		--license mit --output $(DEMO_OUT) --overwrite
	@echo "load it with: datasets.load_dataset('$(DEMO_OUT)')"

# the suite includes a static check: mypy resolves every poet.* import (tests/test_static_imports.py)
test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q

bench: $(VENV)/.installed-dev
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf out .pytest_cache .mypy_cache
