"""Topic-continuity labels from an LLM: `turnforge discriminator label`.

For every user message after the first (every message after the first with `roles: all`), an
OpenAI-compatible model is asked whether it continues the topic of the conversation so far or
switches to a new one, under a Chinese or English rubric (the conversation's language picks
one). The answers are written in the labelled JSONL format `discriminator train` reads
(docs/stages/topic.md#labelling-with-an-llm): `topic_shift` 1 (switch), 0 (continues) or null.

- Input: chats as the other commands read them (openai / ShareGPT / alpaca / event logs in
  JSONL, JSON, CSV or Parquet, through the extract stage in memory with no tail trimmed), a
  shard folder or build, or `FORMAT:PATH` with FORMAT jsonl|tiage|dialseg|woz: labelled data,
  whose gold labels are then compared with the model's (agreement in the summary).
- Requests go through pipeline.synth.backends.OpenAICompatClient: concurrency, retries with
  backoff, a request budget, a response cache (a rerun sends nothing) and token/cost counts.
- A reply that does not parse as a verdict is counted and asked again with another seed
  (`parse_retries`); if it still does not parse the message stays unlabelled (null, with
  `topic_label_error`). Nothing is guessed: a failed request, a spent budget or an unreadable
  answer never becomes a 0.
- Nothing is lost: every readable conversation is in the output (unlabelled messages null);
  input units extract cannot read go to `<out>.rejected.jsonl` with their reason.
"""
from __future__ import annotations

import json
import os
import re
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from typing import Iterator

import numpy as np

from .config import ConfigError
from .synth.backends import BackendError, BudgetExhausted, client_from
from .synth.checks import text_lang

GOLD_FORMATS = ("jsonl", "tiage", "dialseg", "woz")
VERDICTS = ("continue", "switch")

TEXT = {
    "en": {
        "system": (
            "You label topic continuity in conversations between a user and an AI assistant. Decide whether "
            "the NEW message continues the topic of the conversation so far or switches to a new topic.\n"
            "- continue: a follow-up question on the same subject; a clarification or correction; a request "
            "to expand, shorten, rewrite or reformat the previous answer; feedback or thanks; an answer to the "
            "assistant's question; a new aspect of the same subject (after talking about a film, asking who "
            "else its lead actor played).\n"
            "- switch: the message starts a subject unrelated to what came before. Example: the user asked "
            "about a product, then asks about the weather: that is a switch.\n"
            "Cue words such as \"by the way\", \"also\" or \"another question\" do not decide by themselves: "
            "judge whether the content is still the same subject. Reply with one JSON object and nothing else."),
        "user": "USER", "assistant": "ASSISTANT", "tool": "TOOL",
        "conversation": "Conversation so far", "omitted": "[{n} earlier messages omitted]",
        "new": "New message (from {who})",
        "ask": 'Does the new message continue the topic or switch to a new one? Reply as {"verdict": '
               '"continue" | "switch", "reason": "<one short sentence>"}',
    },
    "zh": {
        "system": (
            "你负责标注用户与 AI 助手对话的话题连续性：判断【新消息】是延续此前对话的话题，还是切换到了新话题。\n"
            "- 延续（continue）：对同一件事的追问；澄清或更正；要求展开、缩短、改写或换个格式；对回答的反馈或感谢；"
            "回答助手的提问；同一主题的新方面（例如聊完一部电影后问主演还演过什么）。\n"
            "- 切换（switch）：开始一个与此前内容无关的新话题。例如用户先问某个商品，接着问天气：这是切换。\n"
            "“对了”“另外”“还有个问题”这类提示词本身不决定结论，要看内容是否仍是同一话题。"
            "只回复一个 JSON 对象，不要输出其他内容。"),
        "user": "用户", "assistant": "助手", "tool": "工具",
        "conversation": "此前的对话", "omitted": "[省略了前面 {n} 条消息]",
        "new": "新消息（{who}）",
        "ask": '新消息是延续话题还是切换到新话题？按如下格式回复：{"verdict": "continue" | "switch", '
               '"reason": "<一句话理由>"}',
    },
}


