"""The reward's time and size budget: the pre-screen's arithmetic, and the worker's deadline off the main thread."""

from __future__ import annotations

import threading
import time

import pytest
from reward_helpers import item, wrap

from onethinker.rewards import RewardConfig, compute_score, reference
from onethinker.rewards.sandbox import _power_digits, over_budget, sandbox


@pytest.mark.parametrize(
    ("text", "digits"),
    [
        ("2^{10}", 4.0103),  # 1024: log10 + 1
        ("2**10", 4.0103),
        ("x^2 + 2^{3}", 1.9031),  # 8
        ("9**9**9", 369_693_100.0),  # 9 ** 387420489: 3.7e8 digits
        ("10**10**10**10", float("inf")),
        ("9^{9^{9}}", 369_693_100.0),
    ],
)
def test_power_digits(text: str, digits: float) -> None:
    assert _power_digits(text) == pytest.approx(digits, rel=1e-3)


@pytest.mark.parametrize(
    ("text", "refused"),
    [
        ("\\frac{1}{2}", False),
        ("2^{100}", False),
        ("2**100000", False),  # 30,104 digits: under the 100,000-digit limit, sympy may try it
        ("1e999999", True),
        ("1e300", False),
        ("99999999!", True),
        ("120!", False),
        ("(" * 41 + "1" + ")" * 41, True),
        ("(" * 10 + "1" + ")" * 10, False),
        ("x" * 2001, True),
        ("x" * 2000, False),
    ],
)
def test_pre_screen(text: str, refused: bool) -> None:
    assert over_budget(text, 2000) is refused


def test_the_deadline_holds_off_the_main_thread() -> None:
    """A comparison over its budget is cut in a worker thread too (math-verify's own limit needs SIGALRM, which
    only the main thread gets): it scores 0 as ``timeout``, and the worker is replaced."""
    box = sandbox()
    tight = RewardConfig(timeout_s=0.001)  # far less than any sympy comparison takes
    items = [
        item(wrap("(x+1)^2 - x^2 - 2x"), "1", "math"),
        item(wrap("x^2+2x+1"), "(x+1)^2", "multiple choice"),
    ]
    out: dict[str, object] = {}

    def score() -> None:
        t0 = time.monotonic()
        out["fast"] = compute_score(items, options=tight)
        out["ref"] = reference.compute_score(items, options=tight)
        out["seconds"] = time.monotonic() - t0

    restarts = box.stats["restarts"]
    worker = threading.Thread(target=score)
    worker.start()
    worker.join(timeout=300)
    assert not worker.is_alive()
    for scores in (out["fast"], out["ref"]):
        for s in scores:  # type: ignore[union-attr]
            assert s["accuracy"] == 0.0 and s["reasons"] == ["timeout"]
    assert box.stats["restarts"] >= restarts + 2
    # and with the default budget the same answers are graded for real
    assert all("timeout" not in s["reasons"] for s in compute_score(items))
