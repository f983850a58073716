"""Labelled dialogues for the topic-continuity discriminator, and spliced pseudo multi-turn.

A `Dialogue` is texts + roles + per-message labels: 1 = the message switches topic, 0 = it
continues, -1 = unlabelled (always the first message). Readers:

- ``tiage``: TIAGE annotation JSON ``{"id": [[text, "-1"|"0"|"1"], ...]}`` (speakers alternate);
- ``dialseg``: DialSeg711 reference text, ``call_id_N`` lines then ``<segment> <utterance>``
  lines; a change of segment index is a switch (speakers alternate);
- ``jsonl``: ``{"messages": [{"role", "content", "topic_shift": null|0|1}]}`` per line;
- ``woz``: CrossWOZ / MultiWOZ compact JSONL, labels from each message's ``derived_shift``;
- ``chats``: unlabelled multi-turn chats (openai ``messages``, ShareGPT ``conversations``, or
  alpaca with ``history``), material for `splice`.

`splice` makes pseudo multi-turn the way it happens in logs: the user keeps the window of
conversation A open and starts conversation B in it. The first message of B is a switch; every
other message is a real continuation (0).
"""
from __future__ import annotations

import json
import os
import random
import re
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import numpy as np

FORMATS = ("jsonl", "tiage", "dialseg", "woz", "chats")


