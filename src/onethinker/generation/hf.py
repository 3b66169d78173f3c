"""The Hugging Face engine: batched ``model.generate`` on the policy itself (CPU and GPU).

Prompts are encoded once with the processor (``encode_prompt``: the chat template plus images and video
frames with their timing metadata, or the tokenizer alone for a text-only causal LM), left-padded and
decoded with the KV cache; each prompt is repeated n times in the batch. Since the engine holds the policy
itself, new weights are always in use (``load_weights`` only swaps the module it holds).

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
        self, model: torch.nn.Module, processor: Any, batch_size: int = 32, device: str | None = None
    ):
        self.model = model
        self.processor = processor
        self.batch_size = batch_size
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
