# Everything starts from a bare Python 3.10+: `make serve` runs the service, `make test` runs every test.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
EXTRAS ?= export,triton,bench,test
comma  := ,
STAMP  := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))

MODEL      ?= resnet50
REPOSITORY ?= model_repository
TEST_REPOSITORY := build/test-repository

.PHONY: help install models serve test reliability bench bench-gpu bench-sweep deploy deploy-dry-run lint clean
.DEFAULT_GOAL := help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip uv
	$(VENV)/bin/uv pip install --python $(PY) -e ".[$(EXTRAS)]"
	@touch $@

install: $(STAMP)  ## create .venv and install the project with its extras

$(REPOSITORY)/$(MODEL)/1/model.onnx: | $(STAMP)
	$(PY) -m export --model $(MODEL) --repository $(REPOSITORY)

models: $(REPOSITORY)/$(MODEL)/1/model.onnx  ## export the default model (resnet50) unless it is there

serve: install models  ## run Triton + the gateway on 127.0.0.1:8080 (Ctrl-C stops both)
	$(PY) -m launcher --model $(MODEL) --repository $(REPOSITORY)

$(TEST_REPOSITORY)/resnet18/1/model.onnx: $(wildcard export/*.py) | $(STAMP)
	$(PY) -m export --model resnet18 --repository $(TEST_REPOSITORY)

test: install $(TEST_REPOSITORY)/resnet18/1/model.onnx  ## install what tests need and run the whole suite
	$(PY) -m pytest

reliability: install $(TEST_REPOSITORY)/resnet18/1/model.onnx  ## only the reliability suite (faults, floods, hostile input)
	$(PY) -m pytest -m reliability

bench: install models  ## every benchmark scenario on this machine -> docs/bench/cpu (about 10 minutes)
	$(PY) -m bench --out docs/bench/cpu

bench-sweep: install models  ## dynamic-batching sweep, Model Analyzer style -> docs/bench/cpu-sweep
	$(PY) -m bench --sweep --out docs/bench/cpu-sweep

FP16_REPOSITORY := build/fp16-repository
$(FP16_REPOSITORY)/$(MODEL)/1/model.onnx: | $(STAMP)
	$(PY) -m export --model $(MODEL) --fp16 --repository $(FP16_REPOSITORY)

bench-gpu: install models $(FP16_REPOSITORY)/$(MODEL)/1/model.onnx  ## on an NVIDIA GPU host (EXTRAS=...,gpu) -> docs/bench/h100
	$(PY) -m bench --device cuda --fp16-repository $(FP16_REPOSITORY) --out docs/bench/h100

DEPLOY_ARGS ?=
deploy: install models  ## deploy to Amazon ECS: DEPLOY_ARGS="--cluster ... --bucket ..." (deploy/ecs/README.md)
	$(PY) -m deploy.ecs --model-repository $(REPOSITORY) $(DEPLOY_ARGS)

deploy-dry-run: install  ## print the ECS plan, task definition and IAM policies without calling AWS
	$(PY) -m deploy.ecs --dry-run --model-repository $(REPOSITORY) $(DEPLOY_ARGS)

lint: install  ## ruff
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:  ## remove the environment, exported models and build output
	rm -rf $(VENV) build var model_repository/*/1 model_repository/*/labels.txt
