"""Typed configs: every shipped params file loads; bad keys and values fail naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from onethinker.config import ConfigError, PrepareConfig, load_params, to_dict

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted(
    [REPO / "params.yaml", *REPO.glob("infra/**/params*.yaml"), *REPO.glob("tests/**/params*.yaml")]
)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(REPO)))
def test_every_shipped_params_file_loads(path: Path) -> None:
    params = load_params(path)
    assert params.prepare.train_per_task >= 1
    # round trip: the loaded values written back load to the same config
    again = load_params(path, overrides=None)
    assert to_dict(again.prepare) == to_dict(params.prepare)


def _write(tmp_path: Path, data: dict) -> Path:
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_unknown_key_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"prepare\.imge_size"):
        load_params(_write(tmp_path, {"prepare": {"imge_size": 64}}))


def test_unknown_nested_key_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"prepare\.video\.fsp"):
        load_params(_write(tmp_path, {"prepare": {"video": {"fsp": 4}}}))


def test_unknown_section_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown section 'prepair'"):
        load_params(_write(tmp_path, {"prepair": {}}))


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"prepare": {"image_size": "big"}}, "prepare.image_size: expected int"),
        ({"prepare": {"train_per_task": 0}}, "prepare.train_per_task"),
        ({"prepare": {"source": "web"}}, "prepare.source: must be one of"),
        ({"prepare": {"sft_fraction": 1.5}}, "prepare.sft_fraction"),
        ({"prepare": {"video": {"fps": 4, "event_step_s": 0.3}}}, "prepare.video.event_step_s"),
        ({"media": {"video_fps": -1}}, "media.video_fps"),
        ({"media": {"image_min_pixels": 9000, "image_max_pixels": 100}}, "media.image_min_pixels"),
        ({"validate": {"check_media": "yes"}}, "validate.check_media: expected true/false"),
        ({"prompt": {"style": "long"}}, "prompt.style"),
        ({"prepare": {"source": "onethinker"}}, "prepare.onethinker.rl"),
    ],
)
def test_bad_values_fail_naming_the_key(tmp_path: Path, data: dict, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_params(_write(tmp_path, data))
    assert key in str(err.value)


def test_event_grid_must_fall_on_sampled_frames(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="media.video_fps"):
        load_params(_write(tmp_path, {"media": {"video_fps": 3.0}}))


def test_overrides_apply_and_are_checked(tmp_path: Path) -> None:
    p = _write(tmp_path, {})
    assert load_params(p, {"prepare.seed": 7}).prepare.seed == 7
    with pytest.raises(ConfigError, match="prepare.seed"):
        load_params(p, {"prepare.seed": "seven"})


def test_defaults_match_dataclass() -> None:
    assert load_params(None).prepare == PrepareConfig()


def test_a_missing_params_file_is_an_error() -> None:
    """A mistyped --params must not train with the defaults (and move a good checkpoint aside as stale)."""
    with pytest.raises(ConfigError, match="params file not found: /nonexistent/params.yaml"):
        load_params(Path("/nonexistent/params.yaml"))


def test_an_error_names_its_source(tmp_path: Path) -> None:
    p = _write(tmp_path, {"prepare": {"seed": "x"}, "grpo": {"n": 4}})
    with pytest.raises(ConfigError, match=rf"^{p}: prepare.seed: expected int"):
        load_params(p)
    p = _write(tmp_path, {"grpo": {"n": 4}})
    with pytest.raises(ConfigError, match=r"^--set prepare.seed='x': prepare.seed: expected int") as err:
        load_params(p, {"prepare.seed": "x"})
    assert str(p) not in str(err.value)
    with pytest.raises(ConfigError, match=r"^--set grpo.nn=3: unknown key 'grpo.nn'"):
        load_params(p, {"grpo.nn": 3})
    # a cross-field check about an overridden key names --set too; one about the file's keys names the file
    with pytest.raises(
        ConfigError, match=r"^--set grpo.micro_batch_size=3: grpo.micro_batch_size: must divide"
    ):
        load_params(p, {"grpo.micro_batch_size": 3})


GRPO_BAD = [
    ({"max_grad_norm": -1.0}, "grpo.max_grad_norm", "flip the gradient"),
    ({"max_grad_norm": 0.0}, "grpo.max_grad_norm", "positive"),
    ({"keep_checkpoints": -1}, "grpo.keep_checkpoints", ">= 1"),
    ({"keep_checkpoints": 0}, "grpo.keep_checkpoints", ">= 1"),
    ({"log_every": 0}, "grpo.log_every", ">= 1"),
    ({"generation_batch_size": 0}, "grpo.generation_batch_size", ">= 1"),
    ({"engine": "tgi"}, "grpo.engine", "must be one of \\['hf', 'vllm'\\], got 'tgi'"),
    ({"global_batch_size": 3, "n": 8, "micro_batch_size": 5}, "grpo.micro_batch_size", "must divide"),
    ({"global_batch_size": 8, "n": 8, "micro_batch_size": 128}, "grpo.micro_batch_size", "must divide"),
    ({"weight_decay": -0.1}, "grpo.weight_decay", ">= 0"),
    ({"warmup_ratio": 1.0}, "grpo.warmup_ratio", r"\[0, 1\)"),
    ({"entropy_coef": -1.0}, "grpo.entropy_coef", ">= 0"),
    ({"max_prompt_length": 0}, "grpo.max_prompt_length", ">= 1"),
    ({"rollout_table_per_task": -1}, "grpo.rollout_table_per_task", ">= 0"),
    ({"heldout_per_task": -1}, "grpo.heldout_per_task", ">= 0"),
]


@pytest.mark.parametrize(("values", "key", "words"), GRPO_BAD, ids=[k for _, k, _ in GRPO_BAD])
def test_grpo_settings_are_checked_at_load(tmp_path: Path, values: dict, key: str, words: str) -> None:
    base = {"rollout_batch_size": 16, "global_batch_size": 8, "n": 8, "micro_batch_size": 32}
    with pytest.raises(ConfigError, match=rf"{key}: .*{words}"):
        load_params(_write(tmp_path, {"grpo": {**base, **values}}))


def test_known_engines_load(tmp_path: Path) -> None:
    from onethinker.generation.base import ENGINES

    assert {"hf", "vllm"} <= set(ENGINES)
    for engine in ENGINES:
        assert load_params(_write(tmp_path, {"grpo": {"engine": engine}})).grpo.engine == engine


def test_reward_section(tmp_path: Path) -> None:
    from onethinker.rewards.options import RewardConfig

    assert load_params(None).reward == RewardConfig()
    assert load_params(_write(tmp_path, {"reward": {"math_strict": False}})).reward.math_strict is False
    with pytest.raises(ConfigError, match="reward.timeout_s"):
        load_params(_write(tmp_path, {"reward": {"timeout_s": 0}}))


def test_exponent_floats_without_a_dot_are_numbers(tmp_path: Path) -> None:
    """PyYAML reads ``3e-5`` as a string (YAML 1.1 wants ``3.0e-5``); a float field takes both."""
    p = _write(tmp_path, {"media": {"video_fps": "2e0"}})
    assert load_params(p).media.video_fps == 2.0
    assert load_params(p, {"media.video_fps": "2E+0"}).media.video_fps == 2.0
    with pytest.raises(ConfigError, match="media.video_fps: expected a number"):
        load_params(p, {"media.video_fps": "2e"})
