# Everything starts from a bare Python 3.11+: `make serve` runs the service, `make test` runs every test.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
EXTRAS ?= export,triton,bench,test,otel
comma  := ,
STAMP  := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))

MODEL      ?= resnet50
# auto: torchvision's ImageNet weights when cached or downloadable, else the random init seed:0 (said loudly).
WEIGHTS    ?= auto
REPOSITORY ?= model_repository
TEST_REPOSITORY := build/test-repository

.PHONY: help install lock browser models serve test test-unit reliability bench bench-gpu bench-sweep gpu-kit deploy deploy-dry-run lint clean
.DEFAULT_GOAL := help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

# uv comes from PyPI into the venv; the same version builds the images (deploy/ecs/Dockerfile.*, UV_VERSION).
UV_VERSION := 0.13.9
UV := $(VENV)/bin/uv

$(UV):
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip "uv==$(UV_VERSION)"

# Exactly what uv.lock pins, nothing else (sync removes strays); --locked fails when pyproject.toml changed
# without `make lock`, instead of installing something the lock does not describe.
$(STAMP): pyproject.toml uv.lock | $(UV)
	UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync --locked --no-python-downloads $(foreach extra,$(subst $(comma), ,$(EXTRAS)),--extra $(extra))
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(STAMP)  ## create .venv and install the project with its extras, exactly as uv.lock pins them

lock: | $(UV)  ## re-resolve uv.lock to the newest versions pyproject.toml allows (then commit it; make install)
	$(UV) lock --upgrade

$(REPOSITORY)/$(MODEL)/1/model.onnx: servables/python_models/decode.py | $(STAMP)
	$(PY) -m export --model $(MODEL) --weights $(WEIGHTS) --repository $(REPOSITORY)

models: $(REPOSITORY)/$(MODEL)/1/model.onnx  ## export the default model (resnet50) unless it is there

SERVE_ARGS ?=
serve: install models  ## run Triton + the gateway on 127.0.0.1:8080 (Ctrl-C stops both; SERVE_ARGS="--port 9090 ...")
	$(PY) -m launcher --model $(MODEL) --repository $(REPOSITORY) $(SERVE_ARGS)

$(TEST_REPOSITORY)/resnet18/1/model.onnx: $(wildcard export/*.py servables/*.py servables/python_models/*.py) | $(STAMP)
	$(PY) -m export --model resnet18 --repository $(TEST_REPOSITORY)

# Debian's chromium for tests/integration/test_ui.py (Playwright drives it; it never downloads a browser of its own).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:  ## install Debian's chromium for the browser test, unless it is there
	@command -v chromium >/dev/null || { $(SUDO) apt-get update && $(SUDO) apt-get install -y chromium; }

test: install browser $(TEST_REPOSITORY)/resnet18/1/model.onnx  ## install what tests need and run the whole suite
	$(PY) -m pytest

test-unit: install  ## the fast tier: no server, no export (the inner loop; under a minute)
	$(PY) -m pytest tests/unit

reliability: install $(TEST_REPOSITORY)/resnet18/1/model.onnx  ## only the reliability suite (faults, floods, hostile input)
	$(PY) -m pytest -m reliability

bench: install models  ## every benchmark scenario on this machine -> docs/bench/cpu (it says how long when it starts)
	$(PY) -m bench --out docs/bench/cpu

bench-sweep: install models  ## dynamic-batching sweep, Model Analyzer style -> docs/bench/cpu-sweep
	$(PY) -m bench --sweep --out docs/bench/cpu-sweep

FP16_REPOSITORY := build/fp16-repository
$(FP16_REPOSITORY)/$(MODEL)/1/model.onnx: | $(STAMP)
	$(PY) -m export --model $(MODEL) --fp16 --repository $(FP16_REPOSITORY)

bench-gpu: install models $(FP16_REPOSITORY)/$(MODEL)/1/model.onnx  ## on an NVIDIA GPU host (EXTRAS=...,gpu) -> docs/bench/h100
	$(PY) -m bench --device cuda --fp16-repository $(FP16_REPOSITORY) --out docs/bench/h100

# The borrowed-GPU-host kit (gpu_kit/): trimmed tritonserver + the wheels that host lacks, each part <= 64 MB;
# prints the one device call (its carry list included) that runs the benchmark there -> docs/bench/h200.
gpu-kit: install  ## build build/gpu-kit for a borrowed GPU host with no network; prints the command to run there
	$(PY) -m gpu_kit.build --out build/gpu-kit

DEPLOY_ARGS ?=
deploy: install models  ## deploy to Amazon ECS: DEPLOY_ARGS="--cluster ... --bucket ..." (deploy/ecs/README.md)
	$(PY) -m deploy.ecs --model-repository $(REPOSITORY) $(DEPLOY_ARGS)

deploy-dry-run: install  ## print the ECS plan, task definition and IAM policies without calling AWS
	$(PY) -m deploy.ecs --dry-run --model-repository $(REPOSITORY) $(DEPLOY_ARGS)

lint: install  ## ruff (lint and format) and mypy ([tool.mypy] in pyproject.toml names the packages)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

clean:  ## remove the environment, exported models and build output
	rm -rf $(VENV) build var model_repository/*/1 model_repository/*/labels.txt
