"""The GRPO update's speed-ups compute the same loss and gradients on a fixed batch: old log-probs reused from
the training forward on the first (on-policy) update, length-grouped micro-batches, and the LM head run only
where a response token can be predicted."""

from __future__ import annotations

import itertools
from pathlib import Path

import torch

from onethinker.config import MediaConfig
from onethinker.rl import trainer as trainer_mod
from onethinker.rl.config import GRPOConfig
from onethinker.rl.trainer import GRPOTrainer, Sequence, build_batch, length_grouped_windows


def _trainer(model_dir: Path, tiny_data: dict, tmp: Path, micro: int) -> GRPOTrainer:
    cfg = GRPOConfig(
        sft_model_dir=str(model_dir),
        checkpoint_dir=str(tmp / "ckpt"),
        output_dir=str(tmp / "out"),
        steps=1,
        rollout_batch_size=4,
        n=4,
        max_response_length=32,
        global_batch_size=2,
        micro_batch_size=micro,
        lr=1e-3,
        weight_decay=0.0,
        online_filter=False,
        log_mlflow=False,
        seed=0,
    )
    return GRPOTrainer(cfg, tiny_data["rl"], MediaConfig(), "compact", progress=False)


def _fixed_batch(tr: GRPOTrainer) -> list[list[Sequence]]:
    """Four groups of four completions with fixed advantages (so both runs train the very same batch)."""
    groups, *_ = tr._rollout_round(4, 0)
    for g in groups:
        for k, s in enumerate(g):
            s.advantage = (-1.0) ** k * (0.5 + 0.1 * k)
    return groups


def _first_update(tr: GRPOTrainer, groups: list[list[Sequence]]) -> tuple[float, dict[str, torch.Tensor]]:
    """The loss of the step's first optimizer update (the sum of its weighted micro-batch losses) and the
    gradients it accumulated, taken just before the optimizer uses them."""
    losses: list[float] = []
    grads: dict[str, torch.Tensor] = {}
    backward, step = tr.engine.backward, tr.engine.step

    def recording_backward(loss, boundary=None):
        if not grads:
            losses.append(float(loss))
        return backward(loss, boundary=boundary)

    def capturing_step():
        if getattr(tr.engine, "_boundary", False) and not grads:
            grads.update(
                {k: p.grad.detach().clone() for k, p in tr.model.named_parameters() if p.grad is not None}
            )
        return step()

    tr.engine.backward, tr.engine.step = recording_backward, capturing_step
    tr._update(groups)
    return sum(losses), grads


def _assert_same(a: tuple[float, dict], b: tuple[float, dict]) -> None:
    assert abs(a[0] - b[0]) <= 1e-5 * max(1.0, abs(a[0])), (a[0], b[0])
    assert a[1].keys() == b[1].keys() and a[1]
    for k in a[1]:
        assert torch.allclose(a[1][k], b[1][k], rtol=1e-4, atol=1e-7), k


def test_reused_old_logprobs_give_the_same_loss_and_gradients(
    tiny_sft, tiny_data, tmp_path, monkeypatch
) -> None:
    reuse = _trainer(tiny_sft, tiny_data, tmp_path / "a", micro=4)
    separate = _trainer(tiny_sft, tiny_data, tmp_path / "b", micro=4)
    groups = _fixed_batch(reuse)
    forwards = []
    original = trainer_mod.token_logprobs

    def counting(model, batch, dev, with_entropy=False):
        forwards.append(torch.is_grad_enabled())
        return original(model, batch, dev, with_entropy)

    monkeypatch.setattr(trainer_mod, "token_logprobs", counting)
    got = _first_update(reuse, groups)
    # 16 sequences, 8 per update, micro-batches of 4: the first update's two micro-batches need no old forward
    assert forwards.count(False) == 2 and forwards.count(True) == 4
    monkeypatch.setattr(trainer_mod, "dropout_free", lambda model: False)  # the separate forward, as before
    forwards.clear()
    want = _first_update(separate, groups)
    assert forwards.count(False) == 4
    _assert_same(got, want)


def test_length_grouped_micro_batches_give_the_same_loss_and_gradients(tiny_sft, tiny_data, tmp_path) -> None:
    """One micro-batch of 8 per update (no grouping at all) against length-grouped micro-batches of 2."""
    whole = _trainer(tiny_sft, tiny_data, tmp_path / "a", micro=8)
    grouped = _trainer(tiny_sft, tiny_data, tmp_path / "b", micro=2)
    groups = _fixed_batch(whole)
    _assert_same(_first_update(grouped, groups), _first_update(whole, groups))