@dataclass
class LabelConfig:
    base_url: str | None = None        # required: nothing reaches the network without it
    model: str | None = None           # required: the served model's name
    api_key: str | None = None         # else $api_key_env; never written anywhere
    api_key_env: str = "OPENAI_API_KEY"
    roles: str = "user"                # user: user messages after the first; all: every message after the first
    lang: str = "auto"                 # rubric language: auto (per conversation) | zh | en
    context_messages: int = 8          # messages shown before the new one (the first user message always)
    max_chars: int = 1000              # characters shown of each message (head kept)
    temperature: float = 0.0           # deterministic, so a rerun hits the cache
    seed: int = 0
    max_tokens: int = 128
    parse_retries: int = 1             # extra asks (new seed) after a reply that is not a verdict
    batch: int = 64                    # conversations per round of requests (memory stays flat)
    limit: int = 0                     # label only the first N conversations (0: all), e.g. to price a run
    # OpenAI-compatible client (pipeline/synth/backends.py)
    concurrency: int = 4
    timeout: float = 60.0
    max_retries: int = 4
    backoff: float = 1.0
    max_backoff: float = 30.0
    max_requests: int | None = None
    price_in: float = 0.0
    price_out: float = 0.0
    cache_dir: str | None = None       # default $TURNFORGE_SYNTH_CACHE or ~/.cache/turnforge/synth; "off"

    def check(self) -> None:
        if not self.base_url:
            raise ConfigError("discriminator label: needs base_url (e.g. --set base_url=http://host:8000/v1); "
                              "nothing reaches the network unless a config names an endpoint")
        if not self.model:
            raise ConfigError("discriminator label: needs model (the served model name, --set model=NAME)")
        if self.roles not in ("user", "all"):
            raise ConfigError(f"discriminator label: roles {self.roles!r}; use user or all")
        if self.lang not in ("auto", "zh", "en"):
            raise ConfigError(f"discriminator label: lang {self.lang!r}; use auto, zh or en")
        if int(self.context_messages) < 1 or int(self.max_chars) < 20 or int(self.batch) < 1:
            raise ConfigError("discriminator label: context_messages and batch must be >= 1, max_chars >= 20")
        if int(self.parse_retries) < 0 or int(self.limit) < 0 or (self.max_requests is not None and int(self.max_requests) < 0):
            raise ConfigError("discriminator label: parse_retries, limit and max_requests must be >= 0")


def make_config(sets: dict) -> tuple[LabelConfig, dict]:
    """(labeller settings, extract settings): `extract.KEY=V` goes to the extract stage that reads
    raw input (format, fields, role_map, user_salt, ...)."""
    extract = {k.split(".", 1)[1]: v for k, v in sets.items() if k.startswith("extract.")}
    own = {k: v for k, v in sets.items() if not k.startswith("extract.")}
    names = {f.name for f in fields(LabelConfig)}
    unknown = sorted(set(own) - names)
    if unknown:
        raise ConfigError(f"discriminator label: unknown setting(s) {unknown}; known: {sorted(names)} "
                          "and extract.KEY for reading raw input")
    cfg = LabelConfig(**own)
    cfg.check()
    return cfg, extract


def make_client(cfg: LabelConfig):
    return client_from(cfg)


# ------------------------------------------------------------------------------ input
@dataclass
class Conv:
    id: str
    messages: list          # [{"role", "content"}] without system messages
    gold: list | None = None  # per message 0 / 1 / None, when the input carries labels
    system: list | None = None
    extra: dict | None = None  # source, domain, lang: copied to the output record


def read_input(path: str, extract_params: dict, rejected) -> Iterator[Conv]:
    """Conversations of `path` (see the module docstring); units that cannot be read are
    given to `rejected.append` as rows with reason, file and line."""
    fmt, _, rest = path.partition(":")
    if rest and fmt in GOLD_FORMATS:
        yield from _read_gold(fmt, rest)
        return
    if not os.path.exists(path) and not any(c in path for c in "*?["):
        raise ConfigError(f"{path}: no such file or folder")
    from . import shards

    try:
        folder = shards.shard_folder(path)
    except ConfigError:
        folder = None
    if folder is not None:
        for r in shards.iter_records(folder):
            yield _conv_of_record(r)
        return
    yield from _read_raw(path, extract_params, rejected)


