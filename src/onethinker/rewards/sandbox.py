"""Symbolic grading under a hard time and size budget, in a worker process.

mathruler (sympy) and math-verify can run for minutes on one answer, or forever: ``9**9**9`` as a
multiple-choice answer makes sympy compute a 369-million-digit integer inside a single C call, which no
signal can interrupt, and math-verify's own time limit relies on ``SIGALRM``, which only works on the main
thread. So every symbolic comparison runs here:

1. a pre-screen (:func:`over_budget`) turns away, without running anything, answers longer than
   ``max_answer_chars`` and answers whose evaluation is known to explode (power towers and huge powers,
   scientific notation with huge exponents, huge factorials, deep nesting);
2. everything else is sent to one long-lived worker process (``python -m onethinker.rewards.sandbox``,
   one request per line of JSON on its stdin, one verdict per line on its stdout) and the caller waits at
   most ``timeout_s`` for the verdict. Past the deadline the worker is killed (SIGKILL) and a fresh one is
   started straight away; the answer gets :data:`TIMEOUT`.

Both give :data:`TIMEOUT`, which the rewards score 0 with the reason ``timeout``. Waiting uses ``select``
on a pipe, so the budget holds in any thread (calls from several threads are serialised) and in any process
(a forked child starts its own worker). The worker also caps its address space (``WORKER_MEMORY_MB``): an
allocation past it is reported as over budget too.

Cost on the normal path: one round trip through a pipe per distinct (answer, ground truth) pair that needs
sympy (about 0.1 ms), on top of the comparison itself; option letters never leave the process
(``make bench`` prints the figures).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import math
import os
import re
import select
import subprocess
import sys
import threading
import time
from typing import Any


class _Timeout:
    __slots__ = ()

    def __repr__(self) -> str:
        return "TIMEOUT"

    def __bool__(self) -> bool:  # never mistaken for a True verdict
        return False


TIMEOUT = _Timeout()
"""The verdict of a comparison that did not finish within its budget (or was refused by the pre-screen)."""

STARTUP_TIMEOUT_S = 120.0
"""How long a fresh worker may take to import sympy, mathruler and math-verify (not part of any budget)."""
WORKER_MEMORY_MB = 4096
"""Address-space cap of the worker process (RLIMIT_AS)."""
MAX_NESTING = 40
"""Deeper bracket nesting than this is refused by the pre-screen (sympy and the LaTeX parsers recurse)."""
MAX_DIGITS = 100_000
"""A power or factorial of literals with more digits than this is refused by the pre-screen."""


# --------------------------------------------------------------------------------------------------
# Pre-screen: answers whose symbolic evaluation is known to explode

_NUMBER = r"\d+(?:\.\d*)?(?:[eE][+-]?\d+)?"
_SCI = re.compile(r"\d(?:\.\d*)?[eE]\s*[+-]?\s*(\d+)")
_FACTORIAL = re.compile(r"(\d+)\s*!")
_POWER_TOKEN = re.compile(
    rf"\s*(?:(\*\*|\^)|({_NUMBER})|([({{\[])|([)}}\]])|(\\left|\\right)|(.))", re.DOTALL
)


def _nesting(text: str) -> int:
    depth = best = 0
    for ch in text:
        if ch in "([{":
            depth += 1
            best = max(best, depth)
        elif ch in ")]}":
            depth = max(0, depth - 1)
    return best


def _power_digits(text: str) -> float:
    """The largest number of decimal digits of a power of number literals in ``text`` (towers included),
    estimated in log space: ``9**9**9`` -> 3.7e8, ``10**10**10**10`` -> inf, ``2^{10}`` -> 4."""
    tokens: list[tuple[str, str]] = []
    for m in _POWER_TOKEN.finditer(text):
        if m.group(1):
            tokens.append(("pow", m.group(1)))
        elif m.group(2):
            tokens.append(("num", m.group(2)))
        elif m.group(3):
            tokens.append(("open", m.group(3)))
        elif m.group(4):
            tokens.append(("close", m.group(4)))
        elif m.group(5):
            continue  # \left( and \right) are just brackets
        else:
            tokens.append(("other", m.group(6)))
    worst = 0.0
    i = 0
    while i < len(tokens):
        if tokens[i][0] != "num":
            i += 1
            continue
        chain, j = [tokens[i][1]], i + 1
        # num (pow [open]* num)*: brackets around an exponent are allowed (2^{3^{4}}, 9**(9**9))
        while j < len(tokens) and tokens[j][0] == "pow":
            k = j + 1
            while k < len(tokens) and tokens[k][0] == "open":
                k += 1
            if k < len(tokens) and tokens[k][0] == "num":
                chain.append(tokens[k][1])
                j = k + 1
            else:
                break
        if len(chain) > 1:
            worst = max(worst, _tower_digits(chain))
        i = j if j > i + 1 else i + 1
    return worst


def _tower_digits(chain: list[str]) -> float:
    """Digits of ``chain[0] ** chain[1] ** ...`` (right-associative), estimated in log space; inf when even
    the estimate overflows."""
    try:
        exponent = float(chain[-1])  # the top of the tower
        if not math.isfinite(exponent):
            return math.inf
        for pos in range(len(chain) - 2, -1, -1):
            base = abs(float(chain[pos]))
            if base <= 1.0:
                exponent = 1.0  # a power of a base <= 1 stays small
                continue
            log10 = exponent * math.log10(base)  # log10(base ** exponent)
            if log10 > 300:  # beyond a float: base ** exponent is astronomically large
                return log10 + 1 if pos == 0 else math.inf  # a further power of it: inf
            exponent = base**exponent
        return math.log10(exponent) + 1 if exponent >= 1 else 1.0
    except (OverflowError, ValueError):
        return math.inf


def over_budget(text: str, max_chars: int) -> bool:
    """True when ``text`` must not be compared symbolically: too long, or known to explode."""
    if len(text) > max_chars:
        return True
    if _nesting(text) > MAX_NESTING:
        return True
    for m in _SCI.finditer(text):
        if len(m.group(1)) > 4:  # 1e99999 and beyond
            return True
    for m in _FACTORIAL.finditer(text):
        if len(m.group(1)) > 4:  # 10000! and beyond
            return True
    return ("**" in text or "^" in text) and _power_digits(text) > MAX_DIGITS


# --------------------------------------------------------------------------------------------------
# The worker (this module run as a script)


def _worker_ops() -> dict[str, Any]:
    from onethinker.rewards import batched, definitions

    definitions._libs()

    def grade(given: str, gt: str) -> bool:
        return definitions.grade_answer_unbounded(given, gt)

    def grade_steps(given: str, gt: str) -> bool:
        try:
            return batched._mathruler_grade(given, gt)
        except Exception:  # noqa: BLE001 - as mathruler's grade_answer: an exception grades False
            return False

    def math_(gt: str, answer: str, strict: bool) -> bool:
        return definitions.math_equivalent_unbounded(gt, answer, strict)

    def clear() -> bool:  # the worker's own caches (math-verify's parses, sympy's), for cold-start timings
        from math_verify.parser import parse_expr_cached, parse_latex_cached
        from sympy.core.cache import clear_cache

        parse_expr_cached.cache_clear()
        parse_latex_cached.cache_clear()
        definitions.math_parse.cache_clear()
        clear_cache()
        return True

    ops = {"grade": grade, "grade_steps": grade_steps, "math": math_, "clear": clear}
    # Warm up before reporting ready: the graders build parsers, regexes and caches on first use (seconds on
    # a loaded machine), which must not count against the first answer's budget.
    for op, args in WARM_UP:
        ops[op](*args)
    return ops


WARM_UP: tuple[tuple[str, tuple[Any, ...]], ...] = (
    ("grade", ("x^2", "2")),
    ("grade_steps", ("(B)", "C")),
    ("grade_steps", ("\\frac{1}{2}", "0.5")),
    ("math", ("\\frac{1}{2}", "0.5", True)),
    ("math", ("2\\sqrt{3}", "The answer is $2\\sqrt{3}$.", True)),
    ("math", ("x=5", "5", False)),
)


def _serve() -> None:  # pragma: no cover - runs in the worker process (exercised by every test through it)
    import resource

    out = sys.stdout
    try:
        ops = _worker_ops()
    except ImportError as exc:
        out.write(json.dumps({"import_error": str(exc)}) + "\n")
        out.flush()
        return
    limit = WORKER_MEMORY_MB * 2**20
    with contextlib.suppress(ValueError, OSError):  # not allowed here: the time budget still holds
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    sys.setrecursionlimit(10_000)
    out.write(json.dumps({"ready": os.getpid()}) + "\n")
    out.flush()
    for line in sys.stdin:
        try:
            op, args = json.loads(line)
            reply: dict[str, Any] = {"ok": bool(ops[op](*args))}
        except ImportError as exc:
            reply = {"import_error": str(exc)}
        except MemoryError:
            reply = {"over": "memory"}
        except RecursionError:
            reply = {"over": "recursion"}
        except Exception as exc:  # noqa: BLE001 - a grader's own exception is its verdict (False)
            reply = {"ok": False, "error": type(exc).__name__}
        out.write(json.dumps(reply) + "\n")
        out.flush()


# --------------------------------------------------------------------------------------------------
# The client


class WorkerUnavailable(RuntimeError):
    """The worker process could not be started."""


class Sandbox:
    """One worker process and the deadline logic around it. Thread-safe; fork-aware."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._ready = False
        self._buf = b""
        self._pid = os.getpid()
        self.stats = {"calls": 0, "timeouts": 0, "refused": 0, "restarts": 0, "max_call_s": 0.0}
        """Counters since start (``max_call_s``: the longest single comparison, timeouts included)."""

    # ------------------------------------------------------------------ process management
    def _spawn(self) -> None:
        from onethinker import child_command

        argv, env = child_command("onethinker.rewards.sandbox")
        env.setdefault("PYTHONHASHSEED", "0")
        self._proc = subprocess.Popen(  # noqa: S603 - our own module, our own interpreter
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            close_fds=True,
        )
        self._ready = False
        self._buf = b""

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        self._ready = False
        self._buf = b""
        if proc is None:
            return
        try:
            proc.kill()
            proc.wait(timeout=10)
        except Exception:  # noqa: BLE001 - already gone
            pass
        for stream in (proc.stdin, proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except Exception:  # noqa: BLE001
                pass

    def _readline(self, deadline: float) -> bytes | None:
        """One line from the worker, or None at the deadline or when the worker is gone."""
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                return None
            chunk = os.read(fd, 1 << 16)
            if not chunk:  # EOF: the worker died
                return None
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line

    def _ensure_ready(self) -> None:
        if os.getpid() != self._pid:  # forked: the worker belongs to the parent
            self._proc, self._ready, self._buf, self._pid = None, False, b"", os.getpid()
        if self._proc is not None and self._proc.poll() is not None:
            self._kill()
        if self._proc is None:
            self._spawn()
        if self._ready:
            return
        line = self._readline(time.monotonic() + STARTUP_TIMEOUT_S)
        msg = json.loads(line) if line else {}
        if "import_error" in msg:
            self._kill()
            raise ImportError(msg["import_error"])
        if "ready" not in msg:
            self._kill()
            raise WorkerUnavailable(
                "the reward grading worker did not start (python -m onethinker.rewards.sandbox)"
            )
        self._ready = True

    def close(self) -> None:
        with self._lock:
            self._kill()

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None and os.getpid() == self._pid

    # ------------------------------------------------------------------ calls
    def call(self, op: str, args: list[Any], timeout_s: float) -> bool | _Timeout:
        """Run ``op(*args)`` in the worker; its verdict, or TIMEOUT past ``timeout_s`` seconds."""
        return self.call_many(op, [args], timeout_s)[0]

    def call_many(self, op: str, arglist: list[list[Any]], timeout_s: float) -> list[bool | _Timeout]:
        """``op(*args)`` for each args, pipelined: requests go to the worker in chunks of up to 32 KiB (one
        process switch per chunk, not per comparison, which matters on a loaded machine) and verdicts come back
        in order. Each comparison gets ``timeout_s`` from the moment the previous verdict arrived; one over it
        gets TIMEOUT, the worker is replaced and the rest of the chunk is sent again."""
        results: list[bool | _Timeout] = []
        with self._lock:
            while len(results) < len(arglist):
                self._ensure_ready()
                assert self._proc is not None and self._proc.stdin is not None
                first, size, chunk = len(results), 0, []
                for args in arglist[first:]:
                    line = (json.dumps([op, args]) + "\n").encode()
                    if chunk and size + len(line) > 32768:
                        break
                    chunk.append(line)
                    size += len(line)
                start = time.monotonic()
                try:
                    self._proc.stdin.write(b"".join(chunk))
                    self._proc.stdin.flush()
                except (BrokenPipeError, OSError):
                    pass  # the worker died: the first read below fails and replaces it
                for _ in chunk:
                    line = self._readline(start + timeout_s)
                    now = time.monotonic()
                    self.stats["calls"] += 1
                    self.stats["max_call_s"] = max(self.stats["max_call_s"], now - start)
                    reply = json.loads(line) if line else None
                    if reply is None or "over" in reply:
                        self._kill()
                        self.stats["timeouts"] += 1
                        self.stats["restarts"] += 1
                        self._spawn()  # warm a replacement while the caller goes on
                        self.stats["max_call_s"] = max(self.stats["max_call_s"], time.monotonic() - start)
                        results.append(TIMEOUT)
                        break  # the rest of this chunk goes to the new worker
                    if "import_error" in reply:
                        raise ImportError(reply["import_error"])
                    results.append(bool(reply["ok"]))
                    start = now
        return results


_SANDBOX: Sandbox | None = None
_SANDBOX_LOCK = threading.Lock()


def sandbox() -> Sandbox:
    """The process-wide sandbox (started on first use, stopped at exit)."""
    global _SANDBOX
    with _SANDBOX_LOCK:
        if _SANDBOX is None:
            _SANDBOX = Sandbox()
            atexit.register(_SANDBOX.close)
        return _SANDBOX


def bounded(
    op: str, args: list[Any], texts: tuple[str, ...], timeout_s: float, max_chars: int
) -> bool | _Timeout:
    """``op(*args)`` under the budget: TIMEOUT when any of ``texts`` fails the pre-screen or time runs out."""
    return bounded_many(op, [(args, texts)], timeout_s, max_chars)[0]


def bounded_many(
    op: str, requests: list[tuple[list[Any], tuple[str, ...]]], timeout_s: float, max_chars: int
) -> list[bool | _Timeout]:
    """:func:`bounded` for many ``(args, texts)`` at once, pipelined through the worker."""
    box = sandbox()
    out: list[bool | _Timeout | None] = [None] * len(requests)
    todo = []
    for i, (_args, texts) in enumerate(requests):
        if any(over_budget(t, max_chars) for t in texts):
            out[i] = TIMEOUT
            with box._lock:
                box.stats["refused"] += 1
        else:
            todo.append(i)
    if todo:
        for i, verdict in zip(
            todo, box.call_many(op, [requests[i][0] for i in todo], timeout_s), strict=True
        ):
            out[i] = verdict
    return out  # type: ignore[return-value]


if __name__ == "__main__":  # pragma: no cover
    _serve()
