"""A byte-level BPE tokenizer trained offline, with Qwen3-VL's special tokens and a Qwen-style chat template.

- Pre-tokenisation is Qwen2's regex with one change: a run of digits, with the space before it, stays together
  (`` ?\\p{N}+`` instead of ``\\p{N}``), so BPE can learn frequent numbers (``" 512"``, ``"1000"``) as single
  tokens. Box coordinates on the 0-1000 grid and counts then cost one or two tokens instead of three or four.
- Special tokens (ids after the learned vocabulary): ``<|endoftext|>`` (padding), ``<|im_start|>``,
  ``<|im_end|>`` (end of a turn, the generation stop token), ``<|vision_start|>``, ``<|vision_end|>``,
  ``<|image_pad|>``, ``<|video_pad|>``. The reasoning tags ``<think> </think> <answer> </answer>`` are
  added as *normal* (non-special) tokens, one id each, as Qwen3 does: they survive
  ``skip_special_tokens=True`` when decoding, so a reward function sees them.
- The chat template renders ``<|im_start|>role\\n...<|im_end|>\\n`` turns; an image is
  ``<|vision_start|><|image_pad|><|vision_end|>`` and a video is a bare ``<|video_pad|>``, which
  ``Qwen3VLProcessor`` expands into its per-frame ``<t seconds><|vision_start|>...<|vision_end|>`` layout.
  An assistant turn's content and its closing ``<|im_end|>`` sit inside ``{% generation %}`` markers, so
  ``apply_chat_template(..., return_assistant_tokens_mask=True)`` marks exactly the tokens a model must learn.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

PAD_TOKEN = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
VISION_START = "<|vision_start|>"
VISION_END = "<|vision_end|>"
IMAGE_PAD = "<|image_pad|>"
VIDEO_PAD = "<|video_pad|>"
SPECIAL_TOKENS: tuple[str, ...] = (
    PAD_TOKEN,
    IM_START,
    IM_END,
    VISION_START,
    VISION_END,
    IMAGE_PAD,
    VIDEO_PAD,
)
REASONING_TOKENS: tuple[str, ...] = ("<think>", "</think>", "<answer>", "</answer>")

# Qwen2's pre-tokenizer regex with a run of digits (and the space before it) kept together (`` ?\p{N}+``)
# instead of split one digit at a time (``\p{N}``).
PRETOKENIZE_REGEX = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""

CHAT_TEMPLATE = """\
{%- for message in messages %}
    {{- '<|im_start|>' + message['role'] + '\\n' }}
    {%- if message['role'] == 'assistant' %}
        {%- generation %}
            {%- if message['content'] is string %}
                {{- message['content'] }}
            {%- else %}
                {%- for part in message['content'] if part['type'] == 'text' %}
                    {{- part['text'] }}
                {%- endfor %}
            {%- endif %}
            {{- '<|im_end|>' }}
        {%- endgeneration %}
        {{- '\\n' }}
    {%- else %}
        {%- if message['content'] is string %}
            {{- message['content'] }}
        {%- else %}
            {%- for part in message['content'] %}
                {%- if part['type'] == 'image' or 'image' in part or 'image_url' in part %}
                    {{- '<|vision_start|><|image_pad|><|vision_end|>' }}
                {%- elif part['type'] == 'video' or 'video' in part %}
                    {{- '<|video_pad|>' }}
                {%- elif part['type'] == 'text' %}
                    {{- part['text'] }}
                {%- endif %}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""
"""Qwen-style chat template (no default system prompt; pass one as a ``system`` message)."""


def _pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE of at most ``vocab_size`` tokens (special and reasoning tokens included).

    Offline and deterministic for a given corpus order. The learned vocabulary comes first (the 256 byte
    symbols, then merges); the 7 special and 4 reasoning tokens take the last ids.
    """
    n_added = len(SPECIAL_TOKENS) + len(REASONING_TOKENS)
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if vocab_size < len(alphabet) + n_added:
        raise ValueError(f"vocab_size must be at least {len(alphabet) + n_added}, got {vocab_size}")
    tok = Tokenizer(
        models.BPE(
            unk_token=None,
            continuing_subword_prefix="",
            end_of_word_suffix="",
            fuse_unk=False,
            byte_fallback=False,
        )
    )
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = _pre_tokenizer()
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - n_added,
        min_frequency=2,
        show_progress=False,
        initial_alphabet=alphabet,
        special_tokens=[],
    )
    # The tags and special tokens must not shape the merges: strip them from the training text.
    strip = (*SPECIAL_TOKENS, *REASONING_TOKENS)

    def cleaned() -> Iterable[str]:
        for text in texts:
            for token in strip:
                text = text.replace(token, " ")
            yield text

    tok.train_from_iterator(cleaned(), trainer=trainer)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in REASONING_TOKENS])

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=IM_END,
        pad_token=PAD_TOKEN,
        unk_token=None,
        bos_token=None,
        model_max_length=32768,
        padding_side="right",
        clean_up_tokenization_spaces=False,
        extra_special_tokens={
            "image_token": IMAGE_PAD,
            "video_token": VIDEO_PAD,
            "vision_start_token": VISION_START,
            "vision_end_token": VISION_END,
        },
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def assistant_token_mask(input_ids: list[int], tokenizer: PreTrainedTokenizerFast) -> list[int]:
    """Reference mask from the token ids alone: 1 on each assistant reply and its ``<|im_end|>``, else 0.

    A reply starts after ``<|im_start|>assistant\\n`` and runs through the next ``<|im_end|>`` (or the end of
    the sequence when truncated). Used to check the template's ``{% generation %}`` markers, and as a
    fallback for templates that lack them.
    """
    header = tokenizer(f"{IM_START}assistant\n", add_special_tokens=False)["input_ids"]
    im_end = tokenizer.convert_tokens_to_ids(IM_END)
    mask = [0] * len(input_ids)
    i, n, h = 0, len(input_ids), len(header)
    while i < n:
        if input_ids[i : i + h] == header:
            j = i + h
            while j < n and input_ids[j] != im_end:
                mask[j] = 1
                j += 1
            if j < n:
                mask[j] = 1
            i = j + 1
        else:
            i += 1
    return mask
