"""The HF engine's own decoding loop (finished rows leave the batch, one prefill per distinct prompt) computes
what ``model.generate`` does: the same greedy completions and log-probs, the same sampling distribution."""

from __future__ import annotations

import pytest
import torch

from onethinker.config import MediaConfig
from onethinker.generation.base import SamplingParams
from onethinker.generation.hf import HFRolloutEngine, choose_tokens, sampling_scores


@pytest.fixture(scope="module")
def engines(tiny_sft):
    from onethinker.modeling import load_model, load_processor

    model = load_model(tiny_sft, dtype=torch.float32).eval()
    processor = load_processor(tiny_sft)
    return (
        HFRolloutEngine(model, processor, batch_size=12, shrink=True),
        HFRolloutEngine(model, processor, batch_size=12, shrink=False),
    )


@pytest.fixture(scope="module")
def prompts(tiny_data):
    """Image, video and text prompts of different lengths (left padding in every batch)."""
    from onethinker.data.examples import prompt_example

    return [prompt_example(r.record, r.root, MediaConfig(), "compact") for r in tiny_data["rl"][::3][:7]]


def test_greedy_completions_and_logprobs_equal_generate(engines, prompts) -> None:
    """Batches of 12 rows from 7 prompts x 2 (a group split across two batches), 40 new tokens: rows stop at
    different steps, so the batch shrinks while it decodes, and every token and log-prob is generate's."""
    shrinking, reference = engines
    sampling = SamplingParams(n=2, greedy=True, max_new_tokens=40, logprobs=True)
    got = shrinking.generate(prompts, sampling)
    want = reference.generate(prompts, sampling)
    lengths = {len(c.token_ids) for g in want for c in g}
    assert len(lengths) > 1 and any(c.finished for g in want for c in g), "rows must stop at different steps"
    assert any(not c.finished for g in want for c in g), "some rows must run to the limit"
    for g_got, g_want in zip(got, want, strict=True):
        for a, b in zip(g_got, g_want, strict=True):
            assert a.token_ids == b.token_ids and a.finished == b.finished and a.text == b.text
            assert torch.allclose(torch.tensor(a.logprobs), torch.tensor(b.logprobs), atol=1e-4)


def test_sampling_scores_are_generates_logits_processors() -> None:
    """Suppressed tokens, temperature and top-p give the scores HF's processors give, so the multinomial
    draw is from the same distribution."""
    from transformers import (
        LogitsProcessorList,
        SuppressTokensLogitsProcessor,
        TemperatureLogitsWarper,
        TopPLogitsWarper,
    )

    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 50, generator=gen) * 3
    suppress = torch.tensor([3, 7])
    for temperature, top_p in ((1.0, 1.0), (0.7, 0.9), (1.3, 0.5)):
        sampling = SamplingParams(temperature=temperature, top_p=top_p)
        hf = [SuppressTokensLogitsProcessor([3, 7]), TemperatureLogitsWarper(temperature)]
        if top_p < 1.0:
            hf.append(TopPLogitsWarper(top_p))
        want = LogitsProcessorList(hf)(torch.zeros(6, 1, dtype=torch.long), logits.clone())
        got = sampling_scores(logits, sampling, suppress)
        assert torch.equal(torch.isinf(got), torch.isinf(want))
        assert torch.allclose(got.softmax(-1), want.softmax(-1), atol=1e-6)
    greedy = choose_tokens(logits, SamplingParams(greedy=True), suppress)
    assert torch.equal(greedy, logits.index_fill(1, suppress, -float("inf")).argmax(-1))


def test_seeded_sampling_repeats_and_stays_in_the_nucleus(engines, prompts) -> None:
    shrinking, _ = engines
    sampling = SamplingParams(n=3, temperature=1.0, top_p=0.8, max_new_tokens=24, seed=7, logprobs=True)
    first = shrinking.generate(prompts[:4], sampling)
    again = shrinking.generate(prompts[:4], sampling)
    assert [[c.token_ids for c in g] for g in first] == [[c.token_ids for c in g] for g in again]
    vision = set(shrinking.suppress)
    assert not any(vision & set(c.token_ids) for g in first for c in g)
    assert all(len(c.logprobs) == len(c.token_ids) for g in first for c in g)
