# Everything starts from a bare Python 3.11+: `make serve` runs the service, `make test` runs every test.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
comma  := ,
space  := $(subst ,, )

# What each command installs beside the project's own dependencies (pyproject.toml's extras): serving needs the
# exporter and Triton only; the benchmark adds its peers and plots, the tests their tools (and OpenTelemetry).
SERVE_EXTRAS := export,triton
BENCH_EXTRAS := $(SERVE_EXTRAS),bench
TEST_EXTRAS  := $(BENCH_EXTRAS),test,otel
EXTRAS ?=
extras.serve          := $(SERVE_EXTRAS)
extras.models         := $(SERVE_EXTRAS)
extras.deploy         := $(SERVE_EXTRAS)
extras.deploy-dry-run := $(SERVE_EXTRAS)
extras.bench          := $(BENCH_EXTRAS)
extras.bench-sweep    := $(BENCH_EXTRAS)
extras.bench-gpu      := $(BENCH_EXTRAS)
extras.gpu-kit        := $(BENCH_EXTRAS)
extras.install        := $(TEST_EXTRAS)
extras.test           := $(TEST_EXTRAS)
extras.test-unit      := $(TEST_EXTRAS)
extras.reliability    := $(TEST_EXTRAS)
extras.lint           := $(TEST_EXTRAS)
extras.verify-images  := $(TEST_EXTRAS)
# One venv holds every extra installed so far (its stamp's name lists them) plus what this run's goals need, and
# EXTRAS (EXTRAS=gpu on a GPU host): `make serve` after `make test` keeps the test tools, `make test` after
# `make serve` adds them, and every target of one run shares the one stamp.
INSTALLED := $(subst -, ,$(patsubst $(VENV)/.installed-%,%,$(firstword $(wildcard $(VENV)/.installed-*))))
WANTED    := $(sort $(INSTALLED) $(subst $(comma), ,$(foreach goal,$(MAKECMDGOALS),$(extras.$(goal))) $(EXTRAS)))
STAMP     := $(VENV)/.installed-$(subst $(space),-,$(WANTED))

MODEL      ?= resnet50
# Unset: python -m export's own default, auto (torchvision's ImageNet weights when cached or downloadable, else the
# random init seed:0, said loudly). WEIGHTS=imagenet, seed:N, a .pth or s3://bucket/key choose.
WEIGHTS    ?=
REPOSITORY ?= model_repository
TEST_REPOSITORY := build/test-repository

.PHONY: help install lock browser models serve test test-unit reliability bench bench-gpu bench-sweep gpu-kit verify-images deploy deploy-dry-run lint clean
.DEFAULT_GOAL := help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

# uv comes from PyPI into the venv; the same version builds the images (deploy/ecs/Dockerfile.*, UV_VERSION).
UV_VERSION := 0.13.9
UV := $(VENV)/bin/uv

$(UV):
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip "uv==$(UV_VERSION)"

# Exactly what uv.lock pins for those extras, nothing else (sync removes strays); --locked fails when
# pyproject.toml changed without `make lock`, instead of installing something the lock does not describe.
$(STAMP): pyproject.toml uv.lock | $(UV)
	UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync --locked --no-python-downloads $(foreach extra,$(WANTED),--extra $(extra))
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(STAMP)  ## create .venv and install everything the commands below use, exactly as uv.lock pins it

# Two locks, one command: the project's (Python 3.11+) and the Triton image's packages (its Python 3.10).
TRITON_ENV := deploy/ecs/triton-env
lock: | $(UV)  ## re-resolve uv.lock and deploy/ecs/triton-env/uv.lock to the newest versions allowed (then commit them; make install)
	$(UV) lock --upgrade
	$(UV) lock --upgrade --no-python-downloads --project $(TRITON_ENV)

