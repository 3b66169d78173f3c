"""The base model builder: a tiny real Qwen3-VL round-trips through a plain HF folder for image and video inputs.

The model is built once per module from the default config on a small corpus; every test reads that folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import (
    AutoModelForImageTextToText,
    AutoProcessor,
    Qwen2VLImageProcessorPil,
    Qwen3VLForConditionalGeneration,
    Qwen3VLProcessor,
)

from onethinker.config import ConfigError, from_dict, load_params
from onethinker.data.media import VideoClip, VideoInfo
from onethinker.modeling import (
    BaseModelConfig,
    Qwen3VLVideoProcessor,
    build_base_model,
    build_model,
    collate,
    count_parameters,
    encode_chat,
    load_model,
    load_processor,
    model_inputs,
    video_inputs,
)
from onethinker.modeling import builder as builder_module
from onethinker.modeling.inputs import IGNORE_INDEX
from onethinker.modeling.tokenizer import IM_END, SPECIAL_TOKENS, assistant_token_mask
from onethinker.modeling.video_processor import resize_frames

WORDS = ["red", "green", "blue", "yellow", "square", "circle", "triangle", "left", "right", "top", "bottom"]


def _corpus(n: int = 400) -> list[str]:
    rng = np.random.default_rng(0)
    lines = []
    for _ in range(n):
        words = " ".join(rng.choice(WORDS, size=8))
        box = [int(v) for v in rng.integers(0, 1001, size=4)]
        lines.append(
            f"{words}? <think>I see {rng.integers(1, 4)} objects.</think>"
            f'<answer>{{"boxes": {box}}}</answer> 1000 500 250'
        )
    return lines


def _image(seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (64, 64, 3), dtype=np.uint8))


def _clip(seed: int = 0, frames: int = 8, fps: float = 2.0) -> VideoClip:
    data = np.random.default_rng(seed).integers(0, 256, (frames, 64, 64, 3), dtype=np.uint8)
    info = VideoInfo(duration=frames / fps, fps=fps, num_frames=frames, width=64, height=64)
    return VideoClip(frames=data, timestamps=np.arange(frames) / fps, sample_fps=fps, info=info)


IMAGE_CHAT = [
    {"role": "system", "content": "You are a careful observer."},
    {
        "role": "user",
        "content": [{"type": "image"}, {"type": "text", "text": "Which colour? Options: A red B blue"}],
    },
    {
        "role": "assistant",
        "content": [{"type": "text", "text": "<think>It is red.</think><answer>A</answer>"}],
    },
]
VIDEO_CHAT = [
    {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "How many squares?"}]},
    {"role": "assistant", "content": "<think>Two squares.</think><answer>2</answer>"},
]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(min(2, torch.get_num_threads()))
    return build_base_model(BaseModelConfig(), _corpus(), tmp_path_factory.mktemp("base") / "base")


@pytest.fixture(scope="module")
def processor(built: Path):
    return load_processor(built)


@pytest.fixture(scope="module")
def model(built: Path):
    return load_model(built)


# --------------------------------------------------------------------------------------------------
# The folder


def test_folder_is_a_plain_hf_folder_with_safetensors_only(built: Path) -> None:
    names = {p.name for p in built.iterdir()}
    assert {
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "processor_config.json",
        "chat_template.jinja",
    } <= names
    weights = [
        p.name
        for p in built.rglob("*")
        if p.suffix in {".bin", ".pt", ".pth", ".ckpt", ".pkl", ".safetensors"}
    ]
    assert weights == ["model.safetensors"]
    assert not built.with_name(built.name + ".tmp").exists()


def test_reloads_with_the_auto_classes(built: Path) -> None:
    processor = AutoProcessor.from_pretrained(built)
    model = AutoModelForImageTextToText.from_pretrained(built)
    assert isinstance(processor, Qwen3VLProcessor)
    assert isinstance(processor.image_processor, Qwen2VLImageProcessorPil)
    assert isinstance(processor.video_processor, Qwen3VLVideoProcessor)
    assert isinstance(model, Qwen3VLForConditionalGeneration)
    tok, cfg = processor.tokenizer, model.config
    assert cfg.text_config.vocab_size == len(tok) <= BaseModelConfig().vocab_size
    assert cfg.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>")
    assert cfg.video_token_id == tok.convert_tokens_to_ids("<|video_pad|>")
    assert cfg.vision_start_token_id == tok.convert_tokens_to_ids("<|vision_start|>")
    assert cfg.vision_end_token_id == tok.convert_tokens_to_ids("<|vision_end|>")
    assert model.generation_config.eos_token_id == [tok.convert_tokens_to_ids(IM_END), tok.pad_token_id]
    assert (
        cfg.text_config.hidden_size,
        cfg.text_config.num_hidden_layers,
        cfg.text_config.intermediate_size,
    ) == (128, 2, 384)
    assert (cfg.vision_config.depth, cfg.vision_config.hidden_size, cfg.vision_config.patch_size) == (
        2,
        64,
        16,
    )
    assert model.lm_head.weight is model.model.language_model.embed_tokens.weight  # tied, as configured
    assert 0.5e6 < count_parameters(model) < 2e6


def test_weights_are_seeded(processor) -> None:
    cfg = BaseModelConfig()
    a, b = build_model(cfg, processor.tokenizer), build_model(cfg, processor.tokenizer)
    c = build_model(BaseModelConfig(seed=1), processor.tokenizer)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


# --------------------------------------------------------------------------------------------------
# Tokenizer and chat template


def test_tokenizer_keeps_specials_whole_and_numbers_grouped(processor) -> None:
    tok = processor.tokenizer
    for special in (*SPECIAL_TOKENS, "<think>", "</think>", "<answer>", "</answer>"):
        assert len(tok(special, add_special_tokens=False)["input_ids"]) == 1, special
    pieces = tok.tokenize("[250, 500, 1000]")
    assert "Ġ1000" in pieces and "Ġ500" in pieces  # frequent numbers (with their space) are single tokens
    text = '<think>I see 3 objects.</think><answer>{"boxes": [1, 22, 333, 1000]}</answer>'
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids, skip_special_tokens=True) == text  # the reasoning tags are not special


def test_template_layout(processor) -> None:
    text = processor.apply_chat_template(IMAGE_CHAT[:2], add_generation_prompt=True)
    assert text == (
        "<|im_start|>system\nYou are a careful observer.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Which colour? Options: A red B blue<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert "<|video_pad|>" in processor.apply_chat_template(VIDEO_CHAT[:1])
    assert "<|vision_start|><|video_pad|>" not in processor.apply_chat_template(VIDEO_CHAT[:1])


def test_assistant_mask_covers_exactly_the_reply(processor) -> None:
    chat = [
        *IMAGE_CHAT,
        {"role": "user", "content": [{"type": "text", "text": "Sure?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "<answer>A</answer>"}]},
    ]
    enc = encode_chat(processor, chat, images=[_image()], return_assistant_mask=True)
    ids, mask, labels = enc["input_ids"][0], enc["assistant_masks"][0], enc["labels"][0]
    tok = processor.tokenizer
    # Hand-built expectation: the two replies, each with its <|im_end|>, and nothing else.
    replies = [
        tok(r, add_special_tokens=False)["input_ids"]
        for r in ("<think>It is red.</think><answer>A</answer><|im_end|>", "<answer>A</answer><|im_end|>")
    ]
    picked = ids[mask.bool()].tolist()
    assert picked == replies[0] + replies[1]
    assert (
        tok.decode(picked)
        == "<think>It is red.</think><answer>A</answer><|im_end|><answer>A</answer><|im_end|>"
    )
    # the template's {% generation %} spans agree with the token-level reference
    assert mask.tolist() == assistant_token_mask(ids.tolist(), tok)
    assert torch.equal(labels[mask.bool()], ids[mask.bool()])
    assert (labels[~mask.bool()] == IGNORE_INDEX).all()
    # the image tokens, system and user turns and the assistant headers are all outside the mask
    image_id = tok.convert_tokens_to_ids("<|image_pad|>")
    assert (ids == image_id).sum() == 4 and not mask[ids == image_id].any()


def test_assistant_mask_survives_video_expansion(processor) -> None:
    enc = encode_chat(processor, VIDEO_CHAT, videos=[_clip()], return_assistant_mask=True)
    ids, mask = enc["input_ids"][0], enc["assistant_masks"][0]
    assert (
        processor.tokenizer.decode(ids[mask.bool()])
        == "<think>Two squares.</think><answer>2</answer><|im_end|>"
    )
    assert mask.tolist() == assistant_token_mask(ids.tolist(), processor.tokenizer)


# --------------------------------------------------------------------------------------------------
# Image and video inputs through the reloaded model


def test_image_forward_and_generate(processor, model) -> None:
    enc = encode_chat(processor, IMAGE_CHAT, images=[_image()], return_assistant_mask=True)
    assert enc["image_grid_thw"].tolist() == [[1, 4, 4]]  # 64x64, patch 16 -> 4x4 patches -> 4 tokens
    assert enc["mm_token_type_ids"].sum() == 4
    with torch.no_grad():
        out = model(**model_inputs(enc, with_labels=True))
    assert out.logits.shape == (1, enc["input_ids"].shape[1], model.config.text_config.vocab_size)
    assert torch.isfinite(out.loss)
    prompt = encode_chat(processor, IMAGE_CHAT[:2], images=[_image()], add_generation_prompt=True)
    gen = model.generate(**model_inputs(prompt), max_new_tokens=6, do_sample=False)
    assert (
        gen.shape[0] == 1 and prompt["input_ids"].shape[1] < gen.shape[1] <= prompt["input_ids"].shape[1] + 6
    )
    assert torch.equal(gen[0, : prompt["input_ids"].shape[1]], prompt["input_ids"][0])


def test_video_forward_and_generate(processor, model) -> None:
    clip = _clip(frames=8, fps=2.0)
    enc = encode_chat(processor, VIDEO_CHAT, videos=[clip], return_assistant_mask=True)
    assert enc["video_grid_thw"].tolist() == [[4, 4, 4]]  # 8 frames / temporal patch 2, 4x4 patches each
    text = processor.tokenizer.decode(enc["input_ids"][0])
    # frame pairs (0, 0.5), (1, 1.5), ... are stamped with their mean time
    assert [f"<{t:.1f} seconds>" in text for t in (0.25, 1.25, 2.25, 3.25)] == [True] * 4
    assert (enc["mm_token_type_ids"] == 2).sum() == 16
    with torch.no_grad():
        out = model(**model_inputs(enc, with_labels=True))
    assert torch.isfinite(out.loss)
    prompt = encode_chat(processor, VIDEO_CHAT[:1], videos=[clip], add_generation_prompt=True)
    gen = model.generate(**model_inputs(prompt), max_new_tokens=6, do_sample=False)
    assert prompt["input_ids"].shape[1] < gen.shape[1] <= prompt["input_ids"].shape[1] + 6


def test_video_metadata_reproduces_clip_timestamps() -> None:
    # 4 fps source sampled at 2 fps: frames 0, 2, 4, ... of the source
    clip = _clip(frames=6, fps=2.0)
    clip = VideoClip(
        frames=clip.frames,
        timestamps=np.arange(6) * 0.5,
        sample_fps=2.0,
        info=VideoInfo(duration=3.0, fps=4.0, num_frames=12, width=64, height=64),
    )
    frames, meta = video_inputs(clip)
    assert frames.shape == (6, 64, 64, 3)
    assert meta.frames_indices == [0, 2, 4, 6, 8, 10] and meta.fps == 4.0 and meta.total_num_frames == 12
    assert meta.timestamps == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]


def test_left_padded_batch_generates_like_single_examples(processor, model) -> None:
    prompts = [
        encode_chat(processor, IMAGE_CHAT[:2], images=[_image(1)], add_generation_prompt=True),
        encode_chat(processor, VIDEO_CHAT[:1], videos=[_clip(2)], add_generation_prompt=True),
    ]
    batch = collate(prompts, processor.tokenizer.pad_token_id, padding_side="left")
    width = batch["input_ids"].shape[1]
    assert batch["attention_mask"][:, -1].all() and not batch["attention_mask"][0, 0]
    assert set(batch) >= {"pixel_values", "image_grid_thw", "pixel_values_videos", "video_grid_thw"}
    with torch.no_grad():
        batch_logits = model(**model_inputs(batch)).logits[:, -1]  # (2, V): next-token logits of each prompt
        for i, p in enumerate(prompts):
            single_logits = model(**model_inputs(p)).logits[0, -1]
            torch.testing.assert_close(batch_logits[i], single_logits, atol=1e-4, rtol=1e-4)
    gen = model.generate(
        **model_inputs(batch), max_new_tokens=5, do_sample=False, min_new_tokens=5, eos_token_id=None
    )
    for i, p in enumerate(prompts):
        single = model.generate(
            **model_inputs(p), max_new_tokens=5, do_sample=False, min_new_tokens=5, eos_token_id=None
        )
        assert gen[i, width:].tolist() == single[0, p["input_ids"].shape[1] :].tolist()


def test_right_padded_batch_pads_labels_with_ignore_index(processor) -> None:
    examples = [
        encode_chat(processor, IMAGE_CHAT, images=[_image()], return_assistant_mask=True),
        encode_chat(processor, VIDEO_CHAT, videos=[_clip()], return_assistant_mask=True),
    ]
    batch = collate(examples, processor.tokenizer.pad_token_id)
    n0 = examples[0]["input_ids"].shape[1]
    assert n0 < batch["input_ids"].shape[1]
    assert (batch["input_ids"][0, n0:] == processor.tokenizer.pad_token_id).all()
    assert (batch["labels"][0, n0:] == IGNORE_INDEX).all() and not batch["attention_mask"][0, n0:].any()


def test_video_processor_matches_image_processor_on_a_still_video(processor) -> None:
    # Two identical frames: the video path (plain-torch normalise + patchify) must give the image path's patches.
    image = _image(3)
    frames = np.stack([np.asarray(image)] * 2)
    video = processor.video_processor(videos=[frames], do_sample_frames=False, return_tensors="pt")
    still = processor.image_processor(images=[image], return_tensors="pt")
    assert video["video_grid_thw"].tolist() == still["image_grid_thw"].tolist() == [[1, 4, 4]]
    torch.testing.assert_close(video["pixel_values_videos"], still["pixel_values"].float(), atol=1e-5, rtol=0)
    # channels-first frames of another size are resized into the budget
    big = np.random.default_rng(0).integers(0, 256, (4, 3, 96, 128), dtype=np.uint8)
    out = processor.video_processor(videos=[big], do_sample_frames=False, return_tensors="pt")
    t, h, w = out["video_grid_thw"][0].tolist()
    assert t == 2 and h * w * 16 * 16 <= 64 * 64 and h % 2 == w % 2 == 0


def test_plain_torch_resize_matches_pil_bicubic() -> None:
    y, x = np.mgrid[0:96, 0:128]
    smooth = np.stack([x * 2, y * 2, x + y], -1).astype(float)
    noisy = (smooth + np.random.default_rng(0).normal(0, 20, smooth.shape)).clip(0, 255).astype(np.uint8)
    reference = np.asarray(Image.fromarray(noisy).resize((64, 48), Image.BICUBIC)).astype(float)
    ours = resize_frames(torch.from_numpy(noisy).permute(2, 0, 1)[None], 48, 64)[0].permute(1, 2, 0).numpy()
    diff = np.abs(reference - ours.astype(float))
    assert ours.dtype == np.uint8 and diff.mean() < 0.5 and diff.max() <= 3


# --------------------------------------------------------------------------------------------------
# Loading a checkpoint, remote code, config checks


def test_name_or_path_loads_and_resaves_a_checkpoint(built: Path, tmp_path: Path, model) -> None:
    out = build_base_model(BaseModelConfig(name_or_path=str(built)), [], tmp_path / "copy")
    copy = load_model(out)
    original = model.state_dict()
    assert all(torch.equal(v, original[k]) for k, v in copy.state_dict().items())
    assert (out / "model.safetensors").exists() and (out / "chat_template.jinja").exists()


def test_trust_remote_code_only_when_asked(built: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict] = []

    class Recorder:
        @staticmethod
        def from_pretrained(path, **kwargs):
            calls.append(kwargs)
            raise RuntimeError("stop")

    config_calls: list[dict] = []

    class ConfigRecorder:  # load_model reads the config first to pick the model class
        @staticmethod
        def from_pretrained(path, **kwargs):
            config_calls.append(kwargs)
            return types.SimpleNamespace(vision_config={})

    monkeypatch.setattr(builder_module, "AutoModelForImageTextToText", Recorder)
    monkeypatch.setattr(builder_module, "AutoProcessor", Recorder)
    monkeypatch.setattr(builder_module, "AutoConfig", ConfigRecorder)
    for cfg in (
        BaseModelConfig(name_or_path="some/model"),
        BaseModelConfig(name_or_path="x", trust_remote_code=True),
    ):
        with pytest.raises(RuntimeError):
            build_base_model(cfg, [], built.parent / "never")
        with pytest.raises(RuntimeError):
            load_model(cfg.name_or_path, trust_remote_code=cfg.trust_remote_code)
    assert [c["trust_remote_code"] for c in calls] == [False, False, True, True]
    assert calls[1]["use_safetensors"] is True and calls[3]["use_safetensors"] is True
    assert [c["trust_remote_code"] for c in config_calls] == [False, True]


def test_remote_code_in_a_folder_is_not_run(built: Path, tmp_path: Path) -> None:
    folder = tmp_path / "with_code"
    folder.mkdir()
    for p in built.iterdir():
        (folder / p.name).write_bytes(p.read_bytes())
    marker = tmp_path / "ran"
    (folder / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForImageTextToText": "evil.Model", "AutoConfig": "evil.Config"}
    (folder / "config.json").write_text(json.dumps(config))
    assert isinstance(load_model(folder), Qwen3VLForConditionalGeneration)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"text": {"num_key_value_heads": 3}}, "base_model.text.num_key_value_heads"),
        ({"text": {"head_dim": 7}}, "base_model.text.head_dim"),
        ({"vision": {"deepstack_visual_indexes": [5]}}, "base_model.vision.deepstack_visual_indexes[0]"),
        ({"vision": {"num_heads": 3}}, "base_model.vision.num_heads"),
        ({"vision": {"num_position_embeddings": 50}}, "base_model.vision.num_position_embeddings"),
        ({"image_min_pixels": 8192}, "base_model.image_min_pixels"),
        ({"video_max_pixels": 512, "video_min_pixels": 256}, "base_model.video_max_pixels"),
        ({"vocab_size": 100}, "base_model.vocab_size"),
        ({"text": {"hidden_size": "big"}}, "base_model.text.hidden_size"),
        ({"txt": {}}, "base_model.txt"),
    ],
)
def test_bad_config_names_the_key(data: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        from_dict(BaseModelConfig, data, "base_model")


def test_processor_builds_when_transformers_was_re_imported() -> None:
    # transformers re-executes its __init__ (direct_transformers_import), so the module its processors use to
    # look up VideoProcessorMixin can differ from sys.modules["transformers"]; registration must cover both.
    code = (
        "import os, sys\n"
        "import transformers.processing_utils as pu\n"
        "import transformers\n"
        "from transformers.utils.import_utils import direct_transformers_import\n"
        "direct_transformers_import(os.path.dirname(transformers.__file__))\n"
        "assert pu.transformers_module is not sys.modules['transformers']\n"
        "from onethinker.modeling import BaseModelConfig, build_processor, train_tokenizer\n"
        "print(type(build_processor(BaseModelConfig(), train_tokenizer(['a b 1 2'] * 10, 512))).__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split()[-1] == "Qwen3VLProcessor"


def test_config_module_stays_light() -> None:
    # load_params imports onethinker.modeling.config for every stage: it must not pull in torch/transformers.
    code = (
        "import sys, onethinker.modeling.config; print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_params_file_section(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("base_model:\n  seed: 7\n  text:\n    num_hidden_layers: 3\n")
    cfg = load_params(params).base_model
    assert isinstance(cfg, BaseModelConfig) and cfg.seed == 7 and cfg.text.num_hidden_layers == 3
    params.write_text("base_model:\n  vision:\n    depth: 1\n    deepstack_visual_indexes: [0, 1]\n")
    with pytest.raises(ConfigError, match=r"base_model\.vision\.deepstack_visual_indexes\[1\]"):
        load_params(params)


def test_a_saved_model_folder_does_not_record_how_it_was_loaded(built: Path, tmp_path: Path) -> None:
    """Issue 16: HF_HUB_OFFLINE=1 (the Makefile's) made transformers save "local_files_only": true into the
    tokenizer config, so `make pipeline` and a plain `dvc repro` wrote different bytes for the same model."""
    from onethinker.modeling import load_model
    from onethinker.training.model_utils import LOADING_KWARGS, save_hf_folder

    model = load_model(built)
    saved = {}
    processor = AutoProcessor.from_pretrained(str(built))
    assert "local_files_only" in processor.tokenizer.init_kwargs  # what used to be saved
    for offline in (True, False):  # as loaded with HF_HUB_OFFLINE=1 and without it
        processor.tokenizer.init_kwargs["local_files_only"] = offline
        out = save_hf_folder(model, processor, tmp_path / f"offline-{offline}")
        assert processor.tokenizer.init_kwargs.get("local_files_only") is offline  # restored after the save
        saved[offline] = {p.name: p.read_bytes() for p in sorted(out.iterdir())}
    assert saved[True] == saved[False]
    config = json.loads(saved[True]["tokenizer_config.json"])
    assert not set(LOADING_KWARGS) & set(config), config
    assert str(tmp_path) not in b"".join(saved[True].values()).decode("utf-8", "replace")
