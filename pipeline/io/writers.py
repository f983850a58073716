"""Export shard records to the formats other trainers read (and the readers accept back).

Round trip: a record extracted from format F and exported to F reads back to the same
messages (extract is idempotent on its own output).
"""
from __future__ import annotations

import json
from typing import Iterable, TextIO

SHAREGPT_ROLE = {"user": "human", "assistant": "gpt", "system": "system", "tool": "observation"}


def to_openai(rec: dict) -> dict:
    return {"id": rec["id"], "messages": [{"role": m["role"], "content": m["content"]} for m in rec["messages"]]}


def to_sharegpt(rec: dict) -> dict:
    msgs = rec["messages"]
    out: dict = {"id": rec["id"]}
    if msgs and msgs[0]["role"] == "system":
        out["system"] = "\n".join(m["content"] for m in msgs if m["role"] == "system")
        msgs = [m for m in msgs if m["role"] != "system"]
    out["conversations"] = [{"from": SHAREGPT_ROLE[m["role"]], "value": m["content"]} for m in msgs]
    return out


def to_alpaca(rec: dict) -> dict:
    """Alpaca holds plain user/assistant pairs; a record with tool messages cannot be written."""
    msgs = rec["messages"]
    system = "\n".join(m["content"] for m in msgs if m["role"] == "system")
    body = [m for m in msgs if m["role"] != "system"]
    if any(m["role"] == "tool" for m in body):
        raise ValueError(f"record {rec['id']!r}: messages: tool messages cannot be written as alpaca")
    pairs = [(body[i]["content"], body[i + 1]["content"]) for i in range(0, len(body) - 1, 2)]
    out = {"id": rec["id"], "instruction": pairs[-1][0], "input": "", "output": pairs[-1][1],
           "history": [list(p) for p in pairs[:-1]]}
    if system:
        out["system"] = system
    return out


WRITERS = {"openai": to_openai, "sharegpt": to_sharegpt, "alpaca": to_alpaca}


def write_jsonl(records: Iterable[dict], fmt: str, f: TextIO) -> int:
    conv = WRITERS[fmt]
    n = 0
    for rec in records:
        f.write(json.dumps(conv(rec), ensure_ascii=False) + "\n")
        n += 1
    return n
