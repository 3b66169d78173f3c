"""Fixtures for the reward tests: score one item through both paths and check they agree."""

from __future__ import annotations

import pytest
from reward_helpers import assert_in_range, assert_same, item

from onethinker.rewards import compute_score, reference


@pytest.fixture
def score():
    """score(response, gt, problem_type, data_type) -> the result dict, checked against the reference."""

    def run(
        response: object, gt: object, problem_type: str, data_type: str = "image", fw: float = 0.1
    ) -> dict:
        it = item(response, gt, problem_type, data_type)
        fast = compute_score([it], fw)[0]
        ref = reference.compute_score([it], fw)[0]
        assert_same(fast, ref)
        assert_in_range(fast, fw)
        return fast

    return run
