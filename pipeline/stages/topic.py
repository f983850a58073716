"""Stage `topic`: score topic continuity, keep true multi-turn, control pseudo multi-turn.

prepare (once, over all parts): the discriminator scores every message after the first
(system messages are not scored and are not context); a conversation with a switch on a
message whose role is in `switch_roles` (default: user, who is the one changing topic in
logs) is *pseudo* multi-turn. Decisions go to `.work/decisions.arrow`:

- `policy: ratio`: keep every true multi-turn conversation and k pseudo ones as they are, k =
  min(n_pseudo, round(r * n_true / (1 - r))) (`pseudo_ratio` r). The k are the pseudo
  conversations with the smallest blake2b(seed, id): deterministic, independent of part order
  and worker count. The others are split at their switches into single-topic conversations
  (`over_ratio: split`, the default: a wrong switch call costs context, never data) or, with
  `over_ratio: drop`, go to rejected/ as `pseudo_over_ratio`, which makes pseudo / output = r
  to within one record.
- `policy: split_at_switch`: every pseudo conversation is cut before each switch into
  conversations that each keep only their own topic's context (leading system messages go
  with every piece); a piece without an assistant reply is archived as `split_piece_no_reply`.

Tasks then write `topic_continuity` (calibrated P(same topic)) on every scored message.
"""
from __future__ import annotations

import hashlib
import json
from array import array
import os
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import pyarrow as pa

from .. import progress, shards
from ..config import ConfigError
from ..schema import SCHEMA
from .base import Stage, StageContext, decided_batches, decisions_path, part_tasks, with_meta

POLICIES = ("ratio", "split_at_switch")
OVER_RATIO = ("split", "drop")

DECISIONS = pa.schema([
    pa.field("part", pa.int32()), pa.field("row", pa.int32()),
    pa.field("continuity", pa.list_(pa.float32())), pa.field("switch", pa.list_(pa.bool_())),
    pa.field("pseudo", pa.bool_()),
])
PSEUDO_KEEP = "pseudo_keep.npy"  # (part << 32 | row) of the pseudo conversations the ratio keeps


@dataclass
class TopicConfig:
    model: str | None = None          # model dir; None: the shipped model
    policy: str = "ratio"
    pseudo_ratio: float = 0.1         # pseudo multi-turn kept whole, as a share (policy ratio)
    over_ratio: str = "split"         # pseudo beyond the ratio: split at switches, or drop
    profile: str | None = None        # operating point of the model; None: its default (assistant)
    switch_roles: list = field(default_factory=lambda: ["user"])
    threshold: float | None = None    # override the profile's operating threshold on P(switch)
    seed: int = 0
    cache_dir: str | None = None      # embedding cache (vectors only, no text)
    batch: int = 512                  # conversations scored per call

    def check(self) -> None:
        if self.policy not in POLICIES:
            raise ConfigError(f"topic: policy {self.policy!r}; use one of {POLICIES}")
        if self.over_ratio not in OVER_RATIO:
            raise ConfigError(f"topic: over_ratio {self.over_ratio!r}; use one of {OVER_RATIO}")
        if not 0.0 <= float(self.pseudo_ratio) < 1.0:
            raise ConfigError(f"topic: pseudo_ratio {self.pseudo_ratio!r} must be in [0, 1)")
        if isinstance(self.switch_roles, str):
            self.switch_roles = [r.strip() for r in self.switch_roles.split(",") if r.strip()]
        bad = sorted(set(self.switch_roles) - {"user", "assistant", "tool"})
        if bad or not self.switch_roles:
            raise ConfigError(f"topic: switch_roles {self.switch_roles!r}; use user, assistant and/or tool")
        if self.threshold is not None and not 0.0 < float(self.threshold) < 1.0:
            raise ConfigError(f"topic: threshold {self.threshold!r} must be in (0, 1)")


