-- Run once by the postgres image on an empty data volume: one database per server.
-- (POSTGRES_DB creates the first one, `mlflow`.)
CREATE DATABASE prefect;
