"""The registered model: an MLflow pyfunc wrapping the saved Hugging Face folder of a OneThinker checkpoint.

``mlflow.transformers`` cannot log Qwen3-VL (it is not a ``pipeline`` task), so the folder is a pyfunc
artifact and this class loads it with the project's own loaders (``onethinker.modeling``) and answers with
the same prompt, media budgets and greedy HF ``generate`` as evaluation (``HFRolloutEngine``).

Input (a pandas DataFrame, a list of dicts or one dict), one question per row:

- ``question`` (str, required);
- ``image``: a path under the media root, or a ``data:image/...;base64,`` URI (self-contained requests, used by
  the input example);
- ``video``: a path under the media root (decoded with PyAV at the logged fps / frame budget);
- ``problem_type``: one of the OneThinker problem types (default ``open-ended``); selects the answer
  instruction appended to the question (the contract's prompt rule). No image and no video makes a text-only
  question.

Output: a DataFrame with one row per input row:

- ``response``: the raw generated text;
- ``think`` / ``answer``: the contents of the first ``<think>…</think>`` / ``<answer>…</answer>`` blocks of
  the response ("" when missing);
- ``formatted``: ``<think>{think}</think><answer>{answer}</answer>``, always well-formed, so callers get the
  documented shape even from an untrained model whose raw text lacks the tags;
- ``well_formed``: whether ``response`` itself has the ``<think>…</think><answer>…</answer>`` format (the
  rewards' format check, whitespace around tags tolerated);
- ``answer_ok``: whether ``answer`` has the shape the task's answer schema asks for (an option letter, a
  number, JSON with the task's keys: ``onethinker.contract.schema``).

``think`` and ``answer`` are read as the reward reads a response (``onethinker.contract.answers``: the
whitespace around ``<``, ``>`` and ``/`` is removed first).

Paths are confined to the media root: relative paths are taken from it, and a path that leaves it (``..``, an
absolute path elsewhere, a symbolic link pointing out) is refused with the same message whether or not the
file exists, so a caller can neither read nor probe other files. The root is the working directory the model
is loaded in, unless ``model_config={"media_root": "/srv/media"}`` is given to ``mlflow.pyfunc.load_model``.

``params={"max_new_tokens": n}`` overrides the logged generation budget per call.
The logged model carries ``onethinker`` itself as ``code_paths``, so it loads wherever its pip
requirements are installed.
"""

from __future__ import annotations

import base64
import importlib.metadata
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd

MODEL_ARTIFACT = "hf_model"
"""Name of the artifact holding the Hugging Face folder."""
INPUT_COLUMNS = ("question", "image", "video", "problem_type")
OUTPUT_COLUMNS = ("response", "think", "answer", "formatted", "well_formed", "answer_ok")
DEFAULT_PROBLEM_TYPE = "open-ended"

# distributions the model needs at inference (onethinker itself travels as code_paths)
REQUIREMENTS = (
    "mlflow",
    "torch",
    "transformers",
    "tokenizers",
    "safetensors",
    "numpy",
    "pandas",
    "pillow",
    "av",
    "pyyaml",
)

# --------------------------------------------------------------------------------------------------
# Pure helpers


def hf_folder(model_uri: str, dst: str | Path) -> Path:
    """Download a logged or registered model (``models:/name@champion``, ``models:/name/3``) under ``dst`` and
    return the Hugging Face folder its pyfunc carries as the ``hf_model`` artifact."""
    import mlflow.artifacts
    import yaml

    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(dst)))
    flavor = yaml.safe_load((local / "MLmodel").read_text())["flavors"]["python_function"]
    return local / flavor["artifacts"][MODEL_ARTIFACT]["path"]


def parse_response(text: str, problem_type: str | None = None, data_type: str = "image") -> dict[str, Any]:
    """Split a generated reply into the output columns (see the module docstring). ``answer_ok`` is checked
    against ``problem_type``'s answer schema (absent without a problem type)."""
    from onethinker.contract.answers import format_response, split_response

    parts = split_response(text)
    row: dict[str, Any] = {
        "response": text,
        "think": parts.think,
        "answer": parts.answer,
        "formatted": format_response(parts.think, parts.answer),
        "well_formed": parts.well_formed,
    }
    if problem_type is not None:
        from onethinker.contract.schema import schema_for, shape_problem

        row["answer_ok"] = shape_problem(schema_for(problem_type, data_type), parts.answer) is None
    return row


def _present(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, float) and math.isnan(value):
        return False
    return not (isinstance(value, str) and not value.strip())


def input_rows(model_input: Any) -> list[dict[str, Any]]:
    """Normalise a DataFrame / list of dicts / dict into rows with every input column (None when absent)."""
    if isinstance(model_input, pd.DataFrame):
        records = model_input.to_dict(orient="records")
    elif isinstance(model_input, Mapping):
        records = [dict(model_input)]
    elif isinstance(model_input, Sequence) and not isinstance(model_input, str):
        records = [dict(r) for r in model_input]
    else:
        raise TypeError(f"expected a DataFrame, a list of dicts or a dict, got {type(model_input).__name__}")
    rows = []
    for i, rec in enumerate(records):
        if not _present(rec.get("question")):
            raise ValueError(f"row {i}: 'question' is required")
        row = {k: (rec.get(k) if _present(rec.get(k)) else None) for k in INPUT_COLUMNS}
        if row["image"] is not None and row["video"] is not None:
            raise ValueError(f"row {i}: give an image or a video, not both")
        row["problem_type"] = row["problem_type"] or DEFAULT_PROBLEM_TYPE
        rows.append(row)
    return rows


