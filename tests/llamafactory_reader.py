"""A stand-in for LLaMA-Factory's dataset loading of local files, for the export tests.

LLaMA-Factory itself is not installed here (it pins its own torch / transformers), so this
module reproduces, rule by rule, what its data pipeline (0.9.x: data/parser.py, loader.py,
converter.py, processor/supervised.py) does with a `dataset_info.json` entry. The file reading
is real: `datasets.load_dataset(type, data_files=...)`, as LLaMA-Factory calls it.

- parser: an entry becomes attributes with these defaults: formatting alpaca; alpaca columns
  prompt=instruction, query=input, response=output, history=None, system=None; sharegpt
  messages=conversations, system=None; tags role=from, content=value, user=human,
  assistant=gpt, observation=observation, function=function_call, system=system. When the
  entry has `columns`, EVERY column of its formatting is set from it (a column it does not
  name becomes None, not its default); likewise `tags` (sharegpt formatting only).
- loader: `file_name` is relative to dataset_dir; a folder means every file in it
  (os.listdir), which must all have one type; the type comes from the extension (arrow, csv,
  json, jsonl, parquet, txt).
- alpaca converter: history pairs -> user/assistant messages (only when `history` is named and
  the value is a list), then one user message of prompt and query joined by a newline
  (empty ones skipped), then the response; system only from a named `system` column.
- sharegpt converter: a first message with the system tag is the system prompt (else the
  named `system` column, else none); the rest must alternate (user or observation) /
  (assistant or function) with an even count, else the example is broken (emptied).
- supervised preprocessing drops an example whose prompt length is even or whose response is
  not exactly one message (so broken examples vanish).
"""
from __future__ import annotations

import json
import os

FILEEXT2TYPE = {"arrow": "arrow", "csv": "csv", "json": "json", "jsonl": "json", "parquet": "parquet", "txt": "text"}
ALPACA_COLUMNS = ("system", "tools", "images", "chosen", "rejected", "kto_tag", "prompt", "query", "response",
                  "history")
SHAREGPT_COLUMNS = ("system", "tools", "images", "chosen", "rejected", "kto_tag", "messages")
TAGS = ("role_tag", "content_tag", "user_tag", "assistant_tag", "observation_tag", "function_tag", "system_tag")
DEFAULTS = {"system": None, "tools": None, "images": None, "chosen": None, "rejected": None, "kto_tag": None,
            "prompt": "instruction", "query": "input", "response": "output", "history": None,
            "messages": "conversations", "role_tag": "from", "content_tag": "value", "user_tag": "human",
            "assistant_tag": "gpt", "observation_tag": "observation", "function_tag": "function_call",
            "system_tag": "system"}


def attributes(entry: dict) -> dict:
    attr = {"formatting": entry.get("formatting", "alpaca"), "file_name": entry["file_name"], **DEFAULTS}
    if "columns" in entry:
        for c in ALPACA_COLUMNS if attr["formatting"] == "alpaca" else SHAREGPT_COLUMNS:
            attr[c] = entry["columns"].get(c)
    if attr["formatting"] == "sharegpt" and "tags" in entry:
        for t in TAGS:
            attr[t] = entry["tags"].get(t)
    return attr


def _load_rows(dataset_dir: str, file_name: str) -> list[dict]:
    from datasets import load_dataset

    local = os.path.join(dataset_dir, file_name)
    if os.path.isdir(local):
        files = [os.path.join(local, f) for f in os.listdir(local)]
    elif os.path.isfile(local):
        files = [local]
    else:
        raise ValueError(f"File {local} not found.")
    kind = FILEEXT2TYPE.get(os.path.splitext(files[0])[-1][1:])
    if kind is None:
        raise ValueError(f"Allowed file types: {','.join(FILEEXT2TYPE)}.")
    if any(kind != FILEEXT2TYPE.get(os.path.splitext(f)[-1][1:]) for f in files):
        raise ValueError("File types should be identical.")
    return load_dataset(kind, data_files=files, split="train").to_list()


def _alpaca(ex: dict, a: dict) -> tuple[list, list, str]:
    prompt = []
    if a["history"] and isinstance(ex[a["history"]], list):
        for old_prompt, old_response in ex[a["history"]]:
            prompt += [{"role": "user", "content": old_prompt}, {"role": "assistant", "content": old_response}]
    query = [ex[k] for k in (a["prompt"], a["query"]) if k and ex[k]]
    prompt.append({"role": "user", "content": "\n".join(query)})
    response = ([{"role": "assistant", "content": ex[a["response"]]}]
                if a["response"] and isinstance(ex[a["response"]], str) else [])
    return prompt, response, ex[a["system"]] if a["system"] else ""


def _sharegpt(ex: dict, a: dict) -> tuple[list, list, str]:
    mapping = {a["user_tag"]: "user", a["assistant_tag"]: "assistant", a["observation_tag"]: "observation",
               a["function_tag"]: "function", a["system_tag"]: "system"}
    accept = ((a["user_tag"], a["observation_tag"]), (a["assistant_tag"], a["function_tag"]))
    messages = ex[a["messages"]]
    if a["system_tag"] and len(messages) != 0 and messages[0][a["role_tag"]] == a["system_tag"]:
        system, messages = messages[0][a["content_tag"]], messages[1:]
    else:
        system = ex[a["system"]] if a["system"] else ""
    aligned, broken = [], False
    for i, m in enumerate(messages):
        if m[a["role_tag"]] not in accept[i % 2]:
            broken = True
            break
        aligned.append({"role": mapping[m[a["role_tag"]]], "content": m[a["content_tag"]]})
    if len(aligned) % 2 != 0:
        broken = True
    if broken:
        return [], [], system
    return aligned[:-1], aligned[-1:], system


def read(dataset_dir: str, name: str, entry: dict | None = None) -> list[dict | None]:
    """Each row as LLaMA-Factory trains on it: {"system", "messages"}, or None where its
    supervised preprocessing drops the example. `entry` overrides dataset_info.json's."""
    if entry is None:
        with open(os.path.join(dataset_dir, "dataset_info.json"), encoding="utf-8") as f:
            entry = json.load(f)[name]
    a = attributes(entry)
    convert = _alpaca if a["formatting"] == "alpaca" else _sharegpt
    out = []
    for ex in _load_rows(dataset_dir, a["file_name"]):
        prompt, response, system = convert(ex, a)
        out.append(None if len(prompt) % 2 != 1 or len(response) != 1
                   else {"system": system or "", "messages": prompt + response})
    return out