# identity.json: an export older than the identity each answer carries (MODEL_ID), or than the code it copies into
# the repository (the python-backend models, the imaging package, the preprocessing graph), is made again.
REPOSITORY_SOURCES := $(wildcard export/*.py servables/*.py servables/python_models/*.py imaging/*.py)
$(REPOSITORY)/$(MODEL)/1/identity.json: $(REPOSITORY_SOURCES) | $(STAMP)
	$(PY) -m export --model $(MODEL) $(if $(WEIGHTS),--weights $(WEIGHTS)) --repository $(REPOSITORY)

models: $(REPOSITORY)/$(MODEL)/1/identity.json  ## export the default model (resnet50) unless it is there

SERVE_ARGS ?=
serve: $(STAMP) models  ## run Triton + the gateway on 127.0.0.1:8080 (Ctrl-C stops both; SERVE_ARGS="--port 9090 ...")
	$(PY) -m launcher --model $(MODEL) --repository $(REPOSITORY) $(SERVE_ARGS)

$(TEST_REPOSITORY)/resnet18/1/model.onnx: $(REPOSITORY_SOURCES) | $(STAMP)
	$(PY) -m export --model resnet18 --weights seed:0 --repository $(TEST_REPOSITORY)

# Debian's chromium for tests/integration/test_ui.py (Playwright drives it; it never downloads a browser of its own).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:  ## install Debian's chromium for the browser test, unless it is there
	@command -v chromium >/dev/null || { $(SUDO) apt-get update && $(SUDO) apt-get install -y chromium; }

# The unit and integration tiers share the cores (TEST_WORKERS processes, each taking a test file at a time); the
# reliability tier runs alone after them: its goals are timings and memory that a neighbour would disturb.
TEST_WORKERS ?= 2
test: $(STAMP) browser $(TEST_REPOSITORY)/resnet18/1/model.onnx  ## install what tests need and run the whole suite
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile tests/integration tests/unit
	$(PY) -m pytest tests/reliability

test-unit: $(STAMP)  ## the fast tier: no server, no export (the inner loop; under a minute)
	$(PY) -m pytest tests/unit

reliability: $(STAMP) $(TEST_REPOSITORY)/resnet18/1/model.onnx  ## the reliability tier (faults, floods, hostile input) -> docs/reliability
	$(PY) -m pytest tests/reliability --reliability-report docs/reliability

bench: $(STAMP) models  ## every benchmark scenario on this machine -> docs/bench/cpu (it says how long when it starts)
	$(PY) -m bench --out docs/bench/cpu

bench-sweep: $(STAMP) models  ## dynamic-batching sweep, Model Analyzer style -> docs/bench/cpu-sweep
	$(PY) -m bench --sweep --out docs/bench/cpu-sweep

FP16_REPOSITORY := build/fp16-repository
$(FP16_REPOSITORY)/$(MODEL)/1/model.onnx: | $(STAMP)
	$(PY) -m export --model $(MODEL) --fp16 --repository $(FP16_REPOSITORY)

bench-gpu: $(STAMP) models $(FP16_REPOSITORY)/$(MODEL)/1/model.onnx  ## on an NVIDIA GPU host (EXTRAS=gpu) -> docs/bench/h100
	$(PY) -m bench --device cuda --fp16-repository $(FP16_REPOSITORY) --out docs/bench/h100

# The borrowed-GPU-host kit (gpu_kit/): trimmed tritonserver + the wheels that host lacks, each part <= 64 MB;
# prints the one device call (its carry list included) that runs the benchmark there -> docs/bench/h200.
gpu-kit: $(STAMP)  ## build build/gpu-kit (+ build/gpu-kit-decoder) for a GPU host with no network; prints what to run there
	$(PY) -m gpu_kit.build --out build/gpu-kit
	$(PY) -m gpu_kit.build --decoder --out build/gpu-kit-decoder

# No Docker here: each image's Python and locked packages in a venv run what the image runs (deploy/verify_images.py).
verify-images: $(STAMP) models  ## run the repository as the deploy ships it in the images' environments (about a minute)
	$(PY) -m deploy.verify_images --model-repository $(REPOSITORY)

DEPLOY_ARGS ?=
deploy: $(STAMP) models  ## deploy to Amazon ECS: DEPLOY_ARGS="--cluster ... --bucket ..." (deploy/ecs/README.md)
	$(PY) -m deploy.ecs --model-repository $(REPOSITORY) $(DEPLOY_ARGS)

deploy-dry-run: $(STAMP) models  ## print the ECS plan, task definition and IAM policies without calling AWS (placeholders for what DEPLOY_ARGS lacks)
	$(PY) -m deploy.ecs --dry-run --model-repository $(REPOSITORY) $(DEPLOY_ARGS)

lint: $(STAMP)  ## ruff (lint and format) and mypy ([tool.mypy] in pyproject.toml names the packages)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

clean:  ## remove the environment, exported models and build output
	rm -rf $(VENV) build var model_repository/*/1 model_repository/*/labels.txt
