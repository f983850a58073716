"""Response backends for synthesis: an OpenAI-compatible chat-completions client and a
local Hugging Face causal LM.

Nothing reaches the network unless a config names an endpoint (docs/design.md#invariants): the
client needs an explicit `base_url`, and the HF backend loads from a local path only.

`OpenAICompatClient` (vLLM, Ollama, OpenAI, DeepSeek, ... all speak POST {base_url}/chat/completions):
- concurrency limit: a thread pool of `concurrency` workers; stdlib urllib, no extra dependency;
- per-request `timeout`; retries with exponential backoff (and `Retry-After`) on 429, 5xx,
  timeouts, connection errors and malformed JSON; other 4xx fail at once (retrying a 401 or a
  400 cannot help);
- a request budget (`max_requests`, HTTP requests actually sent, retries included): once spent,
  every further call fails with `BudgetExhausted` without touching the network;
- accounting: requests, cache hits, retries, errors by kind, prompt/completion tokens from the
  response's `usage`, cost from prices per 1M tokens;
- a content-addressed cache: one JSON file per request, named by sha256 of the canonical request
  (endpoint without credentials + body). The API key is never part of the key, the file, a
  log line or an error message. A rerun of the same requests sends nothing.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

log = logging.getLogger("turnforge.synth")


class BackendError(RuntimeError):
    """A request that failed for good (after retries, or not retryable)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


class BudgetExhausted(BackendError):
    def __init__(self, limit: int):
        super().__init__("budget", f"request budget spent: max_requests={limit}")


@dataclass
class Completion:
    text: str
    finish_reason: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    cached: bool = False


class Backend:
    """generate(list of message lists) -> list of Completion or BackendError, same order."""

    name = "backend"

    def __init__(self):
        self.stats: Counter = Counter()
        self._lock = threading.Lock()

    def count(self, **kw) -> None:
        with self._lock:
            for k, v in kw.items():
                self.stats[k] += v

    def generate(self, prompts: list[list[dict]], *, max_tokens: int, temperature: float = 0.0,
                 seed: int = 0, model: str | None = None) -> list:
        raise NotImplementedError


# ------------------------------------------------------------------------------ cache
def endpoint_id(base_url: str) -> str:
    """scheme://host:port/path without user:password or query (never part of a cache key)."""
    u = urllib.parse.urlsplit(base_url)
    host = u.hostname or ""
    if u.port:
        host = f"{host}:{u.port}"
    return f"{u.scheme}://{host}{u.path.rstrip('/')}"


