"""A client for any OpenAI-compatible chat endpoint, with an on-disk cache of every prompt and reply.

Plain ``urllib`` (no SDK): ``POST {url}/chat/completions`` with ``model``, ``messages``,
``max_tokens`` and ``temperature``; the reply's ``choices[0].message.content`` is the text.
The key is read from an environment variable (never from a config file); a local server
needs none. Every reply is cached under ``cache_dir`` by the SHA-256 of the request body
(model, messages, max_tokens, temperature), written atomically, so a rerun with the same
prompts makes no request. Failures (timeout, HTTP error, a reply without the expected
fields) raise ``LLMError`` with one line naming the problem; retries are off by default.
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.error
import urllib.request
from pathlib import Path

from sae.atomic import write_json

Messages = list[dict[str, str]]


class LLMError(Exception):
    """One request that gave no usable reply (the message is one line)."""


def request_key(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class ChatClient:
    """``complete(messages, max_tokens)`` → the reply text, from the cache or the endpoint."""

    def __init__(
        self,
        url: str,
        model: str,
        cache_dir: str | Path,
        api_key_env: tuple[str, ...] = ("SAELAB_LLM_API_KEY", "OPENAI_API_KEY"),
        timeout_s: float = 60.0,
        retries: int = 0,
        temperature: float = 0.0,
    ):
        url = url.rstrip("/")
        self.endpoint = url if url.endswith("/chat/completions") else f"{url}/chat/completions"
        self.model = model
        self.cache_dir = Path(cache_dir)
        self.api_key = next((os.environ[k] for k in api_key_env if os.environ.get(k)), None)
        self.timeout_s = timeout_s
        self.retries = retries
        self.temperature = temperature
        self.requests = 0  # made to the endpoint (cache hits excluded)
        self.cache_hits = 0

    @property
    def name(self) -> str:
        return self.model

    def _cache_path(self, key: str) -> Path:
        return self.cache_dir / key[:2] / f"{key}.json"

    def complete(self, messages: Messages, max_tokens: int) -> str:
        body = {"model": self.model, "messages": messages, "max_tokens": max_tokens, "temperature": self.temperature}
        key = request_key(body)
        path = self._cache_path(key)
        if path.is_file():
            try:
                cached = json.loads(path.read_text())
                self.cache_hits += 1
                return cached["reply"]
            except (OSError, ValueError, KeyError):
                pass  # a damaged entry is refetched and rewritten
        problem = None
        for _attempt in range(self.retries + 1):
            try:
                reply = self._post(body)
                break
            except LLMError as err:
                problem = err
        else:
            raise problem
        write_json(path, {"request": body, "reply": reply})
        return reply

    def _post(self, body: dict) -> str:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(self.endpoint, data=json.dumps(body).encode(), headers=headers, method="POST")
        self.requests += 1
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as err:
            raise LLMError(f"HTTP {err.code} from {self.endpoint}") from err
        except TimeoutError as err:
            raise LLMError(f"timed out after {self.timeout_s:g} s waiting for {self.endpoint}") from err
        except urllib.error.URLError as err:
            if isinstance(err.reason, TimeoutError):
                raise LLMError(f"timed out after {self.timeout_s:g} s waiting for {self.endpoint}") from err
            raise LLMError(f"cannot reach {self.endpoint}: {err.reason}") from err
        except OSError as err:
            raise LLMError(f"connection to {self.endpoint} failed: {err}") from err
        try:
            content = json.loads(raw)["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as err:
            raise LLMError(f"malformed reply (no choices[0].message.content): {raw[:60]!r}") from err
        if not isinstance(content, str):
            raise LLMError(f"malformed reply (content is {type(content).__name__}, not text)")
        return content.strip()
