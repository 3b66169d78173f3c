"""EMA-GRPO trainer: multi-task RL over every OneThinker task from the SFT checkpoint.

One step, read top to bottom in ``GRPOTrainer.step``:

1. sample ``rollout_batch_size`` prompts (a deterministic stream, resumable by position); a prompt longer than
   ``max_prompt_length`` tokens is skipped (never generated nor trained on), counted and named in a warning;
2. generate ``n`` completions per prompt through a rollout engine (``grpo.engine``: HF ``generate`` on the
   policy itself, or vLLM colocated in this process, which gets the new weights after every update and
   sleeps while the policy trains);
3. score them with ``onethinker.rewards.compute_score`` (a malformed completion scores 0 and is counted, and so
   is one whose grading ran over the reward's time or size budget: ``train/timeouts``);
4. online filtering: drop groups whose mean accuracy is outside [filter_low, filter_high]; sample more
   prompts until the batch is full or ``max_filter_retries`` extra rounds are spent (reported);
5. advantages with the configured estimator (``onethinker.rl.advantages``): for ``ema_grpo``, group-mean
   centred rewards divided by a per-task EMA of the reward std, the EMA state all-reduced across ranks and
   saved in checkpoints (the released code keeps it in a process-local global that resets on resume);
6. old log-probs from the policy before the update, then ``ppo_epochs`` passes of PPO-clipped updates over
   mini-batches of ``global_batch_size`` prompts, micro-batched with gradient accumulation and clipping; a
   micro-batch never straddles two updates (``update_windows``), so each sequence is trained once per epoch.

What makes a step cheap without changing what it computes (``tests/rl/test_grpo_speed.py``,
``tests/generation/test_hf_decoding.py``; ``make bench-trl`` times it against TRL's ``GRPOTrainer``): the HF
engine prefills each prompt once for its n samples and drops finished rows while it decodes; the first
update of a single-epoch step is exactly on-policy, so its old log-probs are the training forward's own,
detached (no separate forward); micro-batches are grouped by length within each update (less padding); and
the LM head and softmax run only on positions that predict a response token.

Departures from the released recipe: rollouts and updates share one process (no Ray), the HF engine is the
CPU default, and every per-task statistic is logged to MLflow each step.

The policy may also be a text-only causal LM (a folder with a tokenizer and no processor): prompts then
carry the question text without their media. This is how the vLLM engine is tested on CPU, where vLLM
cannot run Qwen3-VL.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from onethinker.config import MediaConfig
from onethinker.contract.manifest import RootedRecord
from onethinker.contract.prompts import PromptStyle
from onethinker.contract.tasks import TASK_SLUGS, task_key
from onethinker.data.examples import Example, prompt_example
from onethinker.generation import make_engine
from onethinker.generation.base import Completion, RolloutEngine, SamplingParams
from onethinker.generation.hf import HFRolloutEngine, encode_prompt, tokenizer_of
from onethinker.rewards.options import RewardConfig
from onethinker.rewards.parsing import TIMEOUT as TIMEOUT_REASON
from onethinker.rewards.registry import fallbacks
from onethinker.rl.advantages import EMAState, compute_advantages
from onethinker.rl.config import GRPOConfig
from onethinker.rl.loss import PolicyLoss
from onethinker.training import checkpoint as ckpt
from onethinker.training.engine import OptimConfig, build_engine
from onethinker.training.model_utils import (
    device,
    freeze_vision,
    pin_cpu_threads,
    seed_everything,
    use_bf16,
    use_gradient_checkpointing,
)

Logger = Callable[[dict[str, float], int], None]
log = logging.getLogger(__name__)


@dataclass
class Sequence:
    """One completion with its prompt, group and score."""

    group: int
    example: Example
    encoded: dict[str, torch.Tensor]  # the prompt, from encode_chat(add_generation_prompt=True)
    completion: Completion
    score: dict[str, Any]
    response_ids: list[int] = field(default_factory=list)
    advantage: float = 0.0


def response_token_ids(completion: Completion, end_id: int, max_len: int) -> list[int]:
    """The tokens the policy produced, including the end-of-turn token when it stopped on its own."""
    ids = list(completion.token_ids)[:max_len]
    if completion.finished and len(ids) < max_len:
        ids.append(end_id)
    return ids or [end_id]


def build_batch(seqs: list[Sequence], pad_id: int) -> dict[str, torch.Tensor]:
    """Prompt + response, right-padded; ``response_mask`` marks response tokens in the shifted label space.

    Only positions from ``logits_start`` (the first position that predicts a response token in any row: the
    shortest prompt's last token) on can carry a response token, so the per-token tensors start there and
    ``token_logprobs`` computes the LM head and the softmax there only (T = L - 1 - logits_start).

    Returns input_ids, attention_mask, mm_token_type_ids (B, L); visual tensors; logits_start (); response_mask
    (B, T), targets (B, T) (the token each position predicts).
    """
    from onethinker.modeling.inputs import collate

    examples, masks = [], []
    for s in seqs:
        prompt = s.encoded
        p_len = prompt["input_ids"].shape[-1]
        resp = torch.tensor([s.response_ids], dtype=torch.long)  # (1, R)
        ex = {k: v for k, v in prompt.items()}
        ex["input_ids"] = torch.cat([prompt["input_ids"], resp], dim=1)  # (1, P+R)
        ex["attention_mask"] = torch.cat([prompt["attention_mask"], torch.ones_like(resp)], dim=1)
        if "mm_token_type_ids" in prompt:  # multimodal models (a text-only causal LM has none)
            ex["mm_token_type_ids"] = torch.cat([prompt["mm_token_type_ids"], torch.zeros_like(resp)], dim=1)
        mask = torch.zeros(1, p_len + resp.shape[1], dtype=torch.long)
        mask[0, p_len:] = 1  # (1, P+R): 1 on response tokens
        ex["labels"] = mask  # carried through collate's padding, turned into the response mask below
        examples.append(ex)
        masks.append(mask)
    batch = collate(examples, pad_id)
    label_mask = batch.pop("labels").clamp_min(0)  # (B, L); padding came in as -100
    start = min(s.encoded["input_ids"].shape[-1] for s in seqs) - 1
    batch["logits_start"] = torch.tensor(start)
    batch["response_mask"] = label_mask[
        :, start + 1 :
    ].float()  # (B, T): position start + t predicts token t+1
    batch["targets"] = batch["input_ids"][:, start + 1 :]  # (B, T)
    return batch


def build_shared_batch(seqs: list[Sequence], pad_id: int) -> dict[str, torch.Tensor]:
    """The shared-prefix layout of a micro-batch: each distinct prompt once (left-padded, so its responses
    follow it directly), each response once (right-padded). ``token_logprobs`` runs the prompts' forward once
    and the n responses of a prompt on copies of its KV cache: the numbers of a forward over every prompt +
    response, without computing a prompt n times.

    Returns prompt_* (the model inputs of the U distinct prompts, ``prompt_input_ids`` (U, P) ...); copies (B,)
    (the prompt of each row); response_mask (B, R), targets (B, R) (the response tokens: position 0 is predicted
    by the prompt's last token, position k by response token k - 1).
    """
    from onethinker.modeling.inputs import collate

    unique: list[dict[str, torch.Tensor]] = []
    copies: list[int] = []
    for s in seqs:
        k = next((i for i, u in enumerate(unique) if u is s.encoded), None)
        if k is None:
            unique.append(s.encoded)
            k = len(unique) - 1
        copies.append(k)
    prompts = collate(unique, pad_id, padding_side="left")
    batch = {f"prompt_{k}": v for k, v in prompts.items()}
    width = max(len(s.response_ids) for s in seqs)
    targets = torch.full((len(seqs), width), pad_id, dtype=torch.long)  # (B, R)
    mask = torch.zeros(len(seqs), width)  # (B, R)
    for r, s in enumerate(seqs):
        targets[r, : len(s.response_ids)] = torch.tensor(s.response_ids, dtype=torch.long)
        mask[r, : len(s.response_ids)] = 1.0
    batch.update(copies=torch.tensor(copies), targets=targets, response_mask=mask)
    return batch


def kept_logits(model: torch.nn.Module, keep: torch.Tensor, **inputs: Any) -> torch.Tensor:
    """Logits (N, V) of the ``True`` positions of ``keep`` (B, L), row-major. Transformers releases with
    ``slice_logits_to_keep`` (5.23, our pin) take a boolean ``logits_to_keep`` and run the LM head on those
    positions only; older ones (5.19, vLLM's pin) do not, so they get every position's logits and the same
    rows are selected here (the same numbers, at the cost of the full LM head)."""
    if _boolean_logits_to_keep():
        return model(**inputs, logits_to_keep=keep).logits
    return model(**inputs).logits[keep]


@functools.cache
def _boolean_logits_to_keep() -> bool:
    import transformers.modeling_utils as mu

    return hasattr(mu, "slice_logits_to_keep")


def select_cache_rows(cache: Any, rows: torch.Tensor) -> None:
    """Every layer's keys and values at ``rows`` (B,) of the batch dimension, in place: the copies of each
    prompt's KV cache for its responses, differentiable, with a backward that is the same bit for bit on every
    run. ``Cache.batch_select_indices`` indexes with ``tensor[rows]``, whose backward (``index_put_`` with
    accumulate) adds the repeated rows' gradients with parallel atomic float adds on a CPU with more than one
    thread: their order, so the rounding, changed run to run, and GRPO drifted apart after ~50 steps.
    ``index_select``'s backward (``index_add_``) sums them in a fixed order."""
    for layer in cache.layers:
        layer.keys = layer.keys.index_select(0, rows)
        layer.values = layer.values.index_select(0, rows)


def shared_prefix_logits(
    model: torch.nn.Module, batch: dict[str, torch.Tensor], dev: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of every response token of a ``build_shared_batch`` layout: (B, V) for position 0 (the prompt's
    last token) and (N, V) for the N response tokens after the first of each row (row-major)."""
    from onethinker.generation.hf import prefill_positions
    from onethinker.modeling.inputs import model_inputs

    prompts = {
        k: v.to(dev)
        for k, v in model_inputs({k[7:]: v for k, v in batch.items() if k.startswith("prompt_")}).items()
    }
    copies = batch["copies"].to(dev)  # (B,)
    positions = prefill_positions(model, prompts)  # (4, U, P) or (U, P)
    out = model(**prompts, position_ids=positions, use_cache=True, logits_to_keep=1)
    first = out.logits[:, -1].float().index_select(0, copies)  # (B, V)
    cache = out.past_key_values
    select_cache_rows(cache, copies)  # the prompt's keys and values, once per row (differentiable)
    mask = batch["response_mask"].to(dev)  # (B, R)
    width = mask.shape[1]
    if width == 1:
        return first, first.new_zeros(0, first.shape[-1])
    step = torch.arange(1, width, device=dev)  # response token k - 1 sits one position past the prompt's last
    after = positions[..., -1:].index_select(-2, copies) + step  # (4, B, R-1) or (B, R-1)
    attention = torch.cat([prompts["attention_mask"].index_select(0, copies), mask[:, :-1].long()], dim=1)
    out = kept_logits(
        model,
        input_ids=batch["targets"].to(dev)[:, :-1],
        attention_mask=attention,
        position_ids=after,
        past_key_values=cache,
        use_cache=True,
        keep=mask[:, 1:].bool(),
    )
    return first, out.float()


def token_logprobs(
    model: torch.nn.Module, batch: dict[str, torch.Tensor], dev: torch.device, with_entropy: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-prob of each response token (B, T) and optionally the entropy of each next-token distribution,
    0 off the response. The LM head and the softmax run on the positions that predict a response token only.

    Two layouts: ``build_batch``'s (prompt + response rows; T = L - 1 - ``logits_start``, a boolean
    ``logits_to_keep``) and ``build_shared_batch``'s (each prompt once, its responses on copies of its KV
    cache; T = R)."""
    from onethinker.modeling.inputs import model_inputs

    mask = batch["response_mask"].to(dev).bool()  # (B, T)
    targets = batch["targets"].to(dev)  # (B, T)
    parts: list[tuple[torch.Tensor, torch.Tensor]] = []  # (logits (N, V), where in (B, T) they go)
    if "copies" in batch:
        first, rest = shared_prefix_logits(model, batch, dev)
        head = torch.zeros_like(mask)
        head[:, 0] = mask[:, 0]
        parts.append((first[mask[:, 0]], head))
        if rest.shape[0]:
            tail = mask.clone()
            tail[:, 0] = False
            parts.append((rest, tail))
    else:
        inputs = {k: v.to(dev) for k, v in model_inputs(batch).items()}
        start = int(batch["logits_start"])
        keep = torch.zeros(batch["input_ids"].shape, dtype=torch.bool, device=dev)  # (B, L)
        keep[:, start : start + mask.shape[1]] = mask
        parts.append((kept_logits(model, keep=keep, **inputs).float(), mask))  # (N, V), row-major
    lp = torch.zeros(mask.shape, device=dev)  # (B, T)
    ent = torch.zeros(mask.shape, device=dev) if with_entropy else None
    for logits, where in parts:
        logp = torch.log_softmax(logits.float(), dim=-1)  # (N, V)
        lp = lp.masked_scatter(where, logp.gather(-1, targets[where].unsqueeze(-1)).squeeze(-1))
        if ent is not None:
            ent = ent.masked_scatter(where, -(logp.exp() * logp).sum(-1))
    return lp, ent


def rollout_logprob_gap(
    batches: list[list[Sequence]], built: list[dict[str, torch.Tensor]], old: list[torch.Tensor]
) -> dict[str, list[float]]:
    """|rollout engine's log-prob - policy's log-prob| over the sampled tokens, when the engine returned
    them (vLLM): near 0 while the engine generates with the policy's weights, large after a failed push.
    Returns ``{"train/rollout_logprob_gap": [mean], "train/rollout_logprob_gap_max": [max]}`` or {}."""
    diffs: list[torch.Tensor] = []
    for b, batch, lp in zip(batches, built, old, strict=True):
        for r, s in enumerate(b):
            engine_lp = s.completion.logprobs
            if not engine_lp:
                continue
            pos = batch["response_mask"][r].nonzero().flatten()  # (R,) positions predicting response tokens
            k = min(len(engine_lp), len(pos))
            policy = lp[r, pos[:k]]  # (k,)
            diffs.append((policy - torch.tensor(engine_lp[:k], dtype=policy.dtype)).abs())
    if not diffs:
        return {}
    every = torch.cat(diffs)
    return {
        "train/rollout_logprob_gap": [float(every.mean())],
        "train/rollout_logprob_gap_max": [float(every.max())],
    }


def dropout_free(model: torch.nn.Module) -> bool:
    """No dropout anywhere (modules or attention), so train mode computes what eval mode does."""
    if any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in model.modules()):
        return False
    configs = [getattr(model, "config", None)]
    configs += [getattr(configs[0], k, None) for k in ("text_config", "vision_config")]
    return not any(float(getattr(c, "attention_dropout", 0.0) or 0.0) > 0 for c in configs if c is not None)


def is_malformed(score: dict[str, Any]) -> bool:
    return float(score.get("format", 0.0)) < 1.0


def timed_out(score: dict[str, Any]) -> bool:
    """The reward's symbolic comparison was over its time or size budget (scored 0)."""
    return TIMEOUT_REASON in score.get("reasons", ())


def update_windows(n_seqs: int, per_update: int, micro: int) -> list[list[tuple[int, int]]]:
    """Slices ``[start, end)`` of the sequences, per optimizer update: consecutive updates of ``per_update``
    sequences (the last one shorter when the batch is), each cut into micro-batches of at most ``micro``
    sequences. A micro-batch never straddles two updates, so every sequence is trained on exactly once per
    epoch (e.g. 10 sequences, 6 per update, micro 4: [[(0, 4), (4, 6)], [(6, 10)]])."""
    out = []
    for start in range(0, n_seqs, per_update):
        end = min(n_seqs, start + per_update)
        out.append([(i, min(end, i + micro)) for i in range(start, end, micro)])
    return out


def length_grouped_windows(seqs: list[Sequence], per_update: int, micro: int) -> list[list[list[Sequence]]]:
    """The micro-batches of every optimizer update, as ``update_windows`` cuts them (a micro-batch never
    straddles two updates), but within each update the sequences are grouped by length (response, then
    prompt; longest first), so each micro-batch pads to a length close to its own rows'. The update's loss is
    a sum over its sequences (token-mean weights each micro-batch by its share of the update's tokens), so the
    grouping changes the padding, not what is computed."""
    windows = []
    for (start, end), *_ in update_windows(len(seqs), per_update, per_update):
        window = seqs[start:end]
        order = sorted(
            range(len(window)),
            key=lambda i: (-len(window[i].response_ids), -window[i].encoded["input_ids"].shape[-1], i),
        )
        ordered = [window[i] for i in order]
        windows.append([ordered[k : k + micro] for k in range(0, len(ordered), micro)])
    return windows


@dataclass
class StepStats:
    metrics: dict[str, float]
    table_rows: list[dict[str, Any]]
    kept_groups: int


class GRPOTrainer:
    """Holds the policy, the engine, the rollout engine, the EMA state and the data position."""

    def __init__(
        self,
        cfg: GRPOConfig,
        records: list[RootedRecord],
        media: MediaConfig,
        style: PromptStyle,
        rollout: RolloutEngine | None = None,
        progress: bool = True,
        reward_options: RewardConfig | None = None,
    ):
        from onethinker.modeling import load_model, load_processor

        pin_cpu_threads(cfg.cpu_threads)
        seed_everything(cfg.seed)
        if not records:
            raise ValueError("no RL records to train on (the manifest lists no rl file, or it is empty)")
        self.cfg, self.records, self.media, self.style = cfg, records, media, style
        self.dev = device()
        bf16 = use_bf16(cfg.bf16)
        self.processor = load_processor(cfg.sft_model_dir)
        model = load_model(cfg.sft_model_dir, dtype=torch.bfloat16 if bf16 else torch.float32).to(self.dev)
        self.param_counts = freeze_vision(model, cfg.freeze_vision_tower, cfg.freeze_projector)
        checkpointing = use_gradient_checkpointing(cfg.gradient_checkpointing)
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        # Each prompt's forward once for its n responses (on copies of its KV cache), unless gradient
        # checkpointing is on: Hugging Face's checkpointed layers train without a cache.
        self.build = build_batch if checkpointing else build_shared_batch
        self.ref_model = None
        if cfg.kl_coef > 0:
            self.ref_model = load_model(cfg.sft_model_dir, dtype=model.dtype).to(self.dev).eval()
            self.ref_model.requires_grad_(False)
        updates_per_step = max(1, math.ceil(cfg.rollout_batch_size / cfg.global_batch_size)) * cfg.ppo_epochs
        optim = OptimConfig(
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
            warmup_ratio=cfg.warmup_ratio,
            total_steps=cfg.steps * updates_per_step,
            grad_accum=1,
            max_grad_norm=cfg.max_grad_norm,
        )
        self.engine = build_engine(model, optim, cfg.deepspeed, cfg.micro_batch_size)
        self.rank, self.world = self.engine.rank, self.engine.world_size
        self.model = self.engine.unwrapped()
        self.rollout = rollout or make_engine(
            cfg.engine,
            self.model,
            self.processor,
            model_dir=cfg.sft_model_dir,
            batch_size=cfg.generation_batch_size,
            vllm=cfg.vllm,
            seed=cfg.seed,
        )
        self.loss_fn = PolicyLoss(
            clip_low=cfg.clip_low,
            clip_high=cfg.clip_high,
            loss_agg=cfg.loss_agg,
            kl_coef=cfg.kl_coef,
            entropy_coef=cfg.entropy_coef,
            max_response_length=cfg.max_response_length,
        )
        tok = tokenizer_of(self.processor)
        self.pad_id = tok.pad_token_id
        self.end_id = tok.convert_tokens_to_ids("<|im_end|>")
        self.reward_options = reward_options
        self.skipped_overlong: set[int] = set()
        """Records whose prompt is longer than ``max_prompt_length`` (never generated nor trained on)."""
        self.ema = EMAState()
        self.step_no, self.position = 0, 0
        self.resumed_state: dict[str, Any] | None = None
        """The trainer state of the checkpoint ``maybe_resume`` restored (None: a fresh start)."""
        self.extra_state: dict[str, Any] = {}
        """Stored in every checkpoint's trainer state (the stage keeps its MLflow run id there)."""
        self._perms: dict[int, np.ndarray] = {}
        self._prompt_cache: dict[int, tuple[Example, dict[str, torch.Tensor]]] = {}
        self.progress = progress
        self.config_hash = ckpt.config_hash(
            {
                "cfg": repr(cfg),
                "n_records": len(records),
                "world": self.world,
                "model": ckpt.model_fingerprint(cfg.sft_model_dir),
                "code": ckpt.code_fingerprint(),
            }
        )

    # ---------------------------------------------------------------------------------- data stream
    def _index(self, k: int) -> int:
        epoch, i = divmod(k, len(self.records))
        if epoch not in self._perms:
            self._perms = {
                epoch: np.random.default_rng([self.cfg.seed, 1, epoch]).permutation(len(self.records))
            }
        return int(self._perms[epoch][i])

    def _next_prompts(self, count: int) -> list[int]:
        """``count`` record indices for this rank; advances the shared position by count * world."""
        start = self.position * self.world + self.rank * count
        idx = [self._index(k) for k in range(start, start + count)]
        self.position += count
        return idx

    def _prompt(self, i: int) -> tuple[Example, dict[str, torch.Tensor]]:
        if i not in self._prompt_cache:
            item = self.records[i]
            ex = prompt_example(item.record, item.root, self.media, self.style)
            enc = encode_prompt(self.processor, ex)
            if len(self._prompt_cache) < 20000 and not self._overlong(enc):
                self._prompt_cache[i] = (ex, enc)
            return ex, enc
        return self._prompt_cache[i]

    def _overlong(self, enc: dict[str, torch.Tensor]) -> bool:
        return int(enc["input_ids"].shape[-1]) > self.cfg.max_prompt_length

    # ---------------------------------------------------------------------------------- checkpoints
    def save(self) -> None:
        ckpt.save_checkpoint(
            Path(self.cfg.checkpoint_dir),
            self.step_no,
            self.engine,
            {
                "position": self.position,
                "ema": self.ema.to_dict(),
                "config_hash": self.config_hash,
                **self.extra_state,
            },
            keep=self.cfg.keep_checkpoints,
        )

    def maybe_resume(self) -> int:
        found = ckpt.latest_checkpoint(Path(self.cfg.checkpoint_dir), self.config_hash)
        if found is None:
            return 0
        path, state = found
        ckpt.restore(path, self.engine)
        self.model = self.engine.unwrapped()
        self.rollout.load_weights(self.model)
        self.step_no, self.position = int(state["step"]), int(state["position"])
        self.ema = EMAState.from_dict(state["ema"])
        self.resumed_state = state
        return self.step_no

    # ---------------------------------------------------------------------------------- one step
    def _rollout_round(self, count: int, group_offset: int) -> tuple[list[list[Sequence]], float, float, int]:
        """Draw ``count`` prompts, generate and score their groups. Prompts longer than ``max_prompt_length``
        are skipped (no group; a warning names each the first time): returns (groups, rollout seconds, reward
        seconds, skipped prompts)."""
        from onethinker.rewards import compute_score

        cfg = self.cfg
        idx = self._next_prompts(count)
        prompts = []
        skipped = 0
        for i in idx:
            ex, enc = self._prompt(i)
            if self._overlong(enc):
                skipped += 1
                if i not in self.skipped_overlong:
                    self.skipped_overlong.add(i)
                    log.warning(
                        "%s: prompt of %d tokens is longer than "
                        "grpo.max_prompt_length=%d; skipped (not generated, not trained on)",
                        self.records[i].record.where,
                        int(enc["input_ids"].shape[-1]),
                        cfg.max_prompt_length,
                    )
                continue
            prompts.append((ex, enc))
        t0 = time.perf_counter()
        hf = isinstance(self.rollout, HFRolloutEngine)
        sampling = SamplingParams(
            n=cfg.n,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            max_new_tokens=cfg.max_response_length,
            # HF samples from this process's RNG stream (seeded, checkpointed); vLLM has its own sampler, so
            # each round gets a seed derived from the step, the round and the rank (resume repeats it), and
            # returns the sampled tokens' log-probs (compared with the policy's below: a sync check).
            seed=None if hf else self._rollout_seed(group_offset),
            logprobs=not hf,
        )
        if not prompts:
            completions: list[list[Completion]] = []
        elif hf:
            completions = self.rollout.generate(
                [p[0] for p in prompts], sampling, encoded=[p[1] for p in prompts]
            )
        else:
            completions = self.rollout.generate([p[0] for p in prompts], sampling)
        t1 = time.perf_counter()
        items = [
            ex.reward_item(c.text) for (ex, _), group in zip(prompts, completions, strict=True) for c in group
        ]
        scores = compute_score(items, options=self.reward_options)
        t2 = time.perf_counter()
        groups, k = [], 0
        for g, ((ex, enc), group) in enumerate(zip(prompts, completions, strict=True)):
            seqs = []
            for c in group:
                seqs.append(
                    Sequence(
                        group_offset + g,
                        ex,
                        enc,
                        c,
                        scores[k],
                        response_token_ids(c, self.end_id, cfg.max_response_length),
                    )
                )
                k += 1
            groups.append(seqs)
        return groups, t1 - t0, t2 - t1, skipped

    def _rollout_seed(self, group_offset: int) -> int:
        """The sampling seed of one rollout round: a function of the run's seed, the step, the round (its
        first group's index) and the rank, so a resumed run samples what the uninterrupted one did."""
        return (((self.cfg.seed * 100_003 + self.step_no) * 10_007 + group_offset) * 101 + self.rank) % (
            2**31 - 1
        )

    def _keep(self, group: list[Sequence]) -> bool:
        if not self.cfg.online_filter:
            return True
        acc = float(np.mean([s.score["accuracy"] for s in group]))
        return self.cfg.filter_low <= acc <= self.cfg.filter_high

    def step(self) -> StepStats:
        cfg = self.cfg
        t_start = time.perf_counter()
        rollout_s = reward_s = 0.0
        all_groups: list[list[Sequence]] = []
        kept: list[list[Sequence]] = []
        retries = skipped = 0
        need = cfg.rollout_batch_size
        while True:
            groups, r_s, w_s, n_skipped = self._rollout_round(need, len(all_groups))
            rollout_s += r_s
            reward_s += w_s
            skipped += n_skipped
            all_groups.extend(groups)
            kept.extend(g for g in groups if self._keep(g))
            if len(kept) >= cfg.rollout_batch_size or retries >= cfg.max_filter_retries:
                break
            retries += 1
            need = cfg.rollout_batch_size - len(kept)
        kept = kept[: cfg.rollout_batch_size]
        metrics = self._reward_metrics(all_groups)
        metrics["train/filtered_frac"] = 1.0 - len([g for g in all_groups if self._keep(g)]) / max(
            1, len(all_groups)
        )
        metrics["train/batch_fill"] = len(kept) / cfg.rollout_batch_size
        metrics["train/filter_retries"] = float(retries)
        metrics["train/skipped_overlong_prompts"] = float(skipped)

        # advantages over the kept groups (the EMA sees exactly the scores that are trained on)
        seqs = [s for g in kept for s in g]
        t_update = time.perf_counter()
        if seqs:
            scores = torch.tensor([float(s.score["overall"]) for s in seqs])
            gids = torch.tensor([s.group for s in seqs])
            keys = [task_key(s.example.problem_type, s.example.data_type) for s in seqs]
            adv, self.ema, adv_stats = compute_advantages(
                scores, gids, keys, self.ema, cfg.advantage, reduce=self._reduce()
            )
            for s, a in zip(seqs, adv.tolist(), strict=True):
                s.advantage = a
            metrics.update(self._advantage_metrics(adv_stats))
            metrics.update(self._update(kept))
        update_s = time.perf_counter() - t_update
        n_tokens = sum(len(s.response_ids) for g in all_groups for s in g)
        metrics.update(
            {
                "perf/rollout_s": rollout_s,
                "perf/reward_s": reward_s,
                "perf/update_s": update_s,
                "perf/generated_tokens": float(n_tokens),
                "perf/tokens_per_s": n_tokens / max(1e-9, rollout_s),
                "perf/step_s": time.perf_counter() - t_start,
            }
        )
        self.step_no += 1
        return StepStats(metrics, self._table(all_groups), len(kept))

    def _reduce(self):
        if self.world > 1 and torch.distributed.is_initialized():
            from onethinker.rl.advantages import allreduce_task_moments

            return allreduce_task_moments
        return None

    def _update(self, kept: list[list[Sequence]]) -> dict[str, float]:
        cfg = self.cfg
        stats: dict[str, list[float]] = defaultdict(list)
        seqs = [s for g in kept for s in g]
        windows = length_grouped_windows(seqs, cfg.global_batch_size * cfg.n, cfg.micro_batch_size)
        batches = [b for w in windows for b in w]
        built = [self.build(b, self.pad_id) for b in batches]  # once per step, reused by every PPO epoch
        # Old log-probs (and reference log-probs) before any update of this step. The first update of a
        # single-epoch step trains the policy exactly as it sampled (no optimizer step yet, no dropout): its
        # old log-probs are its own log-probs, detached, so they come from its training forward instead.
        first = len(windows[0]) if windows and cfg.ppo_epochs == 1 and dropout_free(self.model) else 0
        old: list[torch.Tensor | None] = [None] * len(built)
        ref: list[torch.Tensor] = []
        self.rollout_sleep()
        t_old = time.perf_counter()
        self.model.eval()
        with torch.no_grad():
            for j, batch in enumerate(built):
                if j >= first:
                    old[j] = token_logprobs(self.model, batch, self.dev)[0].cpu()
                if self.ref_model is not None:
                    ref.append(token_logprobs(self.ref_model, batch, self.dev)[0].cpu())
        stats["perf/old_logprob_s"].append(time.perf_counter() - t_old)
        self.model.train()
        j = 0
        for _ in range(cfg.ppo_epochs):
            for w in windows:
                n_tok = sum(len(s.response_ids) for b in w for s in b)
                n_seq = sum(len(b) for b in w)
                for pos, b in enumerate(w):
                    batch = built[j % len(built)]
                    lp, ent = token_logprobs(self.engine.module, batch, self.dev, with_entropy=True)
                    if old[j % len(built)] is None:  # on-policy: the old log-probs are these
                        old[j % len(built)] = lp.detach().cpu()
                    mask = batch["response_mask"].to(self.dev)  # (B, T)
                    adv = torch.tensor([s.advantage for s in b], device=self.dev)  # (B,)
                    out = self.loss_fn(
                        lp,
                        old[j % len(built)].to(self.dev),
                        adv,
                        mask,
                        ref[j % len(built)].to(self.dev) if ref else None,
                        ent,
                    )
                    weight = (
                        (float(mask.sum()) / max(1, n_tok))
                        if cfg.loss_agg == "token-mean"
                        else len(b) / n_seq
                    )
                    self.engine.backward(out.loss * weight, boundary=pos == len(w) - 1)
                    grad_norm = self.engine.step()
                    if grad_norm is not None:
                        stats["train/grad_norm"].append(grad_norm)
                    stats["train/clip_frac"].append(float(out.clip_frac))
                    stats["train/kl"].append(float(out.kl))
                    stats["train/approx_kl"].append(float(out.approx_kl))
                    stats["train/policy_loss"].append(float(out.policy_loss))
                    stats["train/entropy"].append(float(out.entropy))
                    j += 1
        stats.update(rollout_logprob_gap(batches, built, [o for o in old if o is not None]))
        self.model.eval()
        self.rollout.load_weights(self.engine.unwrapped())
        if getattr(self.rollout, "last_sync_gap", None) is not None:
            stats["train/weight_sync_logprob_gap"].append(float(self.rollout.last_sync_gap))
        out_metrics = {k: float(np.mean(v)) for k, v in stats.items() if v}
        out_metrics["train/lr"] = self.engine.lr
        return out_metrics

    def rollout_sleep(self) -> None:
        """Let the rollout engine release its memory (vLLM's KV cache) while the policy trains; the weight
        push after the update and the next rollout wake it up."""
        sleep = getattr(self.rollout, "sleep", None)
        if callable(sleep):
            sleep()

    def _reward_metrics(self, groups: list[list[Sequence]]) -> dict[str, float]:
        per: dict[str, list[Sequence]] = defaultdict(list)
        for g in groups:
            for s in g:
                per[s.example.slug].append(s)
        m: dict[str, float] = {}
        for slug, seqs in per.items():
            for part in ("overall", "accuracy", "format", "structure"):
                m[f"train/reward/{part}/{slug}"] = float(np.mean([s.score[part] for s in seqs]))
            m[f"train/reward_std/{slug}"] = float(np.std([s.score["overall"] for s in seqs]))
            m[f"train/malformed_rate/{slug}"] = float(np.mean([is_malformed(s.score) for s in seqs]))
            m[f"train/response_length/{slug}"] = float(np.mean([len(s.response_ids) for s in seqs]))
            m[f"train/timeouts/{slug}"] = float(sum(timed_out(s.score) for s in seqs))
        every = [s for g in groups for s in g]
        if every:
            m["train/reward/overall"] = float(np.mean([s.score["overall"] for s in every]))
            m["train/reward/accuracy"] = float(np.mean([s.score["accuracy"] for s in every]))
            m["train/malformed_rate"] = float(np.mean([is_malformed(s.score) for s in every]))
            m["train/timeouts"] = float(sum(timed_out(s.score) for s in every))
        m["train/reward_fallbacks"] = float(sum(fallbacks().values()))
        return m

    @staticmethod
    def _advantage_metrics(stats: dict[str, dict[str, float]]) -> dict[str, float]:
        from onethinker.contract.tasks import task_slug

        m = {}
        for key, st in stats.items():
            pt, _, dt = key.partition("/")
            slug = task_slug(pt, dt or "image")
            for name, metric in (
                ("ema_mean", "ema_mean"),
                ("ema_std", "ema_std"),
                ("guard_fallback_rate", "guard_fallback_rate"),
                ("adv_abs_mean", "adv_abs_mean"),
            ):
                if name in st:
                    m[f"train/{metric}/{slug}"] = float(st[name])
        return m

    def _table(self, groups: list[list[Sequence]]) -> list[dict[str, Any]]:
        rows, seen = [], defaultdict(int)
        for g in groups:
            s = g[0]
            if seen[s.example.slug] >= self.cfg.rollout_table_per_task:
                continue
            seen[s.example.slug] += 1
            rows.append(
                {
                    "step": self.step_no,
                    "task": s.example.slug,
                    "problem_id": s.example.problem_id,
                    "problem": s.example.problem,
                    "response": s.completion.text,
                    "ground_truth": s.example.ground_truth,
                    "overall": float(s.score["overall"]),
                    "accuracy": float(s.score["accuracy"]),
                    "advantage": s.advantage,
                }
            )
        return rows


def task_slugs() -> tuple[str, ...]:
    return TASK_SLUGS
