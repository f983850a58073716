"""Stage `synth`: grow single-turn Q/A into multi-turn dialogues.

For every conversation that ends with an assistant reply and has fewer than `max_turns` user
turns: generate the next user turn (a template that fits the previous answer, or a strong model
prompted with the conversation so far), then the assistant reply (OpenAI-compatible endpoint or a
local HF model), and repeat until `max_turns` user turns. Records of a batch grow together, one
round per turn, so a backend sees whole batches (HF batched generation, concurrent HTTP requests).

Every generated message carries `synthetic: true` and the next `turn` number; the original
messages are never changed and the record keeps its id. Each generated message goes through every
check in `pipeline.synth.checks` (pass rates per check go to the manifest); a pair with a failing
check is archived in rejected/ with reason `synth_<first failing check>` (n_inputs=0: the record
itself is kept) and the turn is retried up to `attempts` times, after which the record stops
growing with the turns that passed. A backend error after the client's own retries, or a spent
request budget, also stops that record's growth; no input record is ever dropped.

Nothing reaches the network unless `base_url` is set. The API key comes from `api_key` or the
environment (`api_key_env`, default OPENAI_API_KEY) and never reaches manifests, logs, the cache
or error messages. `max_requests` is the budget for the whole stage, split evenly over its tasks.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Iterator

import pyarrow as pa

from ..schema import SCHEMA
from ..synth import checks as C
from ..synth.backends import BackendError, BudgetExhausted
from ..synth.followup import TemplateFollowup, model_followup_prompt, reply_prompt, seed_lang
from ..config import ConfigError
from .base import MapStage, StageContext, with_meta

BACKENDS = ("openai", "hf")
FOLLOWUPS = ("template", "model")


@dataclass
class SynthConfig:
    backend: str = "openai"           # openai (any OpenAI-compatible endpoint) | hf (local model folder)
    base_url: str | None = None       # e.g. http://host:8000/v1; required for openai
    model: str | None = None          # model name (openai) or local path (hf)
    api_key: str | None = None        # else $api_key_env; never written anywhere
    api_key_env: str = "OPENAI_API_KEY"
    followup: str = "template"        # template | model
    followup_model: str | None = None  # model for follow-ups (default: `model`)
    max_turns: int = 3                # user turns per dialogue after growth
    attempts: int = 2                 # tries per new turn before the record stops growing
    max_tokens: int = 512             # per reply
    followup_max_tokens: int = 128
    temperature: float = 0.7          # openai; hf decodes greedily
    seed: int = 0                     # template choice and the request seed
    style_hint: bool = True           # system hint: same language and style as earlier answers
    # OpenAI-compatible client
    concurrency: int = 4
    timeout: float = 60.0
    max_retries: int = 4
    backoff: float = 1.0
    max_backoff: float = 30.0
    max_requests: int | None = None   # HTTP requests for the whole stage, retries included
    price_in: float = 0.0             # USD per 1M prompt tokens
    price_out: float = 0.0            # USD per 1M completion tokens
    cache_dir: str | None = None      # default $TURNFORGE_SYNTH_CACHE or ~/.cache/turnforge/synth; "off"
    # local HF model
    device: str = "cpu"
    batch_size: int = 8
    max_prompt_tokens: int = 1024
    # checks (pipeline/synth/checks.py)
    checks: list = field(default_factory=lambda: list(C.CHECKS))
    leak_overlap: float = 0.6
    leak_span: int = 12
    dup_jaccard: float = 0.8
    repeat_distinct: float = 0.35

    def check(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"synth: backend {self.backend!r}; use one of {BACKENDS}")
        if self.followup not in FOLLOWUPS:
            raise ConfigError(f"synth: followup {self.followup!r}; use one of {FOLLOWUPS}")
        if self.backend == "openai":
            if not self.base_url:
                raise ConfigError("synth: backend=openai needs base_url (e.g. --set base_url=http://host:8000/v1); "
                                  "nothing reaches the network unless a config names an endpoint")
            if not self.model:
                raise ConfigError("synth: backend=openai needs model (the served model name)")
        if self.backend == "hf" and (not self.model or not os.path.isdir(str(self.model))):
            raise ConfigError(f"synth: backend=hf needs model=PATH of a local model folder, got {self.model!r}")
        if int(self.max_turns) < 1 or int(self.attempts) < 1:
            raise ConfigError("synth: max_turns and attempts must be >= 1")
        if isinstance(self.checks, str):
            self.checks = [c.strip() for c in self.checks.split(",") if c.strip()]
        bad = sorted(set(self.checks) - set(C.CHECKS))
        if bad:
            raise ConfigError(f"synth: unknown checks {bad}; known: {list(C.CHECKS)}")
        if self.max_requests is not None and int(self.max_requests) < 0:
            raise ConfigError("synth: max_requests must be >= 0")

    def settings(self) -> C.CheckSettings:
        return C.CheckSettings(leak_overlap=float(self.leak_overlap), leak_span=int(self.leak_span),
                               dup_jaccard=float(self.dup_jaccard), repeat_distinct=float(self.repeat_distinct),
                               enabled=tuple(self.checks))


def make_backend(cfg: SynthConfig, budget: int | None = None):
    """The configured backend; `budget` overrides max_requests (a task's share)."""
    if cfg.backend == "hf":
        from ..synth.backends import HFBackend

        return HFBackend(cfg.model, device=cfg.device, batch_size=cfg.batch_size,
                         max_prompt_tokens=cfg.max_prompt_tokens)
    from ..synth.backends import client_from

    return client_from(cfg, budget)


class _Grow:
    """One record being grown."""

    def __init__(self, rec: dict):
        self.rec = rec
        self.msgs = list(rec["messages"])
        self.lang = seed_lang(rec)                       # zh / en: templates and prompts
        self.check_lang = rec["lang"]                    # mixed/other seeds are not language-checked
        self.n_user = len({m["turn"] for m in self.msgs if m["role"] == "user"})
        self.fails = 0                                   # failed attempts at the current new turn
        self.kinds: list[str] = []
        self.added = 0
        self.stop: str | None = None

    @property
    def next_turn(self) -> int:
        return self.msgs[-1]["turn"] + 1


def _msg(role: str, text: str, turn: int) -> dict:
    return {"role": role, "content": text, "turn": turn, "topic_continuity": None, "synthetic": True}


class Synth(MapStage):
    name = "synth"
    Config = SynthConfig

    def plan(self, inp, cfg: SynthConfig):
        tasks = super().plan(inp, cfg)
        if cfg.max_requests is not None:  # the stage's budget, split over its tasks (sum <= max_requests)
            q, r = divmod(int(cfg.max_requests), max(1, len(tasks)))
            for i, t in enumerate(tasks):
                t.payload["budget"] = q + (i < r)
        return tasks

    def run_task(self, payload, cfg, ctx):
        self._budget = payload.get("budget")
        yield from super().run_task(payload, cfg, ctx)

    def run(self, batches: Iterator[pa.RecordBatch], ctx: StageContext, cfg: SynthConfig):
        backend = make_backend(cfg, getattr(self, "_budget", None))
        tpl = TemplateFollowup(cfg.seed)
        settings = cfg.settings()
        try:
            for batch in batches:
                recs = batch.to_pylist()
                grown = [_Grow(r) for r in recs]
                self._grow(grown, backend, tpl, settings, ctx, cfg)
                out = []
                for g in grown:
                    ctx.keep()
                    ctx.stats[f"stop:{g.stop}"] += 1
                    rec = g.rec
                    if g.added:
                        ctx.stats["records_grown"] += 1
                        ctx.stats["turns_added"] += g.added
                        meta = dict(rec["meta"] or {})
                        extra = json.loads(meta.get("extra") or "{}")
                        extra["synth"] = {"added_turns": g.added, "kinds": g.kinds, "followup": cfg.followup,
                                          "backend": cfg.backend, "model": _model_name(cfg)}
                        meta["extra"] = json.dumps(extra, ensure_ascii=False, sort_keys=True)
                        rec = dict(rec, messages=g.msgs, meta=meta)
                    out.append(rec)
                if out:
                    yield pa.RecordBatch.from_pylist(with_meta(out, "synth"), schema=SCHEMA)
        finally:
            for k, v in sorted(backend.stats.items()):
                ctx.stats[f"backend:{k}"] += v

    # ------------------------------------------------------------------ one batch, round by round
    def _grow(self, grown, backend, tpl, settings, ctx, cfg: SynthConfig) -> None:
        for g in grown:
            roles = [m["role"] for m in g.msgs]
            if "user" not in roles or roles[-1] != "assistant":
                g.stop = "not_a_qa_ending_in_a_reply"
            elif g.n_user >= cfg.max_turns:
                g.stop = "max_turns"
        active = [g for g in grown if g.stop is None]
        while active:
            # 1. the next user turn
            if cfg.followup == "template":
                made = []
                for g in active:
                    text, kind = tpl.generate(g.rec["id"], g.msgs, g.lang, g.next_turn, g.fails, tuple(g.kinds))
                    made.append((text, None, kind))
            else:
                res = self._followups_by_model(active, backend, cfg)
                made = [r if isinstance(r, BackendError) else (r.text.strip(), r.finish_reason, "model") for r in res]
            asked = []
            for g, m in zip(active, made):
                if isinstance(m, BackendError):
                    self._backend_failed(g, m, ctx)
                    continue
                text, finish, kind = m
                q = _msg("user", text, g.next_turn)
                ctx.stats["generated:user"] += 1
                if self._failed(g, q, finish, settings, ctx, cfg, [q]):
                    continue
                asked.append((g, q, kind))
            # 2. the assistant reply to each follow-up that passed
            if asked:
                res = self._replies(asked, backend, cfg)
                for (g, q, kind), r in zip(asked, res):
                    if isinstance(r, BackendError):
                        self._backend_failed(g, r, ctx)
                        continue
                    a = _msg("assistant", r.text.strip(), q["turn"])
                    ctx.stats["generated:assistant"] += 1
                    if self._failed(g, a, r.finish_reason, settings, ctx, cfg, [q, a], history=g.msgs + [q]):
                        continue
                    g.msgs += [q, a]
                    g.kinds.append(kind)
                    g.added += 1
                    g.n_user += 1
                    g.fails = 0
                    ctx.stats[f"followup_kind:{kind}"] += 1
                    if g.n_user >= cfg.max_turns:
                        g.stop = "max_turns"
            active = [g for g in active if g.stop is None]

    def _followups_by_model(self, active, backend, cfg: SynthConfig):
        # Retries of a turn ask with another seed, so neither the model nor the cache repeats itself.
        return self._by_seed(active, backend, cfg, [model_followup_prompt(g.msgs, g.lang) for g in active],
                             cfg.followup_max_tokens, cfg.followup_model)

    def _replies(self, asked, backend, cfg: SynthConfig):
        return self._by_seed([g for g, _, _ in asked], backend, cfg,
                             [reply_prompt(g.msgs + [q], g.lang, cfg.style_hint) for g, q, _ in asked],
                             cfg.max_tokens, None)

    @staticmethod
    def _by_seed(gs, backend, cfg, prompts, max_tokens, model):
        out: list = [None] * len(gs)
        for fails in sorted({g.fails for g in gs}):
            idx = [i for i, g in enumerate(gs) if g.fails == fails]
            res = backend.generate([prompts[i] for i in idx], max_tokens=max_tokens,
                                   temperature=cfg.temperature, seed=cfg.seed + fails, model=model)
            for i, r in zip(idx, res):
                out[i] = r
        return out

    @staticmethod
    def _failed(g: _Grow, m: dict, finish, settings, ctx, cfg, pair, history=None) -> bool:
        """Run every check on a generated message; archive the pair and count the attempt on failure."""
        turn = C.Turn(m["content"], m["role"], g.msgs if history is None else history, g.check_lang, finish)
        fails = C.run_checks(turn, settings)
        for name in settings.enabled:
            ctx.stats[f"check_run:{m['role']}:{name}"] += 1
            if name in fails:
                ctx.stats[f"check_fail:{m['role']}:{name}"] += 1
        if not fails:
            return False
        first = next(iter(fails))
        ctx.reject(f"synth_{first}", n_inputs=0, record_id=g.rec["id"],
                   detail=f"turn {m['turn']} {m['role']} (attempt {g.fails + 1}/{cfg.attempts}): "
                          + "; ".join(f"{k}: {v}" for k, v in fails.items()),
                   raw=json.dumps({"record_id": g.rec["id"], "messages": pair}, ensure_ascii=False))
        g.fails += 1
        if g.fails >= cfg.attempts:
            g.stop = "attempts"
        return True

    @staticmethod
    def _backend_failed(g: _Grow, e: BackendError, ctx) -> None:
        if isinstance(e, BudgetExhausted):
            g.stop = "budget"
            return
        g.stop = "backend_error"
        ctx.stats[f"backend_error:{e.kind}"] += 1
        ctx.reject("synth_backend_error", n_inputs=0, record_id=g.rec["id"], detail=str(e)[:500])

    def finalize(self, folder, cfg: SynthConfig, counts):
        st = counts.get("stats", {})
        b = {k.split(":", 1)[1]: v for k, v in st.items() if k.startswith("backend:")}
        ti, to = b.get("tokens_in", 0), b.get("tokens_out", 0)
        checks = {}
        for name in cfg.checks:  # pass rates per check, overall and per role (follow-ups vs replies)
            by_role = {r: (st.get(f"check_run:{r}:{name}", 0), st.get(f"check_fail:{r}:{name}", 0))
                       for r in ("user", "assistant")}
            run, fail = (sum(v[i] for v in by_role.values()) for i in (0, 1))
            checks[name] = {"run": run, "failed": fail, "pass_rate": _rate(run, fail),
                            **{r: {"run": n, "failed": f, "pass_rate": _rate(n, f)} for r, (n, f) in by_role.items()}}
        gen = st.get("generated:user", 0) + st.get("generated:assistant", 0)
        return {"synth": {
            "backend": cfg.backend, "model": _model_name(cfg), "followup": cfg.followup,
            "max_turns": cfg.max_turns, "records_grown": st.get("records_grown", 0),
            "turns_added": st.get("turns_added", 0), "messages_generated": gen,
            "messages_kept": 2 * st.get("turns_added", 0),
            "stop": {k.split(":", 1)[1]: v for k, v in st.items() if k.startswith("stop:")},
            "followup_kinds": {k.split(":", 1)[1]: v for k, v in st.items() if k.startswith("followup_kind:")},
            "checks": checks,
            "requests": b.get("requests", 0), "cache_hits": b.get("cache_hits", 0), "retries": b.get("retries", 0),
            "errors": {k.split(":", 1)[1]: v for k, v in b.items() if k.startswith("error:")},
            "budget": cfg.max_requests, "budget_refused": b.get("budget_refused", 0),
            "tokens_in": ti, "tokens_out": to,
            "cached_tokens_in": b.get("cached_tokens_in", 0), "cached_tokens_out": b.get("cached_tokens_out", 0),
            "cost_usd": round(ti * float(cfg.price_in) / 1e6 + to * float(cfg.price_out) / 1e6, 6),
            "price_per_1m_tokens": {"in": cfg.price_in, "out": cfg.price_out},
        }}


def _rate(run: int, failed: int) -> float | None:
    return (run - failed) / run if run else None


def _model_name(cfg: SynthConfig) -> str | None:
    """The served model name, or a local model's folder name (not its full path)."""
    if cfg.backend == "hf" and cfg.model:
        return os.path.basename(os.path.normpath(str(cfg.model)))
    return cfg.model