class DiskCache:
    """Content-addressed: DIR/ab/<sha256>.json. Writes are atomic (unique temp + rename), so
    threads and worker processes may share a folder."""

    def __init__(self, folder: str):
        self.folder = folder

    @staticmethod
    def key(obj: dict) -> str:
        return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False,
                                         separators=(",", ":")).encode()).hexdigest()

    def _path(self, key: str) -> str:
        return os.path.join(self.folder, key[:2], key + ".json")

    def get(self, key: str) -> dict | None:
        try:
            with open(self._path(key), encoding="utf-8") as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def put(self, key: str, value: dict) -> None:
        path = self._path(key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(value, f, ensure_ascii=False)
        os.replace(tmp, path)


def default_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.environ.get("TURNFORGE_SYNTH_CACHE") or os.path.join(base, "turnforge", "synth")


def client_from(cfg, max_requests: int | None = None) -> "OpenAICompatClient":
    """The OpenAI-compatible client a config's client settings describe (base_url, model,
    api_key / api_key_env, timeout, retries, backoff, concurrency, budget, prices, cache_dir);
    `max_requests` overrides the config's budget (a task's share)."""
    cache = cfg.cache_dir if cfg.cache_dir is not None else default_cache_dir()
    return OpenAICompatClient(cfg.base_url, cfg.model, cfg.api_key or os.environ.get(cfg.api_key_env),
                              timeout=cfg.timeout, max_retries=cfg.max_retries, backoff=cfg.backoff,
                              max_backoff=cfg.max_backoff, concurrency=cfg.concurrency,
                              max_requests=cfg.max_requests if max_requests is None else max_requests,
                              price_in=cfg.price_in, price_out=cfg.price_out,
                              cache_dir=None if str(cache).lower() in ("off", "none", "") else cache)


# ------------------------------------------------------------------------------ OpenAI-compatible
RETRY_STATUS = {408, 409, 425, 429}  # and every 5xx


class OpenAICompatClient(Backend):
    name = "openai"

    def __init__(self, base_url: str, model: str, api_key: str | None = None, *, timeout: float = 60.0,
                 max_retries: int = 4, backoff: float = 1.0, max_backoff: float = 30.0, concurrency: int = 4,
                 max_requests: int | None = None, price_in: float = 0.0, price_out: float = 0.0,
                 cache_dir: str | None = None, extra_body: dict | None = None):
        super().__init__()
        if not base_url:
            raise ValueError("OpenAICompatClient: base_url is required (nothing reaches the network without it)")
        self.base_url = base_url.rstrip("/")
        self.url = self.base_url + "/chat/completions"
        self.endpoint = endpoint_id(self.base_url)
        self.model = model
        self._key = api_key or None
        self.timeout, self.max_retries = float(timeout), int(max_retries)
        self.backoff, self.max_backoff = float(backoff), float(max_backoff)
        self.concurrency = max(1, int(concurrency))
        self.max_requests = None if max_requests is None else int(max_requests)
        self.price_in, self.price_out = float(price_in), float(price_out)
        self.cache = DiskCache(cache_dir) if cache_dir else None
        self.extra_body = dict(extra_body or {})

    # Never print the key: repr is what ends up in tracebacks and logs.
    def __repr__(self) -> str:
        return f"OpenAICompatClient({self.endpoint!r}, model={self.model!r}, key={'set' if self._key else 'none'})"

    def cost(self, tokens_in: int | None = None, tokens_out: int | None = None) -> float:
        """USD for the tokens actually sent (cache hits cost nothing)."""
        ti = self.stats["tokens_in"] if tokens_in is None else tokens_in
        to = self.stats["tokens_out"] if tokens_out is None else tokens_out
        return ti * self.price_in / 1e6 + to * self.price_out / 1e6

    def _redact(self, s: str) -> str:
        return s.replace(self._key, "<redacted>") if self._key else s

    def _take_budget(self) -> None:
        with self._lock:
            if self.max_requests is not None and self.stats["requests"] >= self.max_requests:
                self.stats["budget_refused"] += 1
                raise BudgetExhausted(self.max_requests)
            self.stats["requests"] += 1

    def _post(self, body: bytes) -> dict:
        """One HTTP request; returns the parsed JSON or raises _Retry / BackendError."""
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            detail = self._redact(e.read(300).decode("utf-8", "replace")) if e.fp else ""
            if e.code in RETRY_STATUS or e.code >= 500:
                ra = e.headers.get("Retry-After") if e.headers else None
                raise _Retry(f"http_{e.code}", _retry_after(ra)) from None
            raise BackendError(f"http_{e.code}", f"{self.endpoint}: HTTP {e.code}: {detail}") from None
        except (socket.timeout, TimeoutError):
            raise _Retry("timeout", None) from None
        except urllib.error.URLError as e:
            kind = "timeout" if isinstance(e.reason, (socket.timeout, TimeoutError)) else "connection"
            raise _Retry(kind, None, self._redact(str(e.reason))) from None
        except (ConnectionError, OSError) as e:  # reset mid-response, ...
            raise _Retry("connection", None, self._redact(str(e))) from None
        try:
            data = json.loads(raw)
            choice = data["choices"][0]
            text = choice["message"]["content"]
            if not isinstance(text, str):
                raise TypeError("content is not a string")
        except (ValueError, KeyError, IndexError, TypeError) as e:
            raise _Retry("malformed", None, f"{type(e).__name__}") from None
        return {"text": text, "finish_reason": choice.get("finish_reason"),
                "usage": data.get("usage") or {}}

    def _sleep(self, attempt: int, retry_after: float | None) -> None:
        d = min(self.max_backoff, self.backoff * (2 ** attempt))
        if retry_after is not None:
            d = min(self.max_backoff, max(d, retry_after))
        time.sleep(d)

    def complete(self, messages: list[dict], *, max_tokens: int, temperature: float = 0.0, seed: int = 0,
                 model: str | None = None) -> Completion:
        body = {"model": model or self.model, "messages": [{"role": m["role"], "content": m["content"]}
                                                          for m in messages],
                "max_tokens": int(max_tokens), "temperature": float(temperature), "seed": int(seed),
                **self.extra_body}
        key = DiskCache.key({"endpoint": self.endpoint, "body": body}) if self.cache else None
        if key:
            hit = self.cache.get(key)
            if hit is not None:
                u = hit.get("usage") or {}
                self.count(cache_hits=1, cached_tokens_in=int(u.get("prompt_tokens") or 0),
                           cached_tokens_out=int(u.get("completion_tokens") or 0))
                return Completion(hit["text"], hit.get("finish_reason"), 0, 0, cached=True)
        payload = json.dumps(body, ensure_ascii=False).encode()
        last = None
        for attempt in range(self.max_retries + 1):
            if attempt:
                self.count(retries=1)
                self._sleep(attempt - 1, last.retry_after)
            self._take_budget()
            try:
                res = self._post(payload)
            except _Retry as r:
                self.count(**{f"error:{r.kind}": 1})
                log.debug("synth request to %s failed (%s), attempt %d", self.endpoint, r.kind, attempt + 1)
                last = r
                continue
            except BackendError as e:
                self.count(**{f"error:{e.kind}": 1})
                raise
            u = res["usage"]
            ti, to = int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0)
            self.count(ok=1, tokens_in=ti, tokens_out=to)
            if key:
                self.cache.put(key, res)
            return Completion(res["text"], res["finish_reason"], ti, to)
        self.count(failed=1)
        raise BackendError(last.kind, f"{self.endpoint}: gave up after {self.max_retries + 1} attempts "
                                      f"(last: {last.kind}{': ' + last.detail if last.detail else ''})")

    def generate(self, prompts, *, max_tokens, temperature=0.0, seed=0, model=None):
        def one(p):
            try:
                return self.complete(p, max_tokens=max_tokens, temperature=temperature, seed=seed, model=model)
            except BackendError as e:
                return e

        if len(prompts) <= 1 or self.concurrency == 1:
            return [one(p) for p in prompts]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(prompts))) as pool:
            return list(pool.map(one, prompts))