def image_data_uri(image: Any, fmt: str = "PNG") -> str:
    """A PIL image as a ``data:image/...;base64,`` URI (accepted in the ``image`` column)."""
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return f"data:image/{fmt.lower()};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


def open_image(value: str, min_pixels: int | None, max_pixels: int | None) -> Any:
    """A path or a base64 data URI -> RGB PIL image within the pixel budget (as ``data.media.load_image``)."""
    from PIL import Image

    from onethinker.data.media import MediaError, fit_pixel_budget, load_image

    if not value.startswith("data:"):
        return load_image(value, min_pixels, max_pixels)
    try:
        payload = value.split(",", 1)[1]
        with Image.open(io.BytesIO(base64.b64decode(payload))) as im:
            im.load()
            image = im.convert("RGB")
    except Exception as exc:  # PIL and base64 raise many types
        raise MediaError(f"cannot decode the image data URI: {exc}") from exc
    w, h = fit_pixel_budget(image.width, image.height, min_pixels, max_pixels)
    return image if (w, h) == image.size else image.resize((w, h), Image.BICUBIC)


def pip_requirements() -> list[str]:
    """Pinned requirements from this environment (looked up, not inferred: inference takes seconds)."""
    reqs = []
    for dist in REQUIREMENTS:
        try:
            version = importlib.metadata.version(dist).split("+")[0]  # drop local tags such as +cpu
        except importlib.metadata.PackageNotFoundError:
            reqs.append(dist)
            continue
        reqs.append(f"{dist}=={version}")
    return reqs


def model_signature(max_new_tokens: int) -> Any:
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

    inputs = Schema(
        [
            ColSpec("string", "question"),
            ColSpec("string", "image", required=False),
            ColSpec("string", "video", required=False),
            ColSpec("string", "problem_type", required=False),
        ]
    )
    outputs = Schema(
        [ColSpec("string", c) for c in OUTPUT_COLUMNS[:-2]]
        + [ColSpec("boolean", "well_formed"), ColSpec("boolean", "answer_ok")]
    )
    params = ParamSchema([ParamSpec("max_new_tokens", "long", max_new_tokens)])
    return ModelSignature(inputs=inputs, outputs=outputs, params=params)


def input_example() -> pd.DataFrame:
    """A synthetic image question with the image inlined, so the example runs anywhere."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (64, 64), (255, 255, 255))
    ImageDraw.Draw(image).rectangle((16, 16, 47, 47), fill=(220, 30, 30))
    return pd.DataFrame(
        [
            {
                "question": "What colour is the square?",
                "image": image_data_uri(image),
                "problem_type": "open-ended",
            }
        ]
    )


# --------------------------------------------------------------------------------------------------
# The model


class OneThinkerPyfunc(mlflow.pyfunc.PythonModel):
    """Loads the HF folder once; answers each row greedily (see the module docstring for I/O)."""

    def load_context(self, context: Any) -> None:
        import torch

        from onethinker.generation.hf import HFRolloutEngine
        from onethinker.modeling import load_model, load_processor  # registers the video processor

        cfg = dict(context.model_config or {})
        path = Path(context.artifacts[MODEL_ARTIFACT])
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.processor = load_processor(path)
        self.model = load_model(path, device=device)
        self.engine = HFRolloutEngine(self.model, self.processor, batch_size=int(cfg.get("batch_size", 8)))
        self.style = cfg.get("prompt_style", "compact")
        self.media_root = Path(cfg.get("media_root") or Path.cwd()).resolve()
        self.max_new_tokens = int(cfg.get("max_new_tokens", 256))
        self.media = {
            k: cfg.get(k)
            for k in (
                "image_min_pixels",
                "image_max_pixels",
                "video_min_pixels",
                "video_max_pixels",
                "video_fps",
                "video_max_frames",
            )
        }

    def _example(self, i: int, row: Mapping[str, Any]) -> Any:
        from onethinker.contract.prompts import build_messages, render_prompt
        from onethinker.contract.tasks import canonical_problem_type
        from onethinker.data.examples import Example
        from onethinker.data.media import decode_video, resolve_under

        m = self.media
        images, videos = [], []
        if row["video"] is not None:
            data_type = "video"
            videos.append(
                decode_video(
                    resolve_under(self.media_root, str(row["video"])),
                    float(m["video_fps"] or 2.0),
                    int(m["video_max_frames"] or 128),
                    m["video_min_pixels"],
                    m["video_max_pixels"],
                )
            )
        elif row["image"] is not None:
            data_type = "image"
            image = str(row["image"])
            if not image.startswith("data:"):
                image = str(resolve_under(self.media_root, image))
            images.append(open_image(image, m["image_min_pixels"], m["image_max_pixels"]))
        else:
            data_type = "text"
        problem_type = canonical_problem_type(row["problem_type"])
        prompt = render_prompt(
            str(row["question"]), problem_type, "video" if data_type == "video" else "image", self.style
        )
        messages = build_messages(prompt, [] if data_type == "text" else [data_type])
        return Example(
            messages, images, videos, problem_type, data_type, str(i), problem=str(row["question"])
        )

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        from onethinker.generation.base import SamplingParams

        rows = input_rows(model_input)
        max_new = int((params or {}).get("max_new_tokens") or self.max_new_tokens)
        examples = [self._example(i, row) for i, row in enumerate(rows)]
        completions = self.engine.generate(examples, SamplingParams(greedy=True, max_new_tokens=max_new))
        rows = [
            parse_response(c[0].text, ex.problem_type, ex.data_type if ex.data_type != "text" else "image")
            for ex, c in zip(examples, completions, strict=True)
        ]
        return pd.DataFrame(rows, columns=list(OUTPUT_COLUMNS))
