"""The PPO-clipped policy loss against a hand-worked example."""

from __future__ import annotations

import math

import pytest
import torch

from onethinker.rl.loss import LossOutput, PolicyLoss

# Two responses, T = 3, clip range [1 - 0.2, 1 + 0.3] = [0.8, 1.3].
#   response 0, A = +1, last token is padding:
#     tok 0: log-ratio +0.1 -> ratio 1.105171 (inside)       loss max(-1.105171, -1.105171) = -1.105171
#     tok 1: log-ratio +0.5 -> ratio 1.648721 (above 1.3)    loss max(-1.648721, -1.3)      = -1.3  (clipped)
#   response 1, A = -2:
#     tok 0: log-ratio -0.5 -> ratio 0.606531 (below 0.8)    loss max(1.213061, 1.6)        = 1.6   (clipped)
#     tok 1: log-ratio -0.1 -> ratio 0.904837 (inside)       loss max(1.809675, 1.809675)   = 1.809675
#     tok 2: log-ratio +0.4 -> ratio 1.491825 (above, but A < 0 makes the unclipped term the larger)
#                                                            loss max(2.983649, 2.6)        = 2.983649
# (ratio above 1 + clip_high with A < 0 and ratio below 1 - clip_low with A > 0 are never clipped.)
LOGP = torch.tensor([[-1.0, -0.5, -2.0], [-1.2, -0.3, -0.7]])
LOG_RATIO = torch.tensor([[0.1, 0.5, 0.0], [-0.5, -0.1, 0.4]])
OLD = LOGP - LOG_RATIO
ADV = torch.tensor([1.0, -2.0])
MASK = torch.tensor([[1, 1, 0], [1, 1, 1]])
PER_TOKEN = [-1.105171, -1.3, 1.6, 1.809675, 2.983649]  # the 5 valid tokens in order


def _call(loss_fn: PolicyLoss, **kw) -> tuple[LossOutput, torch.Tensor]:
    logp = LOGP.clone().requires_grad_(True)
    out = loss_fn(logp, OLD, ADV, MASK, **kw)
    return out, logp


def test_token_mean_hand_worked():
    out, logp = _call(PolicyLoss())
    # mean over the 5 valid tokens: (-1.105171 - 1.3 + 1.6 + 1.809675 + 2.983649) / 5 = 0.797631
    assert out.loss.item() == pytest.approx(0.797631, abs=1e-5)
    assert out.policy_loss.item() == pytest.approx(0.797631, abs=1e-5)
    assert out.clip_frac.item() == pytest.approx(2 / 5)
    assert out.kl.item() == 0.0
    # approx_kl = mean((ratio - 1) - log ratio) over valid tokens
    #   = (0.005171 + 0.148721 + 0.106531 + 0.004837 + 0.091825) / 5 = 0.071417
    assert out.approx_kl.item() == pytest.approx(0.071417, abs=1e-5)
    # entropy stat without an entropy tensor: token mean of -logprobs = (1 + 0.5 + 1.2 + 0.3 + 0.7) / 5 = 0.74
    assert out.entropy.item() == pytest.approx(0.74, abs=1e-6)

    out.loss.backward()
    # d/d logp of -A * ratio / 5 = -A * ratio / 5 on unclipped valid tokens, 0 on clipped and padded ones
    expected_grad = torch.tensor([[-1.105171 / 5, 0.0, 0.0], [0.0, 2 * 0.904837 / 5, 2 * 1.491825 / 5]])
    torch.testing.assert_close(logp.grad, expected_grad, atol=1e-5, rtol=0)
    for stat in out[1:]:
        assert not stat.requires_grad


def test_seq_mean_token_sum_norm_hand_worked():
    # Dr.GRPO: per-sequence token sums divided by a constant length L = 4, then mean over the 2 sequences
    #   seq 0: (-1.105171 - 1.3) / 4 = -0.601293;  seq 1: (1.6 + 1.809675 + 2.983649) / 4 = 1.598331
    #   mean: 0.498519
    out, _ = _call(PolicyLoss(loss_agg="seq-mean-token-sum-norm", max_response_length=4))
    assert out.loss.item() == pytest.approx(0.498519, abs=1e-5)
    # without max_response_length the padded width T = 3 is the divisor: (-2.405171 + 6.393324) / 3 / 2
    out_t, _ = _call(PolicyLoss(loss_agg="seq-mean-token-sum-norm"))
    assert out_t.loss.item() == pytest.approx(0.664692, abs=1e-5)