def test_length_grouped_windows_group_by_length_within_each_update() -> None:
    def seq(i: int, prompt: int, response: int) -> Sequence:
        enc = {"input_ids": torch.zeros(1, prompt, dtype=torch.long)}
        return Sequence(i, None, enc, None, {}, [1] * response)  # type: ignore[arg-type]

    lengths = [(10, 1), (10, 9), (12, 2), (10, 5), (11, 0), (10, 30)]
    seqs = [seq(i, p, r) for i, (p, r) in enumerate(lengths)]
    windows = length_grouped_windows(seqs, per_update=4, micro=2)
    assert [[[s.group for s in b] for b in w] for w in windows] == [[[1, 3], [2, 0]], [[5, 4]]]
    assert sorted(s.group for w in windows for b in w for s in b) == list(range(6))  # each sequence once


def test_logprobs_of_both_layouts_equal_the_full_forward(tiny_sft, tiny_data, tmp_path, monkeypatch) -> None:
    """Every response token's log-prob, from the shared-prefix layout (each prompt once, its responses on copies
    of its KV cache) and from the cropped full layout, equals the full forward's over prompt + response; with
    the LM head on the kept positions only and, as on transformers without a boolean ``logits_to_keep``
    (vLLM's pin), on every position."""
    from onethinker.modeling.inputs import collate, model_inputs

    tr = _trainer(tiny_sft, tiny_data, tmp_path, micro=8)
    seqs = [s for g in _fixed_batch(tr) for s in g][2:12]  # groups split, prompts of different lengths
    want = []
    with torch.no_grad():
        for s in seqs:  # one sequence at a time: no padding at all
            ids = torch.cat([s.encoded["input_ids"], torch.tensor([s.response_ids])], dim=1)
            row = dict(s.encoded, input_ids=ids, attention_mask=torch.ones_like(ids))
            if "mm_token_type_ids" in s.encoded:
                pad = torch.zeros(1, len(s.response_ids), dtype=torch.long)
                row["mm_token_type_ids"] = torch.cat([s.encoded["mm_token_type_ids"], pad], dim=1)
            logits = tr.model(**model_inputs(collate([row], tr.pad_id))).logits[0].float()  # (L, V)
            p = s.encoded["input_ids"].shape[-1]
            logp = logits[p - 1 : -1].log_softmax(-1)  # (R, V): the positions predicting the response
            want.append(logp.gather(-1, torch.tensor(s.response_ids)[:, None]).squeeze(-1))
        for build, boolean in itertools.product((build_batch, trainer_mod.build_shared_batch), (True, False)):
            monkeypatch.setattr(trainer_mod, "_boolean_logits_to_keep", lambda b=boolean: b)
            batch = build(seqs, tr.pad_id)
            lp, ent = trainer_mod.token_logprobs(tr.model, batch, tr.dev, with_entropy=True)
            mask = batch["response_mask"].bool()
            assert lp.shape == mask.shape == ent.shape and int(mask.sum()) == sum(len(w) for w in want)
            for r, w in enumerate(want):
                assert torch.allclose(lp[r][mask[r]], w, atol=1e-4), (build.__name__, boolean, r)
            assert (lp[~mask] == 0).all() and (ent[mask] > 0).all()
    shared = trainer_mod.build_shared_batch(seqs, tr.pad_id)
    assert shared["prompt_input_ids"].shape[0] == len({id(s.encoded) for s in seqs}) < len(seqs)


def test_shared_prefix_gradients_are_bit_identical_run_to_run(tiny_sft, tiny_data, tmp_path) -> None:
    """Issue 16: the shared-prefix layout gives the same gradients bit for bit on every repeat at two CPU
    threads. Each prompt's keys and values are copied to its n responses; ``Cache.batch_select_indices``
    copied them by ``tensor[rows]``, whose backward adds the copies' gradients with parallel atomic float adds
    on CPU, in an order (and so with a rounding) that changed run to run: GRPO drifted after ~50 steps."""
    tr = _trainer(tiny_sft, tiny_data, tmp_path, micro=16)
    seqs = [s for g in _fixed_batch(tr) for s in g]
    seqs = [seqs[i] for i in torch.randperm(len(seqs), generator=torch.Generator().manual_seed(0))]
    batch = trainer_mod.build_shared_batch(seqs, tr.pad_id)
    # prompts are shared and their rows interleaved (as length grouping leaves them): both threads add into
    # the same prompt's gradient
    assert batch["prompt_input_ids"].shape[0] < len(seqs)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        runs = []
        for _ in range(4):
            tr.model.zero_grad(set_to_none=True)
            lp, _ = trainer_mod.token_logprobs(tr.model, batch, tr.dev)
            (lp * torch.linspace(-1.0, 1.0, lp.numel()).view_as(lp)).sum().backward()
            runs.append({k: p.grad.clone() for k, p in tr.model.named_parameters() if p.grad is not None})
    finally:
        torch.set_num_threads(threads)
    for other in runs[1:]:
        assert other.keys() == runs[0].keys() and runs[0]
        for k in runs[0]:
            assert torch.equal(other[k], runs[0][k]), k