def _read_gold(fmt: str, path: str) -> Iterator[Conv]:
    from discriminators.topic_continuity import data as D

    if not os.path.exists(path):
        raise ConfigError(f"{path}: no such file")
    try:
        dialogues = D.read(path, fmt)
    except D.DataError as e:
        raise ConfigError(str(e)) from None
    for d in dialogues:
        msgs, gold, system = [], [], []
        for t, r, lab in zip(d.texts, d.roles, d.labels.tolist()):
            if r == "system":
                system.append(t)
                continue
            msgs.append({"role": r, "content": t})
            gold.append(None if lab < 0 else int(lab))
        if msgs:
            gold[0] = None
            yield Conv(d.id, msgs, gold, system or None, {"source": d.source})


def _conv_of_record(r: dict) -> Conv:
    msgs = [{"role": m["role"], "content": m["content"]} for m in r.get("messages") or []]
    extra = {k: r[k] for k in ("source", "domain", "lang") if r.get(k) is not None}
    return Conv(str(r.get("id")), [m for m in msgs if m["role"] != "system"], None,
                [m["content"] for m in msgs if m["role"] == "system"] or None, extra)


def _read_raw(path: str, params: dict, rejected) -> Iterator[Conv]:
    from .io.readers import expand_paths
    from .validate import extract_in_memory

    try:
        expand_paths(path)
    except FileNotFoundError as e:
        raise ConfigError(str(e)) from None
    # the whole conversation is labelled: no tail trimmed (an explicit setting still wins)
    params = {"tail_turns": 0, "tail_chars": 0, **params}
    for _, ctx, batches in extract_in_memory(path, params, rejected.append):
        for b in batches:
            for r in b.to_pylist():
                yield _conv_of_record(r)
        for s in ctx.skipped_files:
            rejected.append({"stage": "extract", "reason": s["reason"], "detail": s["detail"],
                             "source_file": s["path"], "line": None, "n_inputs": 0, "raw": None,
                             "skipped_file": True})


# ------------------------------------------------------------------------------ prompts
def candidates(conv: Conv, roles: str) -> list[int]:
    """Indices of the messages to label: after the first user message (roles user), or after the
    first message (roles all)."""
    if roles == "all":
        return list(range(1, len(conv.messages)))
    users = [i for i, m in enumerate(conv.messages) if m["role"] == "user"]
    return users[1:]


def conv_lang(conv: Conv, setting: str) -> str:
    if setting != "auto":
        return setting
    lang = (conv.extra or {}).get("lang")
    if lang in ("zh", "en"):
        return lang
    first = next((m["content"] for m in conv.messages if m["role"] == "user"), conv.messages[0]["content"])
    return "zh" if text_lang(first) == "zh" else "en"


def _clip(s: str, n: int) -> str:
    return s if len(s) <= n else s[:n] + "…"


def build_prompt(conv: Conv, k: int, cfg: LabelConfig, lang: str) -> list[dict]:
    """The request for message k. The conversation and the new message sit between fixed tags,
    so the model cannot take them for instructions. Shown: the first user message (it usually
    sets the topic) and the `context_messages` messages before k."""
    t = TEXT[lang]
    n = int(cfg.max_chars)
    start = max(0, k - int(cfg.context_messages))
    lines = []
    if start > 0:
        first = next((i for i, m in enumerate(conv.messages) if m["role"] == "user"), 0)
        if first < start:
            lines.append(f"{t.get(conv.messages[first]['role'], conv.messages[first]['role'])}: "
                         f"{_clip(conv.messages[first]['content'], n)}")
            if start - first - 1 > 0:
                lines.append(t["omitted"].format(n=start - first - 1))
        else:
            lines.append(t["omitted"].format(n=start))
    for m in conv.messages[start:k]:
        lines.append(f"{t.get(m['role'], m['role'])}: {_clip(m['content'], n)}")
    new = conv.messages[k]
    body = (f"{t['conversation']}:\n<conversation>\n" + "\n\n".join(lines) + "\n</conversation>\n\n"
            f"{t['new'].format(who=t.get(new['role'], new['role']))}:\n<new_message>\n{_clip(new['content'], n)}\n"
            f"</new_message>\n\n{t['ask']}")
    return [{"role": "system", "content": t["system"]}, {"role": "user", "content": body}]