def _rank(seed: int, rid: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{seed}:{rid}".encode(), digest_size=8).digest(), "big")


def pseudo_quota(n_true: int, n_pseudo: int, ratio: float) -> int:
    """Pseudo conversations to keep so that kept / (n_true + kept) is ``ratio``."""
    if ratio <= 0 or n_pseudo == 0:
        return 0
    return int(min(n_pseudo, round(ratio * n_true / (1.0 - ratio))))


class Topic(Stage):
    name = "topic"
    Config = TopicConfig

    def _model(self, cfg: TopicConfig):
        from discriminators.topic_continuity.model import TopicModel

        try:
            m = TopicModel.load(cfg.model, profile=cfg.profile)
        except KeyError as e:
            raise ConfigError(f"topic: profile: {e.args[0]}") from None
        if cfg.threshold is not None:
            m.threshold = float(cfg.threshold)
        return m

    # ------------------------------------------------------------- map + reduce
    def prepare(self, inp, cfg: TopicConfig, folder: str) -> None:
        from discriminators.topic_continuity.data import Dialogue

        from ..embed import get_embedder

        if inp is None or not shards.is_complete(inp):
            raise ConfigError(f"topic: input {inp!r} is not a finished shard folder (_SUCCESS missing)")
        model = self._model(cfg)
        emb = get_embedder(model.embedder, cache_dir=cfg.cache_dir)
        roles_ok = set(cfg.switch_roles)
        # streamed: decisions go to disk per batch; memory keeps 3 integers per pseudo conversation
        os.makedirs(os.path.join(folder, ".work", "decisions"), exist_ok=True)
        writers: dict[int, shards.PartWriter] = {}  # one decisions file per input part
        # (blake2b(seed, id), part, row) of each pseudo conversation, 16 bytes each (no Python objects)
        rank_h, rank_part, rank_row = array("Q"), array("i"), array("i")
        n = n_pseudo = 0
        n_scored = n_switch = n_eligible = n_eligible_switch = 0
        pending: list[tuple[int, int, str, list[dict]]] = []
        bar = progress.bar(shards.load_manifest(inp).get("counts", {}).get("records_out"), "topic scoring",
                           "conv", self.progress)

        def flush():
            nonlocal n, n_pseudo, n_scored, n_switch, n_eligible, n_eligible_switch
            cols = {k: [] for k in ("part", "row", "continuity", "switch", "pseudo")}
            dialogues, where = [], []
            for _, _, _, msgs in pending:
                idx = [i for i, m in enumerate(msgs) if m["role"] != "system"]
                where.append(idx)
                dialogues.append(Dialogue([msgs[i]["content"] for i in idx], [msgs[i]["role"] for i in idx],
                                          [-1] * len(idx)))
            scored = model.score([d for d in dialogues if len(d)], emb) if any(len(d) for d in dialogues) else []
            it = iter(scored)
            for (part, row, rid, msgs), idx, d in zip(pending, where, dialogues):
                cont = [None] * len(msgs)
                sw = [False] * len(msgs)
                if len(d):
                    c, s = next(it)
                    for k, i in enumerate(idx[1:], 1):
                        cont[i] = float(c[k])
                        sw[i] = bool(s[k]) and msgs[i]["role"] in roles_ok
                        n_scored += 1
                        n_switch += bool(s[k])
                        if msgs[i]["role"] in roles_ok:
                            n_eligible += 1
                            n_eligible_switch += sw[i]
                cols["part"].append(part)
                cols["row"].append(row)
                cols["continuity"].append(cont)
                cols["switch"].append(sw)
                cols["pseudo"].append(any(sw))
                if any(sw):
                    rank_h.append(_rank(cfg.seed, rid))
                    rank_part.append(part)
                    rank_row.append(row)
            n += len(pending)
            bar.update(len(pending))
            n_pseudo += sum(cols["pseudo"])
            if pending:
                tab = pa.RecordBatch.from_pydict(cols, schema=DECISIONS)
                part_col = np.array(cols["part"])
                for p in np.unique(part_col).tolist():
                    if p not in writers:
                        writers[p] = shards.PartWriter(decisions_path(folder, p), DECISIONS)
                    writers[p].write(tab.filter(pa.array(part_col == p)))
            pending.clear()

        for pi, part in enumerate(shards.data_files(inp)):
            row = 0
            for b in shards.iter_batches_of(part):
                for rid, msgs in zip(b.column("id").to_pylist(), b.column("messages").to_pylist()):
                    pending.append((pi, row, rid, msgs))
                    row += 1
                    if len(pending) >= cfg.batch:
                        flush()
        flush()
        bar.close()

        for pi in range(len(shards.data_files(inp))):
            if pi not in writers:  # an empty part still gets its (empty) decisions
                writers[pi] = shards.PartWriter(decisions_path(folder, pi), DECISIONS)
            writers[pi].close()
        n_true = n - n_pseudo
        kept_pseudo = 0  # split_at_switch: every pseudo conversation becomes on-topic pieces
        keys = np.zeros(0, dtype=np.int64)
        if cfg.policy == "ratio":
            kept_pseudo = pseudo_quota(n_true, n_pseudo, float(cfg.pseudo_ratio))
            h, p_, r_ = (np.frombuffer(a, dt) for a, dt in ((rank_h, np.uint64), (rank_part, np.int32),
                                                             (rank_row, np.int32)))
            chosen = np.lexsort((r_, p_, h))[:kept_pseudo]  # smallest hashes: independent of part order
            keys = (p_[chosen].astype(np.int64) << 32) | r_[chosen].astype(np.int64)
        np.save(os.path.join(folder, ".work", PSEUDO_KEEP), np.sort(keys))
        stats = {
            "policy": cfg.policy, "pseudo_ratio_target": float(cfg.pseudo_ratio) if cfg.policy == "ratio" else None,
            "model": cfg.model or "shipped", "model_kind": model.head_kind, "profile": model.profile,
            "head": model.active_head, "threshold": model.threshold,
            "over_ratio": cfg.over_ratio if cfg.policy == "ratio" else None,
            "embedder": emb.name, "switch_roles": list(cfg.switch_roles),
            "conversations": n, "true_multi_turn": n_true, "pseudo_multi_turn": n_pseudo,
            "scored_messages": n_scored, "switch_rate_all_messages": n_switch / n_scored if n_scored else None,
            "switch_rate": n_eligible_switch / n_eligible if n_eligible else None,
            "pseudo_share_before": n_pseudo / n if n else None,
            "pseudo_quota": kept_pseudo,
        }
        shards.atomic_write_json(os.path.join(folder, ".work", "prepared.json"), stats)

    # ------------------------------------------------------------- per-part apply
    def plan(self, inp, cfg):
        return part_tasks(inp)

    def run_task(self, payload, cfg: TopicConfig, ctx: StageContext) -> Iterator[pa.RecordBatch]:
        kept_keys = set(np.load(os.path.join(ctx.folder, ".work", PSEUDO_KEEP)).tolist())
        for batch, dec in decided_batches(payload, ctx):
            out = []
            for rec, d in zip(batch.to_pylist(), dec.to_pylist()):
                for m, c in zip(rec["messages"], d["continuity"]):
                    m["topic_continuity"] = c
                if not d["pseudo"]:
                    ctx.keep()
                    ctx.stats["true_kept"] += 1
                    out.append(rec)
                elif cfg.policy == "ratio" and (payload["index"] << 32) | d["row"] in kept_keys:
                    ctx.keep()
                    ctx.stats["pseudo_kept"] += 1
                    out.append(rec)
                elif cfg.policy == "ratio" and cfg.over_ratio == "drop":
                    meta = rec["meta"] or {}
                    ctx.reject("pseudo_over_ratio", record_id=rec["id"],
                               detail=f"switch before message(s) {[i for i, s in enumerate(d['switch']) if s]}; "
                                      f"pseudo_ratio={cfg.pseudo_ratio}",
                               source_file=meta.get("source_file"), line=meta.get("source_line"),
                               raw=json.dumps(rec, ensure_ascii=False, default=str))
                    ctx.stats["pseudo_dropped"] += 1
                else:
                    ctx.keep()
                    pieces = split_at_switches(rec, d["switch"])
                    if not any(ok for _, ok in pieces):
                        # no piece could stand alone (e.g. no reply after any cut): keep it whole
                        # rather than lose the conversation
                        ctx.stats["pseudo_kept_unsplittable"] += 1
                        out.append(rec)
                        continue
                    ctx.stats["pseudo_split"] += 1
                    for piece, ok in pieces:
                        if ok:
                            ctx.stats["split_pieces"] += 1
                            out.append(piece)
                        else:
                            meta = rec["meta"] or {}
                            ctx.stats["split_pieces_no_reply"] += 1
                            ctx.reject("split_piece_no_reply", n_inputs=0, record_id=piece["id"],
                                       detail=f"piece of {rec['id']} without an assistant reply",
                                       source_file=meta.get("source_file"), line=meta.get("source_line"),
                                       raw=json.dumps(piece, ensure_ascii=False, default=str))
            if out:
                yield pa.RecordBatch.from_pylist(with_meta(out, "topic"), schema=SCHEMA)

    def finalize(self, folder, cfg, counts):
        with open(os.path.join(folder, ".work", "prepared.json")) as f:
            stats = json.load(f)
        out = counts.get("records_out", 0)
        c = counts.get("stats", {})
        # what became of the pseudo conversations: kept whole, split into pieces, dropped
        kept_whole = c.get("pseudo_kept", 0) + c.get("pseudo_kept_unsplittable", 0)
        stats.update({"pseudo_kept": c.get("pseudo_kept", 0),
                      "pseudo_kept_unsplittable": c.get("pseudo_kept_unsplittable", 0),
                      "pseudo_split": c.get("pseudo_split", 0), "pseudo_dropped": c.get("pseudo_dropped", 0),
                      "split_pieces": c.get("split_pieces", 0),
                      "split_pieces_no_reply": c.get("split_pieces_no_reply", 0),
                      "pseudo_share_after": kept_whole / out if out else None})
        return {"topic": stats}


def split_at_switches(rec: dict, switch: list[bool]) -> list[tuple[dict, bool]]:
    """Cut a conversation before each switch message: [(piece, has a reply)]. Leading system
    messages go with every piece; a piece's first message has no context, so its
    topic_continuity is null; turns are renumbered from 0 and PII spans follow their message."""
    msgs = rec["messages"]
    n_sys = 0
    while n_sys < len(msgs) and msgs[n_sys]["role"] == "system":
        n_sys += 1
    cuts = [n_sys] + [i for i in range(n_sys + 1, len(msgs)) if switch[i]] + [len(msgs)]
    meta0 = rec["meta"] or {}
    spans = meta0.get("pii_spans") or []
    pieces = []
    for k, (a, b) in enumerate(zip(cuts[:-1], cuts[1:])):
        idx = list(range(n_sys)) + list(range(a, b))
        body = [dict(msgs[i]) for i in range(a, b)]
        t0 = body[0]["turn"] if body else 0
        for m in body:
            m["turn"] = max(0, m["turn"] - t0)
        body[0]["topic_continuity"] = None
        new = {i: j for j, i in enumerate(idx)}
        meta = dict(meta0)
        extra = json.loads(meta.get("extra") or "{}")
        extra.update({"split_from": rec["id"], "split_piece": k})
        meta["extra"] = json.dumps(extra, ensure_ascii=False)
        meta["pii_spans"] = [dict(s, message=new[s["message"]]) for s in spans if s["message"] in new] or None
        piece = dict(rec, id=f"{rec['id']}-t{k}", messages=[dict(msgs[i]) for i in range(n_sys)] + body, meta=meta)
        roles = [m["role"] for m in body]
        ok = "assistant" in roles and roles[0] != "assistant"
        pieces.append((piece, ok))
    return pieces
