"""OpenAI-compatible client against a local HTTP server: retries on 429/5xx/timeouts/
malformed JSON, request budget, concurrency limit, content-addressed cache, token and cost
accounting, and an API key that never leaks."""
import os
import time

import pytest

from fake_openai import USAGE, FakeAPI
from pipeline.synth.backends import BackendError, BudgetExhausted, DiskCache, OpenAICompatClient, endpoint_id

KEY = "sk-test-DO-NOT-LEAK-1234567890"
P = [{"role": "user", "content": "What is a hash table?"}]


def client(api, tmp_path=None, **kw):
    opts = dict(timeout=0.3, max_retries=5, backoff=0.01, max_backoff=1.0, concurrency=1)
    opts.update(kw)
    return OpenAICompatClient(api.base_url, "fake-model", KEY, cache_dir=str(tmp_path / "cache") if tmp_path else None,
                              **opts)


def test_retries_429_500_timeout_malformed_then_success():
    with FakeAPI(["429", "500", "slow", "badjson", "nochoice", "ok"], retry_after="0.3") as api:
        c = client(api)
        t0 = time.monotonic()
        r = c.complete(P, max_tokens=32)
        took = time.monotonic() - t0
    assert r.text and r.finish_reason == "stop" and not r.cached
    assert len(api.requests) == 6
    assert c.stats["requests"] == 6 and c.stats["retries"] == 5 and c.stats["ok"] == 1
    assert {k: v for k, v in c.stats.items() if k.startswith("error:")} == {
        "error:http_429": 1, "error:http_500": 1, "error:timeout": 1, "error:malformed": 2}
    assert took >= 0.3 + 0.3  # Retry-After honoured, and the timed-out request waited its timeout
    assert c.stats["tokens_in"] == USAGE["prompt_tokens"] and c.stats["tokens_out"] == USAGE["completion_tokens"]
    h = api.requests[-1]["headers"]
    assert h["Authorization"] == f"Bearer {KEY}" and api.requests[-1]["path"] == "/v1/chat/completions"
    assert api.requests[-1]["body"]["model"] == "fake-model" and api.requests[-1]["body"]["max_tokens"] == 32


def test_gives_up_after_max_retries_without_crashing():
    with FakeAPI(["500"] * 10) as api:
        c = client(api, max_retries=2)
        [r] = c.generate([P], max_tokens=8)
    assert isinstance(r, BackendError) and r.kind == "http_500" and "3 attempts" in str(r)
    assert len(api.requests) == 3 and c.stats["retries"] == 2 and c.stats["failed"] == 1


def test_budget_is_honoured():
    with FakeAPI(["500"] * 20) as api:
        c = client(api, max_requests=3, max_retries=10)
        res = c.generate([P, P + [{"role": "user", "content": "and?"}]], max_tokens=8)
        again = c.generate([P], max_tokens=8)
    assert len(api.requests) == 3 and c.stats["requests"] == 3
    assert isinstance(res[0], BudgetExhausted) and isinstance(res[1], BudgetExhausted)
    assert isinstance(again[0], BudgetExhausted) and "max_requests=3" in str(again[0])
    assert c.stats["budget_refused"] == 3


def test_cache_rerun_sends_nothing_and_never_holds_the_key(tmp_path):
    prompts = [[{"role": "user", "content": f"question {i}"}] for i in range(5)]
    with FakeAPI() as api:
        a = client(api, tmp_path, concurrency=3)
        first = a.generate(prompts, max_tokens=16, seed=1)
        assert len(api.requests) == 5 and a.stats["cache_hits"] == 0
        b = client(api, tmp_path, concurrency=3)
        second = b.generate(prompts, max_tokens=16, seed=1)
        assert len(api.requests) == 5  # nothing sent on rerun
        other_seed = b.generate(prompts[:1], max_tokens=16, seed=2)
        assert len(api.requests) == 6  # a different request is not a hit
    assert [r.text for r in first] == [r.text for r in second] and all(r.cached for r in second)
    assert b.stats["cache_hits"] == 5 and b.stats["requests"] == 1 and b.stats["tokens_in"] == 100
    assert b.stats["cached_tokens_in"] == 5 * USAGE["prompt_tokens"]
    assert not other_seed[0].cached
    files = [os.path.join(d, f) for d, _, fs in os.walk(tmp_path / "cache") for f in fs]
    assert len(files) == 6 and all(f.endswith(".json") for f in files)
    for f in files:
        assert KEY not in open(f, encoding="utf-8").read() and KEY not in f


def test_cache_key_ignores_credentials_and_key(tmp_path):
    assert endpoint_id("http://user:pw@host:8000/v1/?x=1") == "http://host:8000/v1"
    body = {"model": "m", "messages": P}
    k = DiskCache.key({"endpoint": "http://host:8000/v1", "body": body})
    with FakeAPI() as api:
        c1 = OpenAICompatClient(api.base_url, "m", "key-one", cache_dir=str(tmp_path))
        c2 = OpenAICompatClient(api.base_url, "m", "key-two", cache_dir=str(tmp_path))
        c1.complete(P, max_tokens=4)
        assert c2.complete(P, max_tokens=4).cached  # same request, other key: one cache entry
    assert len(k) == 64


def test_non_retryable_4xx_fails_at_once_and_redacts_the_key():
    with FakeAPI(["401"]) as api:
        c = client(api)
        [r] = c.generate([P], max_tokens=8)
    assert isinstance(r, BackendError) and r.kind == "http_401"
    assert len(api.requests) == 1 and c.stats["retries"] == 0
    assert KEY not in str(r) and "<redacted>" in str(r)
    assert KEY not in repr(c)


def test_concurrency_limit():
    with FakeAPI(hold_s=0.15) as api:
        c = client(api, concurrency=2, timeout=5)
        t0 = time.monotonic()
        res = c.generate([[{"role": "user", "content": f"q{i}"}] for i in range(6)], max_tokens=8)
        took = time.monotonic() - t0
    assert all(not isinstance(r, Exception) for r in res)
    assert api.max_inflight <= 2 and len(api.requests) == 6
    assert took < 6 * 0.15  # and it did run in parallel


def test_token_and_cost_accounting():
    with FakeAPI() as api:
        c = OpenAICompatClient(api.base_url, "m", None, price_in=2.0, price_out=8.0, concurrency=2)
        c.generate([[{"role": "user", "content": f"q{i}"}] for i in range(3)], max_tokens=8)
        assert "Authorization" not in api.requests[0]["headers"]  # no key: no header
    assert c.stats["tokens_in"] == 300 and c.stats["tokens_out"] == 60
    assert c.cost() == pytest.approx(300 * 2.0 / 1e6 + 60 * 8.0 / 1e6)


def test_base_url_is_required():
    with pytest.raises(ValueError, match="base_url"):
        OpenAICompatClient("", "m")
