# syntax=docker/dockerfile:1
# GPU worker image: CUDA + Python 3.11 + the onethinker package with its GPU extras (deepspeed, vllm), DVC, MLflow
# and Prefect. It runs `prefect worker start --pool gpu --type process` (compose) or is the image of the
# Kubernetes GPU work pool (infra/k8s/gpu-work-pool.json). The same image serves the CPU worker (no GPU needed).
#
#   docker build -f infra/worker-gpu.Dockerfile -t onethinker-worker-gpu:latest .
#
# The build context is the repository root. Not built on the CPU development machines (no container engine):
# infra tests parse this file. The torch build comes with vLLM (each vLLM release pins one CUDA torch); the
# other pins come from constraints-gpu.txt (constraints.txt with vLLM's torch and transformers: vLLM 0.32.0
# needs transformers <5.20).
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-devel-ubuntu24.04
FROM ${CUDA_IMAGE}

ARG PYTHON_VERSION=3.11
ARG WORKER_UID=1001
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    UV_LINK_MODE=copy \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    DVC_NO_ANALYTICS=1 \
    MLFLOW_DISABLE_TELEMETRY=true \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    PREFECT_HOME=/var/lib/prefect \
    HF_HOME=/cache/huggingface \
    TORCH_EXTENSIONS_DIR=/cache/torch_extensions \
    TOKENIZERS_PARALLELISM=false

RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl git build-essential ffmpeg libgl1 \
 && rm -rf /var/lib/apt/lists/*

# uv installs a standalone CPython (the distribution's Python may not be 3.11)
COPY --from=ghcr.io/astral-sh/uv:0.8.22 /uv /usr/local/bin/uv
RUN uv venv --python "${PYTHON_VERSION}" /opt/venv

WORKDIR /workspace
COPY pyproject.toml constraints.txt constraints-gpu.txt README.md ./
COPY src ./src
# Two environments, because vLLM (fastapi <0.137) and Prefect 3.8 (fastapi >=0.139) cannot share one:
# - /opt/venv, first on PATH: training and evaluation (`.[gpu]`: DeepSpeed, vLLM with its CUDA torch), DVC and
#   MLflow; the `onethinker` and `dvc` commands a flow runs come from here.
# - /opt/worker: the Prefect worker and the flows (`.[orchestration]` without dependencies of its own beyond
#   Prefect, MLflow and PyYAML: flows/ only import onethinker.tracking and onethinker.config).
RUN uv pip install --python /opt/venv/bin/python -c constraints-gpu.txt -e ".[gpu]" \
 && /opt/venv/bin/python -c "import onethinker, mlflow, dvc, vllm, deepspeed" \
 && uv venv --python "${PYTHON_VERSION}" /opt/worker \
 && uv pip install --python /opt/worker/bin/python -c constraints.txt prefect mlflow pyyaml \
 && uv pip install --python /opt/worker/bin/python --no-deps -e . \
 && /opt/worker/bin/python -c "import prefect, mlflow, onethinker.tracking"

# The repository checkout (flows/, dvc.yaml, params.yaml, .git, DVC outputs) is mounted at /workspace at run
# time (compose: a bind mount; Kubernetes: the workspace volume claim). The editable install above points at
# /workspace/src, so the mounted code is the code that runs.
RUN git config --system --add safe.directory /workspace \
 && mkdir -p /var/lib/prefect /cache && useradd --create-home --uid "${WORKER_UID}" onethinker \
 && chown -R onethinker /workspace /var/lib/prefect /cache
USER onethinker

CMD ["/opt/worker/bin/prefect", "worker", "start", "--pool", "gpu", "--type", "process"]