# ------------------------------------------------------------------------------ replies
_JSON_OBJ = re.compile(r"\{[^{}]*\}", re.S)
_WORDS = {"continue": 0, "continues": 0, "same": 0, "same_topic": 0, "延续": 0, "继续": 0, "连续": 0,
          "switch": 1, "switches": 1, "new": 1, "new_topic": 1, "切换": 1, "转换": 1}
_LINE = re.compile(r"(?:verdict|answer|label|结论|判断|标注)\s*[:：=]\s*\**\s*[\"'“]?([a-z_]+|[\u4e00-\u9fff]{2})",
                   re.I)


def parse_verdict(text: str) -> int | None:
    """1 (switch), 0 (continues) or None. Read from {"verdict": ...} anywhere in the reply, else
    a "Verdict: switch" / "结论：切换" line, else a reply that is only the word. Prose that
    merely mentions a word is not read: a reply is never guessed."""
    text = text or ""
    for m in _JSON_OBJ.finditer(text):
        try:
            obj = json.loads(m.group(0))
        except ValueError:
            continue
        if isinstance(obj, dict) and "verdict" in obj:
            return _WORDS.get(str(obj["verdict"]).strip().lower())
    m = _LINE.search(text)
    if m:
        return _WORDS.get(m.group(1).lower())
    bare = text.strip().strip("\"'“”.。!！`*").strip().lower()
    return _WORDS.get(bare)


# ------------------------------------------------------------------------------ running
class Labeller:
    def __init__(self, client, cfg: LabelConfig):
        self.client, self.cfg = client, cfg
        self.counts: Counter = Counter()
        self.stopped: str | None = None

    def ask(self, prompts: list[list[dict]]) -> list:
        """Per prompt 0, 1, or the reason it stays unlabelled (unparseable, budget, failed:KIND,
        not_asked). Identical prompts (chats that share their opening) are sent once."""
        keys = [json.dumps(p, ensure_ascii=False) for p in prompts]
        first = {}
        for i, k in enumerate(keys):
            first.setdefault(k, i)
        uniq = list(first.values())
        got = self._ask([prompts[i] for i in uniq])
        by_key = {keys[i]: v for i, v in zip(uniq, got)}
        out = [by_key[k] for k in keys]
        for v in out:
            if isinstance(v, str):
                self.counts[v] += 1
        return out

    def _ask(self, prompts: list[list[dict]]) -> list:
        out: list = [None] * len(prompts)
        if self.stopped:
            return ["not_asked"] * len(prompts)
        todo = list(range(len(prompts)))
        answered = failed = 0
        for attempt in range(int(self.cfg.parse_retries) + 1):
            if not todo:
                break
            res = self.client.generate([prompts[i] for i in todo], max_tokens=int(self.cfg.max_tokens),
                                       temperature=float(self.cfg.temperature),
                                       seed=int(self.cfg.seed) + 7919 * attempt)
            again = []
            for i, r in zip(todo, res):
                if isinstance(r, BudgetExhausted):
                    out[i] = "budget"
                elif isinstance(r, BackendError):
                    out[i] = f"failed:{r.kind}"
                    failed += 1
                else:
                    answered += 1
                    v = parse_verdict(r.text)
                    if v is None:
                        self.counts["unparseable_replies"] += 1
                        # cut off by max_tokens: a model that reasons before answering needs more
                        self.counts["truncated_replies"] += r.finish_reason == "length"
                        out[i] = "unparseable"
                        again.append(i)
                    else:
                        out[i] = v
            todo = again
        # an endpoint that answers nothing at all (down, wrong URL, every request 5xx): stop
        # rather than wait out every retry of every message; the rest is written unlabelled
        if failed and not answered:
            last = [v for v in out if isinstance(v, str) and v.startswith("failed:")][-1]
            self.stopped = f"no answer in a whole round of {len(prompts)} requests (last: {last})"
        return out


