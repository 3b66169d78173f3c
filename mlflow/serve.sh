#!/usr/bin/env bash
# Start the MLflow tracking server (UI + REST API + model registry) in the foreground, on loopback, over the
# store the pipeline uses by default: sqlite:///<repo>/mlflow/mlflow.db with artifacts in <repo>/mlflow/artifacts.
#
#   bash mlflow/serve.sh                      # http://127.0.0.1:5000
#   MLFLOW_PORT=5001 bash mlflow/serve.sh     # another port
#   export MLFLOW_TRACKING_URI=http://127.0.0.1:5000   # then the stages log through the server
#
# Settings (environment): MLFLOW_HOST (127.0.0.1), MLFLOW_PORT (5000), MLFLOW_WORKERS (1),
# MLFLOW_BACKEND_STORE_URI (the SQLite file above), MLFLOW_ARTIFACTS_DESTINATION (the folder above),
# MLFLOW_ALLOWED_HOSTS (MLflow's default: localhost and private addresses).
# Production (Postgres + S3-compatible store): see mlflow/README.md. `make serve` runs this script.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MLFLOW_BIN="${ROOT}/.venv/bin/mlflow"
[[ -x "${MLFLOW_BIN}" ]] || MLFLOW_BIN="$(command -v mlflow)"

HOST="${MLFLOW_HOST:-127.0.0.1}"
PORT="${MLFLOW_PORT:-5000}"
WORKERS="${MLFLOW_WORKERS:-1}"
BACKEND="${MLFLOW_BACKEND_STORE_URI:-sqlite:///${ROOT}/mlflow/mlflow.db}"
ARTIFACTS="${MLFLOW_ARTIFACTS_DESTINATION:-${ROOT}/mlflow/artifacts}"

export MLFLOW_DISABLE_TELEMETRY="${MLFLOW_DISABLE_TELEMETRY:-true}"
if [[ "${BACKEND}" == sqlite:///* ]]; then
  mkdir -p "$(dirname "${BACKEND#sqlite:///}")"
fi
if [[ "${ARTIFACTS}" != *://* ]]; then
  mkdir -p "${ARTIFACTS}"
fi

args=(server --backend-store-uri "${BACKEND}" --serve-artifacts --artifacts-destination "${ARTIFACTS}"
      --host "${HOST}" --port "${PORT}" --workers "${WORKERS}")
if [[ -n "${MLFLOW_ALLOWED_HOSTS:-}" ]]; then
  args+=(--allowed-hosts "${MLFLOW_ALLOWED_HOSTS}")
fi
echo "mlflow server: ${BACKEND}, artifacts ${ARTIFACTS}, http://${HOST}:${PORT}" >&2
exec "${MLFLOW_BIN}" "${args[@]}"
