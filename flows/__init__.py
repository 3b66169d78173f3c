"""Prefect orchestration of the OneThinker DVC pipeline.

- :mod:`flows.pipeline`: the ``training_pipeline``, ``evaluation_only`` and ``dvc_stage`` flows.
- :mod:`flows.commands`: building and running ``dvc repro`` / ``dvc exp run`` commands (no Prefect).
- :mod:`flows.reports`: markdown for the Prefect artifacts (evaluation table, registry decision, validation).
- :mod:`flows.champion`: the registry's ``champion`` version and its local model folder.
- :mod:`flows.servers` and :mod:`flows.serve`: start and stop the local MLflow / Prefect stack (``make serve``).

Deployments live in ``prefect.yaml`` at the repository root (``make deploy``: ``prefect --no-prompt deploy --all``); see ``flows/README.md``.
"""
