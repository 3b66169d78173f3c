"""Text and number metrics: mean relative accuracy, word error rate and ROUGE.

All functions are pure. The fast paths are exact re-implementations of the usual definitions:

- ``edit_distance`` and ``lcs_length`` use bit-parallel algorithms (Myers/Hyyrö for Levenshtein,
  Allison-Dix/Hyyrö for LCS) over Python integers, so a pair costs O(len(b)) big-integer operations
  instead of O(len(a) * len(b)) interpreted steps. They are tested against the plain dynamic programme.
- ``rouge_f`` reproduces ``rouge_score.rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"],
  use_stemmer=True)`` bit for bit (same tokenizer, same Porter stemmer, same float expressions), with
  the stemmer memoised per word.
- ``mean_relative_accuracy`` follows the float32 arithmetic of the published OneThinker reward (which
  used torch float32 tensors), so its values match that reward exactly.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from functools import lru_cache
from typing import NamedTuple

import numpy as np

# ---------------------------------------------------------------------------------------------------
# Mean relative accuracy (VSI-Bench style), float32 like the published reward.
# ---------------------------------------------------------------------------------------------------

#: Confidence thresholds 0.50, 0.55, ..., 0.95, computed in float64 then stored as float32
#: (as torch.arange does on CPU).
MRA_THRESHOLDS = (0.5 + 0.05 * np.arange(10)).astype(np.float32)
_ONE_MINUS_THETA = np.float32(1.0) - MRA_THRESHOLDS  # (10,) float32
_EPS32 = np.float32(1e-8)


def mean_relative_accuracy(
    pred: Sequence[float] | np.ndarray, gt: Sequence[float] | np.ndarray
) -> np.ndarray:
    """Element-wise MRA: the fraction of the 10 thresholds θ with |p - g| / (|g| + 1e-8) < 1 - θ.

    Inputs are cast to float32 and the arithmetic stays in float32; the result is float32(k) / 10
    returned as float64 (0.7 comes back as 0.699999988079071, as in the published reward).
    Non-finite inputs give 0. Shapes: pred (N,), gt (N,) -> (N,).
    """
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        p = np.asarray(pred, dtype=np.float64).astype(np.float32)  # (N,)
        g = np.asarray(gt, dtype=np.float64).astype(np.float32)  # (N,)
        rel = np.abs(p - g) / (np.abs(g) + _EPS32)  # (N,) float32
        hits = (rel[..., None] < _ONE_MINUS_THETA).sum(axis=-1).astype(np.float32)  # (N,)
        return (hits / np.float32(10.0)).astype(np.float64)


# ---------------------------------------------------------------------------------------------------
# Edit distance, WER and LCS
# ---------------------------------------------------------------------------------------------------


def edit_distance(a: Sequence[Hashable], b: Sequence[Hashable]) -> int:
    """Levenshtein distance between two sequences (unit costs), bit-parallel (Myers 1999, Hyyrö 2001)."""
    m = len(a)
    if m == 0:
        return len(b)
    if len(b) == 0:
        return m
    peq: dict[Hashable, int] = {}
    for i, tok in enumerate(a):
        peq[tok] = peq.get(tok, 0) | (1 << i)
    mask = (1 << m) - 1
    high = 1 << (m - 1)
    pv, mv, score = mask, 0, m
    for tok in b:
        eq = peq.get(tok, 0)
        xv = eq | mv
        xh = (((eq & pv) + pv) ^ pv) | eq
        ph = mv | ~(xh | pv)
        mh = pv & xh
        if ph & high:
            score += 1
        elif mh & high:
            score -= 1
        ph = (ph << 1) | 1  # row 0 of the table grows by one per column: global, not search, distance
        mh <<= 1
        pv = (mh | ~(xv | ph)) & mask
        mv = ph & xv & mask
    return score


def word_error_rate(reference: str, hypothesis: str) -> float:
    """WER = word-level edit distance (whitespace split) / max(1, number of reference words)."""
    ref = reference.split()
    return edit_distance(ref, hypothesis.split()) / max(1, len(ref))


def ocr_accuracy(reference: str, hypothesis: str) -> float:
    """clip(1 - WER, 0, 1)."""
    return max(0.0, min(1.0, 1.0 - word_error_rate(reference, hypothesis)))


def _masks(a: Sequence[Hashable]) -> dict[Hashable, int]:
    """Bit masks of the positions of each token in ``a``."""
    out: dict[Hashable, int] = {}
    for i, tok in enumerate(a):
        out[tok] = out.get(tok, 0) | (1 << i)
    return out


def lcs_length(
    a: Sequence[Hashable], b: Sequence[Hashable], a_masks: dict[Hashable, int] | None = None
) -> int:
    """Length of the longest common subsequence, bit-parallel (Allison-Dix 1986, Hyyrö 2004).

    ``a_masks`` (``_masks(a)``) may be passed when ``a`` is compared with many sequences.
    """
    m = len(a)
    if m == 0 or len(b) == 0:
        return 0
    match = _masks(a) if a_masks is None else a_masks
    mask = (1 << m) - 1
    v = mask
    for tok in b:
        u = v & match.get(tok, 0)
        if u:
            v = ((v + u) | (v - u)) & mask
    return m - v.bit_count()


# ---------------------------------------------------------------------------------------------------
# ROUGE (rouge-score compatible, stemmer on)
# ---------------------------------------------------------------------------------------------------

_NON_ALNUM = re.compile(r"[^a-z0-9]+")
_VALID_TOKEN = re.compile(r"^[a-z0-9]+$")


@lru_cache(maxsize=1)
def _porter():  # noqa: ANN202 - nltk type
    from nltk.stem import porter

    return porter.PorterStemmer()


_STEM_CACHE_MAX = 1 << 18


class _Stems(dict):
    """word -> rouge-score's token ("" if dropped): stem words longer than 3 characters, keep only
    [a-z0-9]+ tokens. Memoised: hits are a C-level dict lookup."""

    def __missing__(self, word: str) -> str:
        out = _porter().stem(word) if len(word) > 3 else word
        out = out if _VALID_TOKEN.match(out) else ""
        if len(self) < _STEM_CACHE_MAX:
            self[word] = out
        return out


_STEMS = _Stems()


def rouge_tokenize(text: str) -> list[str]:
    """rouge_score.tokenize.tokenize(text, PorterStemmer()) with a memoised stemmer."""
    return [t for t in map(_STEMS.__getitem__, _NON_ALNUM.sub(" ", text.lower()).split()) if t]


def _f(precision: float, recall: float) -> float:
    # rouge_score.scoring.fmeasure, same expression.
    if precision + recall > 0:
        return 2 * precision * recall / (precision + recall)
    return 0.0


def _ngram_f(target: Counter, target_total: int, pred: Iterable[Hashable], pred_total: int) -> float:
    """rouge-score's n-gram F: overlap = sum over n-grams of min(target count, prediction count)."""
    remaining = target.copy()
    inter = 0
    for ng in pred:
        c = remaining.get(ng)
        if c:
            remaining[ng] = c - 1
            inter += 1
    precision = inter / max(pred_total, 1)
    recall = inter / max(target_total, 1)
    return _f(precision, recall)