def agreement(gold: list[int], pred: list[int]) -> dict:
    """The model's labels against gold labels on the messages that have both."""
    from discriminators.topic_continuity.metrics import prf

    g, p = np.asarray(gold, bool), np.asarray(pred, bool)
    n = len(g)
    if not n:
        return {"messages": 0}
    acc = float((g == p).mean())
    pe = float(g.mean() * p.mean() + (1 - g.mean()) * (1 - p.mean()))  # chance agreement
    kappa = (acc - pe) / (1 - pe) if pe < 1 else None
    return {"messages": n, "accuracy": round(acc, 4), "cohen_kappa": None if kappa is None else round(kappa, 4),
            "gold_switch_rate": round(float(g.mean()), 4), "model_switch_rate": round(float(p.mean()), 4),
            **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in prf(g, p).items()}}


def out_paths(out: str) -> tuple[str, str]:
    base = out.removesuffix(".jsonl")
    return base + ".rejected.jsonl", base + ".summary.json"


class _RejectedFile:
    """Rows of what extract did not pass on, written as they come (memory stays flat) and counted:
    `unread` input units and whole files, `set_aside` parts of conversations it kept."""

    def __init__(self, path: str):
        self.path, self.unread, self.set_aside = path, Counter(), Counter()

    def __enter__(self):
        self.f = open(self.path + ".tmp", "w", encoding="utf-8")
        return self

    def __exit__(self, kind, *exc):
        self.f.close()
        if kind is None:
            os.replace(self.path + ".tmp", self.path)
        else:  # a run that failed publishes nothing
            os.remove(self.path + ".tmp")

    def append(self, row: dict) -> None:
        (self.unread if row["n_inputs"] or row.get("skipped_file") else self.set_aside)[row["reason"]] += 1
        self.f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")


@dataclass
class _Tally:
    conversations: int = 0
    messages: int = 0
    asked: int = 0
    got: Counter = field(default_factory=Counter)  # labels given: 0 / 1
    gold: list = field(default_factory=list)  # gold and model label of every message that has both
    pred: list = field(default_factory=list)


def _labelled_record(c: Conv, answers: dict, t: _Tally) -> dict:
    """The output record of one conversation; `answers`: message index -> 0 / 1 / why unlabelled."""
    msgs = []
    for k, m in enumerate(c.messages):
        a = answers.get(k)
        row = {"role": m["role"], "content": m["content"], "topic_shift": a if isinstance(a, int) else None}
        if isinstance(a, str):
            row["topic_label_error"] = a
        elif isinstance(a, int):
            t.got[a] += 1
            if c.gold is not None and c.gold[k] is not None:
                t.gold.append(c.gold[k])
                t.pred.append(a)
        if c.gold is not None:
            row["gold_topic_shift"] = c.gold[k]
        msgs.append(row)
    rec = {"id": c.id, **(c.extra or {}), "messages": msgs}
    if c.system:
        rec["system"] = c.system
    return rec


def _write(inp: str, path: str, cfg: LabelConfig, extract_params: dict, lab: Labeller, rejected: _RejectedFile,
           t: _Tally) -> None:
    """Label `inp` into `path`, `cfg.batch` conversations per round of requests."""
    with rejected, open(path, "w", encoding="utf-8") as g:
        def flush(chunk: list[Conv]) -> None:
            jobs = [(n, k) for n, c in enumerate(chunk) for k in candidates(c, cfg.roles)]
            langs = [conv_lang(c, cfg.lang) for c in chunk]
            answers = lab.ask([build_prompt(chunk[n], k, cfg, langs[n]) for n, k in jobs]) if jobs else []
            per: list[dict] = [{} for _ in chunk]
            for (n, k), a in zip(jobs, answers):
                per[n][k] = a
            for c, a in zip(chunk, per):
                g.write(json.dumps(_labelled_record(c, a, t), ensure_ascii=False) + "\n")

        chunk: list[Conv] = []
        for conv in read_input(inp, extract_params, rejected):
            if cfg.limit and t.conversations >= int(cfg.limit):
                break
            t.conversations += 1
            t.messages += len(conv.messages)
            t.asked += len(candidates(conv, cfg.roles))
            chunk.append(conv)
            if len(chunk) >= int(cfg.batch):
                flush(chunk)
                chunk = []
        if chunk:
            flush(chunk)


