"""The Hugging Face engine: batched decoding with the KV cache on the policy itself (CPU and GPU).

Prompts are encoded once with the processor (``encode_prompt``: the chat template plus images and video
frames with their timing metadata, or the tokenizer alone for a text-only causal LM) and left-padded. Since
the engine holds the policy itself, new weights are always in use (``load_weights`` only swaps the module it
holds).

Decoding (``shrink=True``, the default) is our own loop over the model's forward, which spends no compute
on what cannot change the result: each distinct prompt of a batch is prefilled once and its KV cache copied
to its n samples, and a row that has finished (stop token) leaves the batch, its cache rows dropped, so the
later steps run on the live rows only (``model.generate`` keeps computing finished rows until the last one
stops). Everything else is what ``generate`` does: the same position ids (Qwen3-VL's M-RoPE positions from
``get_rope_index``, then one more per step on every axis), the vision placeholders suppressed, the stop
tokens of the model's generation config, greedy argmax, or sampling with temperature then top-p then one
multinomial draw per row from this process's RNG (so greedy completions are the same tokens as
``generate``'s, and sampled ones are drawn from the same distribution). ``shrink=False`` calls
``model.generate``.

With ``sampling.seed`` the batch is sampled under that seed on a forked RNG (reproducible, and the caller's
RNG stream is left alone); with ``sampling.logprobs`` each token's raw log-prob is returned (this keeps the
logits of every step: fine for small vocabularies and short responses, costly at 150k x 4k).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import torch

from onethinker.data.examples import Example
from onethinker.generation.base import Completion, SamplingParams, text_only

VISION_TOKENS = ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>", "<|im_start|>")
"""Tokens a completion must never contain (the model would expect media features for them)."""


def tokenizer_of(processor: Any) -> Any:
    """The tokenizer of a multimodal processor, or the processor itself when it is a bare tokenizer."""
    return getattr(processor, "tokenizer", processor)


def is_text_only(processor: Any) -> bool:
    """A bare tokenizer (a text-only causal LM's folder) rather than a processor with image/video parts."""
    return not hasattr(processor, "image_processor")


def encode_prompt(processor: Any, example: Example) -> dict[str, torch.Tensor]:
    """One generation prompt as model inputs (a batch of one), the same for every engine and the trainer.

    Multimodal processors go through ``onethinker.modeling.inputs.encode_chat``; a bare tokenizer (text-only
    model) renders the example without its media: input_ids and attention_mask (1, L) only.
    """
    if not is_text_only(processor):
        from onethinker.modeling.inputs import encode_chat

        return encode_chat(
            processor, example.messages, example.images, example.videos, add_generation_prompt=True
        )
    out = processor.apply_chat_template(
        text_only(example).messages,
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
    )
    return {k: out[k].long() for k in ("input_ids", "attention_mask")}


def suppressed_ids(tokenizer: Any) -> list[int]:
    ids = tokenizer.convert_tokens_to_ids(list(VISION_TOKENS))
    return [i for i in ids if i is not None and i != tokenizer.unk_token_id]


def stop_ids(model: torch.nn.Module) -> set[int]:
    eos = model.generation_config.eos_token_id
    return set(eos if isinstance(eos, list) else [eos])


def cut_at_stop(row: Sequence[int], stops: set[int]) -> tuple[list[int], bool]:
    """The tokens before the first stop token, and whether one was found (the completion finished)."""
    ids: list[int] = []
    for t in row:
        if t in stops:
            return ids, True
        ids.append(int(t))
    return ids, False


class HFRolloutEngine:
    """Hugging Face ``generate`` on the policy model itself (so new weights are always in use)."""

    name = "hf"

    def __init__(
        self,
        model: torch.nn.Module,
        processor: Any,
        batch_size: int = 32,
        device: str | None = None,
        shrink: bool = True,
    ):
        self.model = model
        self.processor = processor
        self.batch_size = batch_size
        self.shrink = shrink
        self.device = device or next(model.parameters()).device
        tok = tokenizer_of(processor)
        self.tokenizer = tok
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self.eos_ids = stop_ids(model)
        self.suppress = suppressed_ids(tok)

    def load_weights(self, model: torch.nn.Module) -> None:
        self.model = model

    def encode(self, example: Example) -> dict[str, torch.Tensor]:
        return encode_prompt(self.processor, example)

    @torch.no_grad()
    def generate(
        self,
        examples: Sequence[Example],
        sampling: SamplingParams,
        encoded: Sequence[dict[str, torch.Tensor]] | None = None,
    ) -> list[list[Completion]]:
        from onethinker.modeling.inputs import collate, model_inputs

        encoded = list(encoded) if encoded is not None else [self.encode(ex) for ex in examples]
        flat = [e for e in encoded for _ in range(sampling.n)]
        out_rows: list[Completion] = []
        was_training = self.model.training
        self.model.eval()
        gen_kwargs: dict[str, Any] = {
            "max_new_tokens": sampling.max_new_tokens,
            "pad_token_id": self.pad_id,
            "use_cache": True,
            "suppress_tokens": self.suppress,
        }
        if sampling.is_greedy:
            gen_kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            gen_kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
        if sampling.logprobs:
            gen_kwargs.update(return_dict_in_generate=True, output_logits=True)
        seeded = sampling.seed is not None and not sampling.is_greedy
        rng: Any = contextlib.nullcontext()
        if seeded:
            devices = [self.device] if torch.device(self.device).type == "cuda" else []
            rng = torch.random.fork_rng(devices=devices)
        try:
            with rng:
                if seeded:
                    torch.manual_seed(int(sampling.seed))
                for i in range(0, len(flat), self.batch_size):
                    if self.shrink:
                        for ids, finished, lp in self._decode(flat[i : i + self.batch_size], sampling):
                            text = self.tokenizer.decode(ids, skip_special_tokens=True)
                            out_rows.append(
                                Completion(text=text, token_ids=ids, finished=finished, logprobs=lp)
                            )
                        continue
                    batch = collate(flat[i : i + self.batch_size], self.pad_id, padding_side="left")
                    inputs = {k: v.to(self.device) for k, v in model_inputs(batch).items()}
                    out = self.model.generate(**inputs, **gen_kwargs)
                    seqs = out.sequences if sampling.logprobs else out
                    new = seqs[:, inputs["input_ids"].shape[1] :]  # (B, T)
                    logp = None
                    if sampling.logprobs:
                        raw = torch.stack(out.logits, dim=1).float().log_softmax(-1)  # (B, T, V)
                        logp = raw.gather(-1, new.unsqueeze(-1)).squeeze(-1).tolist()  # (B, T)
                    for r, row in enumerate(new.tolist()):
                        ids, finished = cut_at_stop(row, self.eos_ids)
                        text = self.tokenizer.decode(ids, skip_special_tokens=True)
                        lp = logp[r][: len(ids)] if logp is not None else None
                        out_rows.append(Completion(text=text, token_ids=ids, finished=finished, logprobs=lp))
        finally:
            self.model.train(was_training)
        return [out_rows[j * sampling.n : (j + 1) * sampling.n] for j in range(len(encoded))]

    # ---------------------------------------------------------------------------------- own decoding loop
    def _decode(
        self, rows: list[dict[str, torch.Tensor]], sampling: SamplingParams
    ) -> list[tuple[list[int], bool, list[float] | None]]:
        """Decode one batch of rows (consecutive rows holding the same encoded prompt share its prefill).
        Returns, per row, the tokens before the stop token, whether it stopped, and the tokens' raw log-probs
        when ``sampling.logprobs``."""
        from onethinker.modeling.inputs import collate, model_inputs

        unique: list[dict[str, torch.Tensor]] = []
        counts: list[int] = []
        for enc in rows:
            if unique and enc is unique[-1]:
                counts[-1] += 1
            else:
                unique.append(enc)
                counts.append(1)
        batch = collate(unique, self.pad_id, padding_side="left")
        inputs = {k: v.to(self.device) for k, v in model_inputs(batch).items()}
        mask = inputs["attention_mask"]  # (U, P)
        positions = prefill_positions(self.model, inputs)  # (4, U, P) for M-RoPE models, else (U, P)
        out = self.model(**inputs, position_ids=positions, use_cache=True, logits_to_keep=1)
        cache = out.past_key_values
        copies = torch.repeat_interleave(
            torch.arange(len(unique), device=mask.device), torch.tensor(counts, device=mask.device)
        )  # (B,): the prompt of each row
        cache.batch_select_indices(copies)
        logits = out.logits[:, -1].float()[copies]  # (B, V)
        mask, last = mask[copies], positions[..., -1:].index_select(-2, copies)  # (B, P), (4, B, 1) / (B, 1)
        live = torch.arange(len(rows), device=mask.device)  # (b,): the row of each live batch entry
        tokens: list[list[int]] = [[] for _ in rows]
        logps: list[list[float]] = [[] for _ in rows]
        finished = [False] * len(rows)
        stops = torch.tensor(sorted(self.eos_ids), device=mask.device)
        suppress = torch.tensor(self.suppress, dtype=torch.long, device=mask.device)
        for t in range(sampling.max_new_tokens):
            chosen = choose_tokens(logits, sampling, suppress)  # (b,)
            if sampling.logprobs:
                lp = logits.log_softmax(-1).gather(-1, chosen[:, None]).squeeze(-1)
                for r, v in zip(live.tolist(), lp.tolist(), strict=True):
                    logps[r].append(v)
            done = torch.isin(chosen, stops)  # (b,)
            for r, tok, d in zip(live.tolist(), chosen.tolist(), done.tolist(), strict=True):
                tokens[r].append(tok)
                finished[r] = d
            if t == sampling.max_new_tokens - 1 or bool(done.all()):
                break
            if bool(done.any()):  # finished rows leave the batch: their cache rows, mask and positions
                keep = (~done).nonzero().squeeze(1)
                cache.batch_select_indices(keep)
                mask, last, live, chosen = mask[keep], last.index_select(-2, keep), live[keep], chosen[keep]
            last = last + 1
            mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
            out = self.model(
                input_ids=chosen[:, None],
                attention_mask=mask,
                position_ids=last,
                past_key_values=cache,
                use_cache=True,
            )
            logits = out.logits[:, -1].float()
        results = []
        for r in range(len(rows)):
            ids = tokens[r][:-1] if finished[r] else tokens[r]
            results.append((ids, finished[r], logps[r][: len(ids)] if sampling.logprobs else None))
        return results


def prefill_positions(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """The position ids ``generate`` gives a left-padded prompt batch: the text positions (0 on padding) and,
    for Qwen3-VL, its three M-RoPE rows from ``get_rope_index`` (the text positions on all three without
    media) stacked under them, (4, B, P); (B, P) for a text-only causal LM."""
    mask = inputs["attention_mask"]
    text = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)  # (B, P)
    inner = getattr(model, "model", None)
    if not hasattr(inner, "get_rope_index"):
        return text
    if "image_grid_thw" in inputs or "pixel_values_videos" in inputs:
        mrope, _ = inner.get_rope_index(
            inputs["input_ids"],
            mm_token_type_ids=inputs["mm_token_type_ids"],
            image_grid_thw=inputs.get("image_grid_thw"),
            video_grid_thw=inputs.get("video_grid_thw"),
            attention_mask=mask,
        )
    else:
        mrope = text[None].expand(3, -1, -1)
    return torch.cat([text[None], mrope.to(text.device)], dim=0)


def sampling_scores(logits: torch.Tensor, sampling: SamplingParams, suppress: torch.Tensor) -> torch.Tensor:
    """The scores (b, V) ``generate``'s logits processors make of raw logits for ``sampling``: suppressed
    tokens at -inf, then (sampling only) divided by the temperature and cut to the top-p nucleus with
    ``TopPLogitsWarper``'s rule (at least the most likely token kept; skipped at top_p = 1)."""
    scores = logits.clone()
    if suppress.numel():
        scores[:, suppress] = -float("inf")
    if sampling.is_greedy:
        return scores
    scores = scores / sampling.temperature
    if sampling.top_p < 1.0:
        sorted_scores, order = torch.sort(scores, descending=False)
        cumulative = sorted_scores.softmax(-1).cumsum(-1)
        remove = cumulative <= (1 - sampling.top_p)
        remove[..., -1:] = False
        scores = scores.masked_fill(remove.scatter(1, order, remove), -float("inf"))
    return scores


def choose_tokens(logits: torch.Tensor, sampling: SamplingParams, suppress: torch.Tensor) -> torch.Tensor:
    """Next token of each row (b,) from raw logits (b, V), as ``generate`` picks it: the argmax of the
    processed scores (greedy) or one multinomial draw per row from their softmax."""
    scores = sampling_scores(logits, sampling, suppress)
    if sampling.is_greedy:
        return scores.argmax(-1)
    return torch.multinomial(scores.softmax(-1), num_samples=1).squeeze(1)