class RougeF(NamedTuple):
    """F-measures of ROUGE-1, ROUGE-2, ROUGE-L."""

    rouge1: float
    rouge2: float
    rougeL: float  # noqa: N815 - the field's usual name

    @property
    def mean(self) -> float:
        return (self.rouge1 + self.rouge2 + self.rougeL) / 3.0


class RougeTokens(NamedTuple):
    """Pre-tokenized text; for a target also its unigram / bigram counts and LCS bit masks."""

    tokens: list[str]
    unigrams: Counter | None = None
    bigrams: Counter | None = None
    masks: dict | None = None


def rouge_prepare(text: str, target: bool = False) -> RougeTokens:
    """Tokenize once for many comparisons (``target``: also what the target side needs)."""
    toks = rouge_tokenize(text)
    if not target:
        return RougeTokens(toks)
    return RougeTokens(toks, Counter(toks), Counter(zip(toks, toks[1:], strict=False)), _masks(toks))


def rouge_f_prepared(target: RougeTokens, pred: RougeTokens) -> RougeF:
    """ROUGE-1/2/L F of a prediction against a target prepared with ``target=True``."""
    t, p = target.tokens, pred.tokens
    r1 = _ngram_f(target.unigrams, len(t), p, len(p))  # type: ignore[arg-type]
    r2 = _ngram_f(target.bigrams, max(len(t) - 1, 0), zip(p, p[1:], strict=False), max(len(p) - 1, 0))  # type: ignore[arg-type]
    if not t or not p:
        rl = 0.0
    else:
        lcs = lcs_length(t, p, target.masks)
        rl = _f(lcs / len(p), lcs / len(t))
    return RougeF(r1, r2, rl)


def rouge_f(target: str, prediction: str) -> RougeF:
    """ROUGE-1/2/L F-measures of ``prediction`` against ``target`` (rouge-score, stemmer on)."""
    return rouge_f_prepared(rouge_prepare(target, target=True), rouge_prepare(prediction))


def rouge_mean(target: str, prediction: str) -> float:
    """clip(mean of ROUGE-1, ROUGE-2, ROUGE-L F-measures, 0, 1): the open-ended accuracy."""
    return max(0.0, min(1.0, rouge_f(target, prediction).mean))


def clear_caches() -> None:
    """Forget memoised stems (for cold-start timings)."""
    _STEMS.clear()