def run_label(inp: str, out: str, sets: dict, client=None) -> dict:
    """Label `inp` into `out` (JSONL), `<out>.rejected.jsonl` and `<out>.summary.json`; return the summary."""
    cfg, extract_params = make_config(sets)
    client = client or make_client(cfg)
    lab = Labeller(client, cfg)
    rej_path, sum_path = out_paths(out)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    rejected, t = _RejectedFile(rej_path), _Tally()
    tmp = out + ".tmp"
    try:
        _write(inp, tmp, cfg, extract_params, lab, rejected, t)
    except BaseException:  # a run that failed publishes nothing
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    os.replace(tmp, out)
    unlabelled = {k: v for k, v in lab.counts.items() if k not in ("unparseable_replies", "truncated_replies")}
    st = client.stats
    summary = {
        "input": inp, "output": out, "conversations": t.conversations, "messages": t.messages, "asked": t.asked,
        "labelled": t.got[0] + t.got[1], "switch": t.got[1], "continue": t.got[0],
        "unlabelled": sum(unlabelled.values()), "unlabelled_by_reason": dict(sorted(unlabelled.items())),
        "unparseable_replies": lab.counts["unparseable_replies"],
        "truncated_replies": lab.counts["truncated_replies"], "stopped": lab.stopped,
        # units extract could not read (whole files included), and parts it set aside from
        # conversations it kept (a trailing unanswered message, ...): both are in the rejected file
        "rejected_input": dict(rejected.unread), "set_aside": dict(rejected.set_aside),
        "agreement_with_gold": agreement(t.gold, t.pred) if t.gold else None,
        "requests": {"sent": st["requests"], "cache_hits": st["cache_hits"], "retries": st["retries"],
                     "tokens_in": st["tokens_in"], "tokens_out": st["tokens_out"],
                     "cost_usd": round(client.cost(), 6) if hasattr(client, "cost") else 0.0},
        "settings": {k: v for k, v in asdict(cfg).items() if k != "api_key"},
    }
    with open(sum_path, "w", encoding="utf-8") as f:
        json.dump(summary, f, ensure_ascii=False, indent=1)
    return summary


def print_summary(s: dict, out) -> None:
    print(f"{s['conversations']} conversations, {s['messages']} messages; {s['asked']} to label: "
          f"{s['labelled']} labelled ({s['switch']} switch, {s['continue']} continue), {s['unlabelled']} "
          f"unlabelled {s['unlabelled_by_reason'] or ''}".rstrip(), file=out)
    r = s["requests"]
    print(f"requests {r['sent']} (cache hits {r['cache_hits']}, retries {r['retries']}), tokens {r['tokens_in']}+"
          f"{r['tokens_out']}, cost ${r['cost_usd']}; replies that were not a verdict {s['unparseable_replies']}",
          file=out)
    if s["truncated_replies"]:
        print(f"{s['truncated_replies']} unreadable replies were cut off at max_tokens="
              f"{s['settings']['max_tokens']}: raise it for a model that reasons before answering", file=out)
    if s["rejected_input"] or s["set_aside"]:
        print(f"input units not read: {s['rejected_input']}; parts of kept conversations set aside by extract: "
              f"{s['set_aside']} (both listed in {out_paths(s['output'])[0]})", file=out)
    if s["stopped"]:
        print(f"stopped asking: {s['stopped']}", file=out)
    a = s["agreement_with_gold"]
    if a:
        print(f"agreement with gold on {a['messages']} messages: accuracy {a['accuracy']:.4f}, kappa "
              f"{'-' if a['cohen_kappa'] is None else format(a['cohen_kappa'], '.4f')}, switch P {a['precision']:.4f} "
              f"R {a['recall']:.4f} F1 {a['f1']:.4f}", file=out)
    if s["unlabelled"]:
        why = ("the request budget (max_requests) is spent" if s["unlabelled_by_reason"].get("budget") else
               "some messages could not be labelled")
        print(f"{why}: rerun the same command (answers so far are cached) to fill in the rest", file=out)
