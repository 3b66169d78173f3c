"""``onethinker serve``: an OpenAI-compatible chat-completions server over a model folder or registry alias.

Endpoints: ``POST /v1/chat/completions`` (``n``, ``temperature``, ``top_p``, ``max_tokens`` /
``max_completion_tokens``, ``seed``; ``usage`` in the reply), ``GET /v1/models``, ``GET /health`` (with the
request counters) and ``GET /metrics`` (Prometheus text).

Media are local references only, confined to ``--media-root``: ``{"type": "image_url", "image_url":
{"url": "file:///abs/path.png"}}`` or a path relative to the media root (``video_url`` likewise), or a
base64 ``data:`` URL. ``..`` components, symlinks leading out and absolute paths outside the root are
refused with HTTP 400 and a one-line message; remote ``http(s)`` URLs are never fetched.

Standard library HTTP server, one thread per connection; generation is serialised on one lock (one model,
the Hugging Face engine of :mod:`onethinker.generation`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

MAX_BODY_BYTES = 64 * 2**20


class BadRequest(ValueError):
    """A request the server refuses (HTTP 400): the message is one line."""


def confined_media_path(ref: str, media_root: Path) -> Path:
    """The file a local media reference names, if it lies inside ``media_root``; else ``BadRequest``.

    ``file://`` URLs and absolute paths must resolve under the root; relative paths are taken under it; a
    ``..`` component is refused outright, and so is a symlink that resolves outside the root.
    """
    if ref.startswith(("http://", "https://")):
        raise BadRequest(
            f"remote media URL {ref[:80]!r} refused: give a file:// URL or a path under the media root"
        )
    raw = urllib.parse.unquote(urllib.parse.urlparse(ref).path) if ref.startswith("file://") else ref
    if not raw:
        raise BadRequest("empty media reference")
    if ".." in Path(raw).parts:
        raise BadRequest(f"media path {raw!r} refused: '..' is not allowed")
    root = media_root.resolve()
    candidate = Path(raw) if Path(raw).is_absolute() else root / raw
    resolved = candidate.resolve()
    if resolved != root and root not in resolved.parents:
        raise BadRequest(f"media path {raw!r} refused: outside the media root")
    if not resolved.is_file():
        raise BadRequest(f"media path {raw!r} not found under the media root")
    return resolved


def _data_url_bytes(url: str) -> tuple[str, bytes]:
    head, _, payload = url.partition(",")
    if ";base64" not in head:
        raise BadRequest("data URLs must be base64-encoded")
    try:
        return head[5:].split(";")[0], base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("data URL is not valid base64") from None


@dataclass
class Counters:
    """What the server has done (thread-safe); ``repeated`` counts request bodies seen more than once."""

    requests: int = 0
    completions: int = 0
    errors: int = 0
    in_flight: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    bodies: Counter = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return {
                "requests": self.requests,
                "completions": self.completions,
                "errors": self.errors,
                "in_flight": self.in_flight,
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "repeated": sum(n - 1 for n in self.bodies.values() if n > 1),
            }


class ChatModel:
    """The model behind the server: the HF engine plus the media budgets of ``params.yaml``."""

    def __init__(self, model_dir: Path, name: str, media: Any, device: str | None = None):
        import torch

        from onethinker.generation.hf import HFRolloutEngine
        from onethinker.modeling import load_model, load_processor

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.name, self.media = name, media
        self.processor = load_processor(model_dir)
        self.model = load_model(model_dir, device=device)
        self.engine = HFRolloutEngine(self.model, self.processor, batch_size=16)
        self.lock = threading.Lock()

    def _load(self, kind: str, url: str, media_root: Path | None) -> Any:
        with tempfile.TemporaryDirectory(prefix="onethinker-serve-media-") as tmp:
            if url.startswith("data:"):
                mime, raw = _data_url_bytes(url)
                path = Path(tmp) / f"media.{mime.split('/')[-1] or 'bin'}"
                path.write_bytes(raw)
            elif media_root is None:
                raise BadRequest("local media refused: the server was started without --media-root")
            else:
                path = confined_media_path(url, media_root)
            return self._decode(kind, path, url)

    def _decode(self, kind: str, path: Path, url: str) -> Any:
        from onethinker.data.media import decode_video, load_image

        m = self.media
        try:
            if kind == "image":
                return load_image(path, m.image_min_pixels, m.image_max_pixels)
            return decode_video(path, m.video_fps, m.video_max_frames, m.video_min_pixels, m.video_max_pixels)
        except Exception as exc:  # noqa: BLE001 - an undecodable file is the client's error
            raise BadRequest(f"cannot decode {kind} {url[:80]!r}: {type(exc).__name__}") from None

    def example(self, messages: Any, media_root: Path | None) -> Any:
        """OpenAI chat messages as an :class:`~onethinker.data.examples.Example`."""
        from onethinker.data.examples import Example

        if not isinstance(messages, list) or not messages:
            raise BadRequest("'messages' must be a non-empty list")
        out, images, videos = [], [], []
        for i, msg in enumerate(messages):
            if not isinstance(msg, dict) or msg.get("role") not in ("system", "user", "assistant"):
                raise BadRequest(f"messages[{i}] must have a role of system, user or assistant")
            content = msg.get("content")
            if isinstance(content, str):
                out.append({"role": msg["role"], "content": [{"type": "text", "text": content}]})
                continue
            if not isinstance(content, list):
                raise BadRequest(f"messages[{i}].content must be a string or a list of parts")
            parts = []
            for j, part in enumerate(content):
                kind = part.get("type") if isinstance(part, dict) else None
                if kind == "text":
                    parts.append({"type": "text", "text": str(part.get("text", ""))})
                elif kind in ("image_url", "video_url"):
                    ref = part.get(kind)
                    url = ref.get("url") if isinstance(ref, dict) else ref
                    if not isinstance(url, str):
                        raise BadRequest(f"messages[{i}].content[{j}].{kind}.url must be a string")
                    media_kind = kind.split("_")[0]
                    (images if media_kind == "image" else videos).append(
                        self._load(media_kind, url, media_root)
                    )
                    parts.append({"type": media_kind})
                else:
                    raise BadRequest(f"messages[{i}].content[{j}]: unsupported part type {kind!r}")
            out.append({"role": msg["role"], "content": parts})
        if out[-1]["role"] == "assistant":
            raise BadRequest("the last message must not be the assistant's")
        data_type = "video" if videos else "image"
        return Example(out, images, videos, "open-ended", data_type, "")

    def complete(self, body: dict[str, Any], media_root: Path | None) -> dict[str, Any]:
        from onethinker.generation.base import SamplingParams

        def num(key: str, default: Any, cast: type) -> Any:
            value = body.get(key, default)
            if value is None:
                return default
            try:
                return cast(value)
            except (TypeError, ValueError):
                raise BadRequest(f"'{key}' must be a number, got {value!r}") from None

        n = num("n", 1, int)
        max_tokens = num("max_completion_tokens", None, int) or num("max_tokens", 256, int)
        temperature = num("temperature", 1.0, float)
        if not 1 <= n <= 64:
            raise BadRequest(f"'n' must be in [1, 64], got {n}")
        if max_tokens < 1:
            raise BadRequest(f"'max_tokens' must be >= 1, got {max_tokens}")
        if temperature < 0:
            raise BadRequest(f"'temperature' must be >= 0, got {temperature}")
        sampling = SamplingParams(
            n=n,
            temperature=temperature,
            top_p=num("top_p", 1.0, float),
            max_new_tokens=max_tokens,
            seed=num("seed", None, int),
        )
        example = self.example(body.get("messages"), media_root)
        with self.lock:
            encoded = self.engine.encode(example)
            outs = self.engine.generate([example], sampling, encoded=[encoded])[0]
        prompt_tokens = int(encoded["input_ids"].shape[-1])
        completion_tokens = sum(len(c.token_ids) for c in outs)
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:24]
        return {
            "id": f"chatcmpl-{digest}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.name,
            "choices": [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": c.text},
                    "finish_reason": c.finish_reason,
                }
                for i, c in enumerate(outs)
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }


def make_handler(model: Any, media_root: Path | None, counters: Counters) -> type[BaseHTTPRequestHandler]:
    """The request handler class for ``model`` (anything with ``name`` and ``complete(body, media_root)``)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "onethinker-serve"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            return  # quiet: the counters say what happened

        def _send(self, status: int, payload: Any, content_type: str = "application/json") -> None:
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str) -> None:
            with counters.lock:
                counters.errors += 1
            kind = "invalid_request_error" if status < 500 else "server_error"
            self._send(status, {"error": {"message": message, "type": kind, "code": status}})

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            path = self.path.split("?")[0].rstrip("/")
            if path == "/health":
                self._send(200, {"status": "ok", "model": model.name, **counters.snapshot()})
            elif path == "/v1/models":
                self._send(
                    200,
                    {
                        "object": "list",
                        "data": [{"id": model.name, "object": "model", "owned_by": "onethinker"}],
                    },
                )
            elif path == "/metrics":
                lines = [f"onethinker_serve_{k} {v}" for k, v in counters.snapshot().items()]
                self._send(200, ("\n".join(lines) + "\n").encode(), "text/plain; version=0.0.4")
            else:
                self._error(404, f"no route {path!r}")

        def do_POST(self) -> None:  # noqa: N802
            path = self.path.split("?")[0].rstrip("/")
            if path != "/v1/chat/completions":
                self._error(404, f"no route {path!r}")
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                self._error(413, f"request body over {MAX_BODY_BYTES} bytes")
                return
            raw = self.rfile.read(length)
            with counters.lock:
                counters.requests += 1
                counters.in_flight += 1
                counters.bodies[hashlib.sha256(raw).hexdigest()] += 1
            try:
                try:
                    body = json.loads(raw)
                    if not isinstance(body, dict):
                        raise BadRequest("the request body must be a JSON object")
                except json.JSONDecodeError as exc:
                    raise BadRequest(f"the request body is not JSON: {exc.msg}") from None
                reply = model.complete(body, media_root)
            except BadRequest as exc:
                self._error(400, str(exc))
            except Exception as exc:  # noqa: BLE001 - a server answers 500, it does not die
                self._error(500, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            else:
                usage = reply.get("usage", {})
                with counters.lock:
                    counters.completions += 1
                    counters.prompt_tokens += usage.get("prompt_tokens", 0)
                    counters.completion_tokens += usage.get("completion_tokens", 0)
                self._send(200, reply)
            finally:
                with counters.lock:
                    counters.in_flight -= 1

    return Handler


def resolve_model(source: str, dst: Path) -> Path:
    """A Hugging Face folder for ``source``: a local folder as is, or a registry URI (``models:/name@alias``,
    ``models:/name/3``) downloaded under ``dst``."""
    if source.startswith("models:/"):
        from onethinker import tracking
        from onethinker.registry.pyfunc import hf_folder

        tracking.configure()
        return hf_folder(source, dst)
    path = Path(source)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{source}: not a model folder (no config.json) and not a models:/ URI")
    return path


def make_server(
    model: Any, host: str, port: int, media_root: Path | None
) -> tuple[ThreadingHTTPServer, Counters]:
    counters = Counters()
    server = ThreadingHTTPServer((host, port), make_handler(model, media_root, counters))
    server.daemon_threads = True
    return server, counters