@dataclass
class Dialogue:
    texts: list[str]
    roles: list[str]
    labels: np.ndarray  # int8 per message: 1 switch, 0 continues, -1 unlabelled
    id: str = ""
    source: str = ""
    meta: dict = field(default_factory=dict)
    profile: str = ""   # the kind of conversation (assistant, chitchat, task); "" for unknown

    def __post_init__(self):
        self.labels = np.asarray(self.labels, dtype=np.int8)
        if not (len(self.texts) == len(self.roles) == len(self.labels)):
            raise ValueError(f"dialogue {self.id!r}: {len(self.texts)} texts, {len(self.roles)} roles, "
                             f"{len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.texts)


class DataError(ValueError):
    """Bad training/evaluation input; the message names the file, line and field."""


def _alternating(n: int) -> list[str]:
    return ["user" if i % 2 == 0 else "assistant" for i in range(n)]


def read_tiage(path: str) -> Iterator[Dialogue]:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    for did, turns in data.items():
        texts, labels = [], []
        for k, item in enumerate(turns):
            if not (isinstance(item, list) and len(item) == 2 and str(item[1]) in ("-1", "0", "1")):
                raise DataError(f"{path}: dialogue {did} utterance {k}: expected [text, '-1'|'0'|'1'], got {item!r:.80}")
            texts.append(str(item[0]))
            labels.append(int(item[1]))
        if texts:
            labels[0] = -1
            yield Dialogue(texts, _alternating(len(texts)), labels, id=f"tiage-{did}", source="tiage",
                           profile="chitchat")


_SEG_LINE = re.compile(r"(\d+) (.*)")


def read_dialseg(path: str) -> Iterator[Dialogue]:
    def emit(cid, segs, texts):
        if texts:
            labels = [-1] + [int(segs[i] != segs[i - 1]) for i in range(1, len(segs))]
            return Dialogue(texts, _alternating(len(texts)), labels, id=f"dialseg-{cid}", source="dialseg",
                            profile="task")
        return None

    cid, segs, texts = None, [], []
    with open(path, encoding="utf-8") as f:
        for ln, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            if line.startswith("call_id_"):
                d = emit(cid, segs, texts)
                if d is not None:
                    yield d
                cid, segs, texts = line[len("call_id_"):], [], []
                continue
            m = _SEG_LINE.fullmatch(line)
            if m is None or cid is None:
                raise DataError(f"{path}:{ln}: expected 'call_id_N' or '<segment index> <utterance>', got {line!r:.80}")
            segs.append(int(m.group(1)))
            texts.append(m.group(2))
    d = emit(cid, segs, texts)
    if d is not None:
        yield d


def iter_jsonl(path: str) -> Iterator[tuple[int, dict]]:
    with open(path, encoding="utf-8") as f:
        for ln, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{ln}: not JSON ({e.msg})") from None
            if not isinstance(rec, dict):
                raise DataError(f"{path}:{ln}: expected an object")
            yield ln, rec


def check_messages(path: str, ln: int, rec: dict) -> list:
    """The record's ``messages`` list; a DataError names the line and field when it is bad."""
    msgs = rec.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise DataError(f"{path}:{ln}: field 'messages' must be a non-empty list")
    for k, m in enumerate(msgs):
        if not isinstance(m, dict) or not isinstance(m.get("content"), str):
            raise DataError(f"{path}:{ln}: messages[{k}].content must be a string")
    return msgs


def read_jsonl(path: str, label_field: str = "topic_shift") -> Iterator[Dialogue]:
    for ln, rec in iter_jsonl(path):
        msgs = check_messages(path, ln, rec)
        texts, roles, labels = [], [], []
        for k, m in enumerate(msgs):
            lab = m.get(label_field)
            if lab not in (None, 0, 1, True, False):
                raise DataError(f"{path}:{ln}: messages[{k}].{label_field} must be null, 0 or 1, got {lab!r}")
            texts.append(m["content"])
            roles.append(str(m.get("role", "user")))
            labels.append(-1 if lab is None or k == 0 else int(lab))
        yield Dialogue(texts, roles, labels, id=str(rec.get("id", f"{os.path.basename(path)}:{ln}")),
                       source=os.path.basename(path), meta={k: v for k, v in rec.items() if k != "messages"})


def read_woz(path: str) -> Iterator[Dialogue]:
    for d in read_jsonl(path, label_field="derived_shift"):
        d.profile = "task"
        yield d


def _chat_messages(rec: dict) -> list[tuple[str, str]] | None:
    """(role, text) pairs of an openai / ShareGPT / alpaca-with-history record."""
    if isinstance(rec.get("messages"), list):
        return [(str(m.get("role")), m.get("content")) for m in rec["messages"] if isinstance(m, dict)]
    if isinstance(rec.get("conversations"), list):
        role = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
        return [(role.get(str(m.get("from")), "user"), m.get("value")) for m in rec["conversations"]
                if isinstance(m, dict)]
    if "instruction" in rec and "output" in rec:
        out = []
        for q, a in rec.get("history") or []:
            out += [("user", q), ("assistant", a)]
        q = rec["instruction"] + ("\n" + rec["input"] if rec.get("input") else "")
        return out + [("user", q), ("assistant", rec["output"])]
    return None


def read_chats(path: str, min_messages: int = 2) -> Iterator[Dialogue]:
    """Unlabelled chats (all labels -1), system messages dropped; JSONL or a JSON array."""
    with open(path, encoding="utf-8") as f:
        head = f.read(1).lstrip()
    if head == "[":
        with open(path, encoding="utf-8") as f:
            rows: Iterable[tuple[int, dict]] = enumerate(json.load(f), 1)
    else:
        rows = iter_jsonl(path)
    for ln, rec in rows:
        pairs = _chat_messages(rec) if isinstance(rec, dict) else None
        if pairs is None:
            raise DataError(f"{path}:{ln}: no 'messages', 'conversations' or 'instruction'/'output' fields")
        pairs = [(r, t) for r, t in pairs if r != "system" and isinstance(t, str) and t.strip()]
        if len(pairs) >= min_messages:
            yield Dialogue([t for _, t in pairs], [r for r, _ in pairs], [-1] * len(pairs),
                           id=f"{os.path.basename(path)}:{ln}", source=os.path.basename(path))


READERS = {"jsonl": read_jsonl, "tiage": read_tiage, "dialseg": read_dialseg, "woz": read_woz, "chats": read_chats}


def guess_format(path: str) -> str:
    name = os.path.basename(path).lower()
    if name.endswith(".txt") or "dialseg" in name or "reference" in name:
        return "dialseg"
    if "anno" in name or "tiage" in name:
        return "tiage"
    if "woz" in name:
        return "woz"
    return "jsonl"


def read(path: str, fmt: str | None = None) -> list[Dialogue]:
    """All dialogues of one file; ``fmt`` from FORMATS, guessed from the name when None."""
    fmt = fmt or guess_format(path)
    if fmt not in READERS:
        raise DataError(f"{path}: unknown format {fmt!r}; use one of {FORMATS}")
    return list(READERS[fmt](path))


def parse_spec(spec: str) -> tuple[str | None, str]:
    """'tiage:path' -> ('tiage', path); a bare path -> (None, path)."""
    head, sep, tail = spec.partition(":")
    if sep and head in READERS:
        return head, tail
    return None, spec


def splice(chats: list[Dialogue], n: int, seed: int = 0, max_prefix: int = 6, max_suffix: int = 4) -> list[Dialogue]:
    """``n`` pseudo multi-turn dialogues: a prefix of chat A (ends with an assistant reply when
    it can) then the start of chat B (begins with B's first user message). The first message of
    B is labelled 1 (switch), every other message after the first 0. Deterministic by seed."""
    usable = [d for d in chats if len(d) >= 2]
    if len(usable) < 2:
        raise DataError(f"splice needs at least 2 chats with >= 2 messages, got {len(usable)}")
    rng = random.Random(seed)
    out = []
    for k in range(n):
        a, b = rng.sample(usable, 2)
        cut_a = rng.randint(2, min(len(a), max_prefix))
        while cut_a > 1 and a.roles[cut_a - 1] == "user":  # end A on a reply, as a user would leave it
            cut_a -= 1
        start_b = next((i for i, r in enumerate(b.roles) if r == "user"), 0)
        cut_b = min(len(b), start_b + rng.randint(1, max_suffix))
        texts = a.texts[:cut_a] + b.texts[start_b:cut_b]
        roles = a.roles[:cut_a] + b.roles[start_b:cut_b]
        labels = [-1] + [0] * (cut_a - 1) + [1] + [0] * (cut_b - start_b - 1)
        out.append(Dialogue(texts, roles, labels, id=f"splice-{seed}-{k}", source=f"splice:{a.source}",
                            meta={"a": a.id, "b": b.id, "switch_at": cut_a}, profile="assistant"))
    return out


def continuations(chats: list[Dialogue]) -> list[Dialogue]:
    """Real chats as negatives: every message after the first labelled 0 (continues)."""
    return [Dialogue(d.texts, d.roles, [-1] + [0] * (len(d) - 1), id=d.id, source=d.source, profile="assistant")
            for d in chats]


# Soft cues that open a new question as often as a follow-up ("对了，具体哪年上映的？" stays on
# the film). Chats rarely carry them, so a model learns them from task data, where they mostly
# mark a new domain, and then lets a cue outweigh the content.
SOFT_CUES_ZH = ("对了，", "另外，", "顺便问一下，", "还有，")
SOFT_CUES_EN = ("By the way, ", "Also, ", "Oh, and ", "btw ")
_HAN = re.compile(r"[\u4e00-\u9fff]")


def cue_augment(dialogues: list[Dialogue], rate: float, seed: int = 0) -> list[Dialogue]:
    """Copies of ``dialogues`` where a share ``rate`` of the labelled user messages, switches
    and continuations alike, start with a soft cue (对了, by the way, ...) in their language.
    Labels are unchanged: the cue then carries no label by itself, and the content decides."""
    rng = random.Random(seed)
    out = []
    for d in dialogues:
        texts = list(d.texts)
        for i in range(1, len(d)):
            if d.roles[i] == "user" and d.labels[i] >= 0 and rng.random() < rate:
                zh = bool(_HAN.search(texts[i][:50]))
                cue = rng.choice(SOFT_CUES_ZH if zh else SOFT_CUES_EN)
                t = texts[i]
                texts[i] = cue + (t if zh or cue.startswith("btw") or not t[:1].isupper() else t[:1].lower() + t[1:])
        out.append(Dialogue(texts, list(d.roles), d.labels.copy(), id=d.id, source=d.source, meta=d.meta,
                            profile=d.profile))
    return out
