"""Export shard records to the formats other trainers read (and the readers accept back).

Round trip: a record extracted from format F and exported to F reads back to the same
messages (extract is idempotent on its own output).

Every export also reads exactly in LLaMA-Factory (docs/output.md): sharegpt carries the system
prompt as the first `{"from": "system"}` message, which LLaMA-Factory's default sharegpt entry
reads (it ignores a top-level `system` unless the entry names that column); alpaca always
writes `system` and `history` (empty when none), so one entry that names both fits every row.
`dataset_info_entry` gives the entry each format needs.
"""
from __future__ import annotations

import json
import os
from typing import Iterable, TextIO

from ..config import ConfigError

SHAREGPT_ROLE = {"user": "human", "assistant": "gpt", "system": "system", "tool": "observation"}


def to_openai(rec: dict) -> dict:
    return {"id": rec["id"], "messages": [{"role": m["role"], "content": m["content"]} for m in rec["messages"]]}


def to_sharegpt(rec: dict) -> dict:
    """System messages (only ever leading ones) become one first `system` message: the one
    place a minimal LLaMA-Factory sharegpt entry looks for it."""
    msgs = rec["messages"]
    conv = []
    if msgs and msgs[0]["role"] == "system":
        conv.append({"from": "system", "value": "\n".join(m["content"] for m in msgs if m["role"] == "system")})
        msgs = [m for m in msgs if m["role"] != "system"]
    conv += [{"from": SHAREGPT_ROLE[m["role"]], "value": m["content"]} for m in msgs]
    return {"id": rec["id"], "conversations": conv}


def to_alpaca(rec: dict) -> dict:
    """Alpaca holds plain user/assistant pairs; a record with tool messages cannot be written."""
    msgs = rec["messages"]
    system = "\n".join(m["content"] for m in msgs if m["role"] == "system")
    body = [m for m in msgs if m["role"] != "system"]
    if any(m["role"] == "tool" for m in body):
        raise ValueError(f"record {rec['id']!r}: messages: tool messages cannot be written as alpaca")
    pairs = [(body[i]["content"], body[i + 1]["content"]) for i in range(0, len(body) - 1, 2)]
    # every key on every row: a column a reader's entry names must exist in the whole file
    return {"id": rec["id"], "instruction": pairs[-1][0], "input": "", "output": pairs[-1][1],
            "history": [list(p) for p in pairs[:-1]], "system": system}


WRITERS = {"openai": to_openai, "sharegpt": to_sharegpt, "alpaca": to_alpaca}

# LLaMA-Factory reads a column or tag only where the entry names it, and an entry that names
# some `columns` (or `tags`) unsets the others: so each entry names all it needs.
CHAT_TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
             "observation_tag": "tool", "system_tag": "system"}


def dataset_info_entry(fmt: str, file_name: str) -> dict:
    """The LLaMA-Factory `dataset_info.json` entry that reads an export of `fmt` (or, for
    "arrow", a shard folder's data/ directly) exactly: every turn, role and system prompt."""
    if fmt == "sharegpt":
        return {"file_name": file_name, "formatting": "sharegpt"}  # the minimal entry is exact
    if fmt == "alpaca":
        return {"file_name": file_name, "columns": {"prompt": "instruction", "query": "input", "response": "output",
                                                    "history": "history", "system": "system"}}
    if fmt in ("openai", "arrow"):
        return {"file_name": file_name, "formatting": "sharegpt", "columns": {"messages": "messages"},
                "tags": dict(CHAT_TAGS)}
    raise ValueError(f"no LLaMA-Factory entry for format {fmt!r}")


def add_dataset_info(folder: str, name: str, entry: dict) -> str:
    """Add (or replace) `name` in FOLDER/dataset_info.json, keeping the other entries, so exports
    into one folder build one LLaMA-Factory `dataset_dir`."""
    path = os.path.join(folder, "dataset_info.json")
    info = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            try:
                info = json.load(f)
            except json.JSONDecodeError as e:
                raise ConfigError(f"{path}: not valid JSON ({e}); fix or remove it") from None
    info[name] = entry
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(info, ensure_ascii=False, indent=2) + "\n")
    return path


def write_jsonl(records: Iterable[dict], fmt: str, f: TextIO) -> int:
    conv = WRITERS[fmt]
    n = 0
    for rec in records:
        f.write(json.dumps(conv(rec), ensure_ascii=False) + "\n")
        n += 1
    return n
