"""A local stand-in for a remote OpenAI-compatible API (the one test double the synth tests use).

POST /v1/chat/completions answers from a script of actions, one per request, then from `reply`:
  "429"      429 with Retry-After (seconds from `retry_after`)
  "500"      500
  "slow"     sleeps `slow_s` before answering (longer than the client's timeout)
  "badjson"  200 with a body that is not JSON
  "nochoice" 200 with JSON that has no choices
  "401"      401 whose body echoes the Authorization header (a leak the client must redact)
  "ok"       200 with reply(messages)
  callable   200 with its return value as the content
Every request is recorded (headers, body); `max_inflight` is the peak of concurrent requests.
"""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

USAGE = {"prompt_tokens": 100, "completion_tokens": 20}

ZH_ANSWERS = ["这个问题可以从三个方面理解：定义、作用和限制。", "简单地说，它依赖环境条件，不同情况结论会不同。",
              "举个例子：把水加热到一百度时会沸腾，这就是一个典型的应用。", "主要区别在于适用范围和代价，各有取舍。",
              "第一步先明确目标，第二步收集资料，最后验证结果是否可靠。", "概括来说，核心在于理解原理，然后结合实际灵活运用。"]
EN_ANSWERS = ["There are three angles to this: the definition, its purpose and its limits.",
              "Put simply, it depends on the conditions, and the conclusion changes with them.",
              "For example, water boils at one hundred degrees at sea level, a typical application.",
              "The main difference lies in scope and cost; each has its trade-offs.",
              "Start by stating the goal, then gather the facts, and finally check the result.",
              "In short, understand the principle first and then adapt it to the case at hand."]


def default_reply(messages: list[dict]) -> str:
    """A plausible answer (or, for a follow-up prompt, a plausible question) in the language of
    the last user message; which one depends on how many user messages there are, so replies
    within a dialogue differ."""
    last = messages[-1]["content"]
    zh = sum("\u4e00" <= ch <= "\u9fff" for ch in last) > len(last) / 10
    if messages[0]["role"] == "system" and ("下一句话" in messages[0]["content"] or "next message" in messages[0]["content"]):
        n = last.count('"role": "user"')
        return (["那在实际生活中应该怎么用呢？", "有没有例外的情况？", "能再举个例子吗？"] if zh else
                ["How would I use that in practice?", "Are there any exceptions?", "Could you give another example?"])[n % 3]
    n = sum(m["role"] == "user" for m in messages)
    pool = ZH_ANSWERS if zh else EN_ANSWERS
    return pool[(n + len(last)) % len(pool)]


class FakeAPI:
    def __init__(self, script=None, reply=default_reply, retry_after="0", slow_s=0.6, hold_s=0.0,
                 finish_reason="stop"):
        self.script = list(script or [])
        self.finish_reason = finish_reason  # "length": every answer reads as cut off at max_tokens
        self.reply, self.retry_after, self.slow_s, self.hold_s = reply, retry_after, slow_s, hold_s
        self.requests: list[dict] = []
        self.inflight = self.max_inflight = 0
        self.lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with api.lock:
                    api.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    action = api.script.pop(0) if api.script else "ok"
                    api.inflight += 1
                    api.max_inflight = max(api.max_inflight, api.inflight)
                try:
                    api._answer(self, action, body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and hung up
                finally:
                    api._leave(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def _leave(self, h) -> None:
        """A request stops counting as in flight once its answer starts (once per request):
        counting it until the handler returns would see the client's next request overlap."""
        with self.lock:
            if not getattr(h, "_left", False):
                h._left = True
                self.inflight -= 1

    def _answer(self, h, action, body):
        def send(code, data: bytes, headers=()):
            self._leave(h)
            h.send_response(code)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(data)))
            for k, v in headers:
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(data)

        if self.hold_s:
            time.sleep(self.hold_s)
        if action == "429":
            return send(429, b'{"error": "rate limited"}', [("Retry-After", self.retry_after)])
        if action == "500":
            return send(500, b'{"error": "internal"}')
        if action == "401":
            return send(401, json.dumps({"error": "bad key " + h.headers.get("Authorization", "")}).encode())
        if action == "badjson":
            return send(200, b'{"choices": [{"message": {"content": "trunc')
        if action == "nochoice":
            return send(200, b'{"object": "chat.completion", "choices": []}')
        if action == "slow":
            time.sleep(self.slow_s)
        text = action(body["messages"]) if callable(action) else self.reply(body["messages"])
        out = {"id": "x", "object": "chat.completion", "model": body.get("model"),
               "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                            "finish_reason": self.finish_reason}],
               "usage": dict(USAGE, total_tokens=sum(USAGE.values()))}
        send(200, json.dumps(out, ensure_ascii=False).encode())
