# syntax=docker/dockerfile:1
# MLflow tracking server with the Postgres driver and the S3 client (for MinIO or any S3-compatible store).
ARG MLFLOW_IMAGE=ghcr.io/mlflow/mlflow:v3.17.2
FROM ${MLFLOW_IMAGE}
RUN pip install --no-cache-dir psycopg2-binary==2.9.13 boto3
