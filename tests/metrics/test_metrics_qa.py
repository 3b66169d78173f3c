"""QA metrics over sets."""

from __future__ import annotations

import pytest

from onethinker import metrics as M


def test_qa_metrics() -> None:
    assert M.accuracy(["B", " b ", "C"], ["B", "B", "B"]) == pytest.approx(2 / 3)
    assert M.ocr_score(["the quick brown dog", "x"], ["the quick brown fox", "x"]) == pytest.approx(
        (0.75 + 1) / 2
    )
    out = M.rouge_scores(["the cat", "the cat sat"], ["the cat sat", "the cat sat"])
    assert out["rouge1"] == pytest.approx((0.8 + 1) / 2)
    assert out["rouge2"] == pytest.approx((2 / 3 + 1) / 2)
    assert out["rouge_mean"] == pytest.approx(((0.8 + 2 / 3 + 0.8) / 3 + 1) / 2)
    assert M.accuracy([], []) == 0.0 and M.rouge_scores([], [])["rougeL"] == 0.0
    with pytest.raises(ValueError):
        M.accuracy(["a"], [])