class _Retry(Exception):
    def __init__(self, kind: str, retry_after: float | None, detail: str = ""):
        super().__init__(kind)
        self.kind, self.retry_after, self.detail = kind, retry_after, detail


def _retry_after(v: str | None) -> float | None:
    try:
        return max(0.0, float(v)) if v is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


# ------------------------------------------------------------------------------ local HF model
_HF_MODELS: dict = {}


class HFBackend(Backend):
    """A causal LM from a local folder (AutoModelForCausalLM + its tokenizer), greedy decoding.

    Prompts use the tokenizer's chat template, or ChatML when it has none. temperature 0 decodes
    greedily; above 0 it samples with a torch seed fixed per batch. Either way the same prompts
    and settings give the same text (no cache needed, nothing is paid)."""

    name = "hf"

    def __init__(self, path: str, *, device: str = "cpu", batch_size: int = 8, max_prompt_tokens: int = 1024,
                 dtype: str = "float32"):
        super().__init__()
        if not path or not os.path.isdir(path):
            raise ValueError(f"hf backend: model {path!r} is not a local folder (nothing is downloaded)")
        self.path, self.device, self.batch_size = path, device, max(1, int(batch_size))
        self.max_prompt_tokens = int(max_prompt_tokens)
        key = (os.path.abspath(path), device, dtype)
        if key not in _HF_MODELS:  # one load per process, whatever the number of tasks
            _HF_MODELS[key] = _load_hf(path, device, dtype)
        self.tok, self.model = _HF_MODELS[key]

    def _render(self, messages: list[dict]) -> str:
        from ..templates import CHATML

        msgs = [{"role": m["role"], "content": m["content"]} for m in messages]
        return self.tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True,
                                            chat_template=self.tok.chat_template or CHATML)

    def generate(self, prompts, *, max_tokens, temperature=0.0, seed=0, model=None):
        import torch

        out: list = []
        eos = self.tok.convert_tokens_to_ids("<|im_end|>") if "<|im_end|>" in self.tok.get_vocab() else None
        eos_ids = [i for i in {eos, self.tok.eos_token_id} if i is not None]
        pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else (eos_ids or [0])[0]
        for b in range(0, len(prompts), self.batch_size):
            chunk = prompts[b:b + self.batch_size]
            ids = [self.tok(self._render(p), add_special_tokens=False)["input_ids"][-self.max_prompt_tokens:]
                   for p in chunk]
            width = max(len(x) for x in ids)
            inp = torch.tensor([[pad] * (width - len(x)) + x for x in ids], dtype=torch.long)  # left padding
            att = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids], dtype=torch.long)
            sample = float(temperature) > 0
            torch.manual_seed(int(seed) * 1_000_003 + b)  # seeded per batch: same inputs, same text
            with torch.no_grad():
                gen = self.model.generate(input_ids=inp.to(self.device), attention_mask=att.to(self.device),
                                          max_new_tokens=int(max_tokens), do_sample=sample, use_cache=True,
                                          temperature=float(temperature) if sample else None, top_p=None,
                                          top_k=None, eos_token_id=eos_ids or None, pad_token_id=pad)
            for x, row in zip(ids, gen[:, width:].tolist()):
                stop = next((i for i, t in enumerate(row) if t in eos_ids), None)
                body = row if stop is None else row[:stop]
                text = self.tok.decode(body, skip_special_tokens=True)
                self.count(ok=1, requests=1, tokens_in=len(x), tokens_out=len(body))
                out.append(Completion(text, "stop" if stop is not None else "length", len(x), len(body)))
        return out


def _load_hf(path: str, device: str, dtype: str):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=getattr(torch, dtype))
    model.to(device).eval()
    return tok, model
