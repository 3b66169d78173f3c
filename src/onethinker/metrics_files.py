"""The stages' metrics files: the full detail and a small headline that DVC shows.

Each stage that measures a model writes two JSON files:

- the detail, ``metrics/<name>.json`` (per task, per benchmark, timings): what ``onethinker report``, the
  registry gate and the Prefect artifacts read, and what ``dvc metrics diff --all --targets <file>``
  compares metric by metric. ``dvc.yaml`` lists it as a plain output (``cache: false``).
- the headline, ``metrics/headline/<name>.json``: one to three numbers rounded to 3 digits, the files
  ``dvc.yaml`` marks as ``metrics``. ``dvc metrics show`` prints all of them as one table (a column per key
  across the files) and ``dvc exp show`` a column per key, named by the key alone only when no other file
  has it; so the keys are few, short and unique, and both tables stay narrow (under 100 columns):

  ==========  =====================================================================
  file        keys
  ==========  =====================================================================
  sft         ``sft_acc``: mean accuracy over tasks of the stage's held-out check
  grpo        ``grpo_acc``: the same held-out check after RL
  eval        one key per evaluated model (``base``, ``sft``, ``grpo``): its mean accuracy over tasks
  registry    ``champion``: the champion's version
  ==========  =====================================================================

  Format rates, per-task numbers and the registry's decisions stay in the detail.

The headline is a pure function of the detail (:func:`heldout_headline`, :func:`eval_headline`,
:func:`registry_headline`), so it never disagrees with it.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

HEADLINE_DIR = "headline"
DIGITS = 3


def headline_path(detail: str | Path) -> Path:
    """``metrics/eval.json`` -> ``metrics/headline/eval.json`` (the headline sits next to its detail)."""
    detail = Path(detail)
    return detail.parent / HEADLINE_DIR / detail.name


def write_json(path: str | Path, payload: Mapping[str, Any], sort_keys: bool = True) -> Path:
    """Write ``payload`` as indented JSON, atomically (a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=sort_keys) + "\n")
    os.replace(tmp, path)
    return path


def _r(x: Any) -> float | None:
    """Round to :data:`DIGITS` digits; None for a missing or non-finite number."""
    if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(float(x)):
        return None
    return round(float(x), DIGITS)


def _drop_none(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def heldout_headline(summary: Mapping[str, Any], model: str) -> dict[str, float]:
    """``{"<model>_acc": mean accuracy}`` of a stage summary's held-out check (``metrics/sft.json``,
    ``metrics/grpo.json``); empty when the stage ran no held-out check."""
    held = summary.get("heldout") or {}
    return _drop_none({f"{model}_acc": _r(held.get("mean_accuracy"))})


def eval_headline(result: Mapping[str, Any]) -> dict[str, float]:
    """``{model: mean accuracy over tasks}`` of an evaluation (``metrics/eval.json``), in its model order."""
    models = result.get("models") or {}
    return _drop_none({name: _r((m or {}).get("mean_accuracy")) for name, m in models.items()})


def registry_headline(registry: Mapping[str, Any]) -> dict[str, int]:
    """``{"champion": version}`` of the registry file (``metrics/registry.json``); empty without a champion."""
    try:
        return {"champion": int(registry["champion_version"])}
    except (KeyError, TypeError, ValueError):
        return {}


def write_with_headline(
    detail_path: str | Path, detail: Mapping[str, Any], headline: Mapping[str, Any], sort_keys: bool = True
) -> tuple[Path, Path]:
    """Write the detail file and its headline (:func:`headline_path`); returns both paths."""
    detail_path = write_json(detail_path, detail, sort_keys=sort_keys)
    return detail_path, write_json(headline_path(detail_path), headline, sort_keys=False)