def test_seq_mean_token_mean_hand_worked():
    # seq 0: -2.405171 / 2 = -1.202585; seq 1: 6.393324 / 3 = 2.131108; mean 0.464262
    out, _ = _call(PolicyLoss(loss_agg="seq-mean-token-mean"))
    assert out.loss.item() == pytest.approx(0.464262, abs=1e-5)


def test_clip_range_is_configurable():
    # symmetric 0.2: token (0, 1) clips at 1.2 instead of 1.3 -> -1.2; token (1, 2) is unchanged.
    # (-1.105171 - 1.2 + 1.6 + 1.809675 + 2.983649) / 5 = 0.817631
    out, _ = _call(PolicyLoss(clip_low=0.2, clip_high=0.2))
    assert out.loss.item() == pytest.approx(0.817631, abs=1e-5)


def test_k3_kl_to_the_reference():
    # ref - logp per token: 0, ln 2, (pad), -ln 2, 0, 0
    #   k3 = exp(d) - d - 1: 0, 2 - 0.693147 - 1 = 0.306853, -, 0.5 + 0.693147 - 1 = 0.193147, 0, 0
    #   token mean = 0.5 / 5 = 0.1 (exactly: 0.306853 + 0.193147 = 0.5)
    ln2 = math.log(2.0)
    ref = LOGP + torch.tensor([[0.0, ln2, 5.0], [-ln2, 0.0, 0.0]])
    out, logp = _call(PolicyLoss(kl_coef=0.01), ref_logprobs=ref)
    assert out.kl.item() == pytest.approx(0.1, abs=1e-6)
    assert out.loss.item() == pytest.approx(0.797631 + 0.01 * 0.1, abs=1e-5)
    # KL off (the default) still reports it when a reference is given, but leaves the loss alone
    out_off, _ = _call(PolicyLoss(), ref_logprobs=ref)
    assert out_off.kl.item() == pytest.approx(0.1, abs=1e-6)
    assert out_off.loss.item() == pytest.approx(0.797631, abs=1e-5)


def test_entropy_bonus():
    ent = torch.tensor([[1.0, 2.0, 9.0], [0.5, 0.5, 1.0]], requires_grad=True)
    # token mean of entropy = (1 + 2 + 0.5 + 0.5 + 1) / 5 = 1.0; loss = 0.797631 - 0.1 * 1.0
    out, _ = _call(PolicyLoss(entropy_coef=0.1), entropy=ent)
    assert out.entropy.item() == pytest.approx(1.0)
    assert out.loss.item() == pytest.approx(0.697631, abs=1e-5)
    out.loss.backward()
    assert ent.grad[0, 2].item() == 0.0 and ent.grad[0, 0].item() == pytest.approx(-0.1 / 5)


def test_dual_clip_caps_negative_advantage_losses():
    # A = -1, log-ratio 1.5 -> ratio 4.481689: the PPO loss is 4.481689; dual clip C = 3 caps it at 3.
    logp = torch.tensor([[0.0]])
    old = torch.tensor([[-1.5]])
    mask = torch.ones(1, 1)
    adv = torch.tensor([-1.0])
    assert PolicyLoss()(logp, old, adv, mask).loss.item() == pytest.approx(4.481689, abs=1e-5)
    assert PolicyLoss(clip_dual=3.0)(logp, old, adv, mask).loss.item() == pytest.approx(3.0)


def test_fully_masked_rows_and_bool_masks():
    mask = torch.tensor([[True, True, False], [False, False, False]])
    out = PolicyLoss()(LOGP, OLD, ADV, mask)
    # only response 0's two tokens: (-1.105171 - 1.3) / 2 = -1.202585
    assert out.loss.item() == pytest.approx(-1.202585, abs=1e-5)
    assert math.isfinite(PolicyLoss(loss_agg="seq-mean-token-mean")(LOGP, OLD, ADV, mask).loss.item())


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError):
        PolicyLoss(loss_agg="sum")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        PolicyLoss(clip_low=1.0)
    with pytest.raises(ValueError, match="ref_logprobs"):
        PolicyLoss(kl_coef=0.01)(LOGP, OLD, ADV, MASK)
    with pytest.raises(ValueError, match="entropy"):
        PolicyLoss(entropy_coef=0.01)(LOGP, OLD, ADV, MASK)
    with pytest.raises(ValueError, match="advantages"):
        PolicyLoss()(LOGP, OLD, ADV[:1], MASK)
