"""The GRPO policy loss: PPO-clipped surrogate per token, optional k3 KL to a reference, optional entropy bonus.

What it implements
    ``PolicyLoss(clip_low, clip_high, loss_agg, kl_coef, entropy_coef, ...)`` called on one micro-batch of B
    responses padded to T tokens:

    - ``ratio = exp(logprobs - old_logprobs)`` per token (log-ratio clamped to [-20, 20] before ``exp``,
      as EasyR1 does, so a wild token cannot give an inf/NaN gradient);
    - surrogate ``max(-A * ratio, -A * clip(ratio, 1 - clip_low, 1 + clip_high))`` per token, the sequence
      advantage A broadcast over its tokens (decoupled low/high clip, DAPO's clip-higher);
    - optional dual clip (``clip_dual`` = C): for A < 0 the per-token loss is capped at ``-A * C``;
    - optional KL to a frozen reference, the low-variance k3 estimator
      ``exp(ref - logp) - (ref - logp) - 1`` (clamped to at most 10, as EasyR1's ``low_var_kl``);
    - optional entropy bonus (``- entropy_coef * entropy``), from per-token entropies the caller computes.

    ``loss = policy_loss + kl_coef * kl - entropy_coef * entropy``, each term aggregated with ``loss_agg``:

    - ``token-mean`` (default, EasyR1 ``loss_avg_mode: token``): mean over every valid token of the batch;
    - ``seq-mean-token-mean`` (EasyR1 ``seq``): mean over tokens within each sequence, then over sequences;
    - ``seq-mean-token-sum-norm`` (Dr.GRPO): sum over tokens within each sequence divided by a constant
      length (``max_response_length``; the padded width T when None), then mean over sequences. Pass the
      rollout's max response length so the divisor stays constant through training, as Dr.GRPO intends.

How it departs from the released recipe
    The released OneThinker recipe (EasyR1 defaults, not overridden in ``config_ema_grpo_64.yaml``) uses
    clip_low 0.2, clip_high 0.3, token-mean, KL loss off (``disable_kl: true``; k3 coef 0.01 when on) and
    EasyR1's dual clip C = 3. The defaults here match, except that dual clip is off unless ``clip_dual`` is
    set. EasyR1 logs ``ppo_kl`` as the k1 mean of ``old - new``; ``approx_kl`` here is the k3 estimate
    ``mean((ratio - 1) - log ratio)`` (non-negative, lower variance).

How to use it
    >>> loss_fn = PolicyLoss(clip_low=0.2, clip_high=0.3, loss_agg="token-mean")
    >>> out = loss_fn(logprobs, old_logprobs, advantages, response_mask)   # (B, T), (B, T), (B,), (B, T)
    >>> out.loss.backward(); log(kl=out.kl.item(), clip_frac=out.clip_frac.item())

    All fields but ``loss`` are detached. ``clip_frac`` and ``approx_kl`` are means over valid tokens
    whatever ``loss_agg`` is; ``policy_loss``, ``kl`` and ``entropy`` are the aggregated terms that enter
    ``loss``. When ``entropy`` is not passed, the ``entropy`` stat is the aggregated ``-logprobs`` (a
    one-sample estimate, what EasyR1 logs as ``entropy_loss``); when ``ref_logprobs`` is not passed, ``kl``
    is 0.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import torch
from torch import nn

LossAgg = Literal["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"]
LOSS_AGG_MODES: tuple[str, ...] = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm")

_MAX_LOG_RATIO = 20.0  # clamp of log-ratios before exp (EasyR1)
_MAX_K3 = 10.0  # clamp of the per-token k3 KL (EasyR1 low_var_kl)


class LossOutput(NamedTuple):
    loss: torch.Tensor  # () with grad: policy_loss + kl_coef * kl - entropy_coef * entropy
    policy_loss: torch.Tensor  # () detached, aggregated clipped surrogate
    kl: torch.Tensor  # () detached, aggregated k3 KL to the reference (0 without ref_logprobs)
    clip_frac: torch.Tensor  # () detached, fraction of valid tokens where the clip is active
    entropy: torch.Tensor  # () detached, aggregated entropy (or -logprobs when entropy is not given)
    approx_kl: torch.Tensor  # () detached, k3 estimate of KL(old || new) over valid tokens


class PolicyLoss(nn.Module):
    """PPO-clipped policy loss for GRPO-family training; hyper-parameters here, tensors at call."""

    def __init__(
        self,
        clip_low: float = 0.2,
        clip_high: float = 0.3,
        loss_agg: LossAgg = "token-mean",
        kl_coef: float = 0.0,
        entropy_coef: float = 0.0,
        max_response_length: int | None = None,
        clip_dual: float | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 <= clip_low < 1.0:
            raise ValueError(f"clip_low must be in [0, 1), got {clip_low}")
        if not clip_high >= 0.0:
            raise ValueError(f"clip_high must be >= 0, got {clip_high}")
        if loss_agg not in LOSS_AGG_MODES:
            raise ValueError(f"loss_agg must be one of {list(LOSS_AGG_MODES)}, got {loss_agg!r}")
        if not (math.isfinite(kl_coef) and kl_coef >= 0.0):
            raise ValueError(f"kl_coef must be >= 0, got {kl_coef}")
        if not math.isfinite(entropy_coef):
            raise ValueError(f"entropy_coef must be finite, got {entropy_coef}")
        if max_response_length is not None and max_response_length < 1:
            raise ValueError(f"max_response_length must be >= 1, got {max_response_length}")
        if clip_dual is not None and not clip_dual > 1.0:
            raise ValueError(f"clip_dual must be > 1, got {clip_dual}")
        self.clip_low = clip_low
        self.clip_high = clip_high
        self.loss_agg = loss_agg
        self.kl_coef = kl_coef
        self.entropy_coef = entropy_coef
        self.max_response_length = max_response_length
        self.clip_dual = clip_dual

    def aggregate(self, values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Reduce per-token ``values`` (B, T) under ``mask`` (B, T, float) to a scalar with ``loss_agg``."""
        masked = values * mask  # (B, T)
        if self.loss_agg == "token-mean":
            return masked.sum() / mask.sum().clamp(min=1.0)  # ()
        if self.loss_agg == "seq-mean-token-mean":
            return (masked.sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()  # ()
        norm = float(self.max_response_length or values.shape[-1])
        return (masked.sum(-1) / norm).mean()  # ()

    def forward(
        self,
        logprobs: torch.Tensor,
        old_logprobs: torch.Tensor,
        advantages: torch.Tensor,
        response_mask: torch.Tensor,
        ref_logprobs: torch.Tensor | None = None,
        entropy: torch.Tensor | None = None,
    ) -> LossOutput:
        """
        Args:
            logprobs: (B, T) log-probs of the sampled tokens under the current policy (with grad).
            old_logprobs: (B, T) the same under the policy that sampled them (no grad).
            advantages: (B,) one advantage per response.
            response_mask: (B, T) 1 for response tokens, 0 for padding (bool or float).
            ref_logprobs: (B, T) under the frozen reference model; required when ``kl_coef > 0``.
            entropy: (B, T) per-token entropy of the current policy (with grad); required when
                ``entropy_coef != 0``.
        """
        if (
            logprobs.dim() != 2
            or old_logprobs.shape != logprobs.shape
            or response_mask.shape != logprobs.shape
        ):
            raise ValueError(
                f"logprobs, old_logprobs and response_mask must be (B, T) alike, got {tuple(logprobs.shape)}, "
                f"{tuple(old_logprobs.shape)}, {tuple(response_mask.shape)}"
            )
        if advantages.shape != logprobs.shape[:1]:
            raise ValueError(
                f"advantages must be (B,) = {tuple(logprobs.shape[:1])}, got {tuple(advantages.shape)}"
            )
        for name, t in (("ref_logprobs", ref_logprobs), ("entropy", entropy)):
            if t is not None and t.shape != logprobs.shape:
                raise ValueError(f"{name} must be (B, T) = {tuple(logprobs.shape)}, got {tuple(t.shape)}")
        if self.kl_coef > 0 and ref_logprobs is None:
            raise ValueError("kl_coef > 0 needs ref_logprobs")
        if self.entropy_coef != 0 and entropy is None:
            raise ValueError("entropy_coef != 0 needs entropy")

        logp = logprobs.float()  # (B, T)
        mask = response_mask.to(logp.dtype)  # (B, T)
        adv = advantages.detach().to(logp.dtype).unsqueeze(-1)  # (B, 1)
        log_ratio = (logp - old_logprobs.detach().float()).clamp(-_MAX_LOG_RATIO, _MAX_LOG_RATIO)  # (B, T)
        ratio = torch.exp(log_ratio)  # (B, T)
        surrogate = -adv * ratio  # (B, T)
        surrogate_clipped = -adv * ratio.clamp(1.0 - self.clip_low, 1.0 + self.clip_high)  # (B, T)
        per_token = torch.maximum(surrogate, surrogate_clipped)  # (B, T) pessimistic bound
        clipped = surrogate_clipped > surrogate  # (B, T) the clip is active
        if self.clip_dual is not None:
            capped = torch.minimum(per_token, -adv * self.clip_dual)  # (B, T) at most -A * C
            per_token = torch.where(adv < 0, capped, per_token)  # (B, T) dual clip for A < 0 only
        policy_loss = self.aggregate(per_token, mask)  # ()
        loss = policy_loss  # ()

        if ref_logprobs is not None:
            ref_gap = (ref_logprobs.detach().float() - logp).clamp(-_MAX_LOG_RATIO, _MAX_LOG_RATIO)  # (B, T)
            k3 = (torch.exp(ref_gap) - ref_gap - 1.0).clamp(max=_MAX_K3)  # (B, T) >= 0
            kl = self.aggregate(k3, mask)  # ()
            if self.kl_coef > 0:
                loss = loss + self.kl_coef * kl  # ()
        else:
            kl = logp.new_zeros(())  # ()

        if entropy is not None:
            ent = self.aggregate(entropy.float(), mask)  # ()
            if self.entropy_coef != 0:
                loss = loss - self.entropy_coef * ent  # ()
        else:
            ent = self.aggregate(-logp.detach(), mask)  # ()

        with torch.no_grad():
            n_tokens = mask.sum().clamp(min=1.0)  # ()
            clip_frac = (clipped.to(logp.dtype) * mask).sum() / n_tokens  # ()
            approx_kl = (((ratio - 1.0) - log_ratio) * mask).sum() / n_tokens  # ()
        return LossOutput(
            loss=loss,
            policy_loss=policy_loss.detach(),
            kl=kl.detach(),
            clip_frac=clip_frac,
            entropy=ent.detach(),
            approx_kl=approx_kl.detach(),
        )
