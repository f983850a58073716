"""`turnforge discriminator train | eval | predict`."""
from __future__ import annotations

import json
import os
import random
import sys
from typing import TextIO

import numpy as np

from . import data as D
from . import features as F
from .metrics import prf, roc_auc, segmentation
from .model import DEFAULT_DIR, KINDS, TopicModel, labelled_rows
from .model import train as fit_model


def _embedder(spec: str, cache_dir: str | None):
    from pipeline.embed import get_embedder
    return get_embedder(spec, cache_dir=cache_dir or os.environ.get("TURNFORGE_EMBED_CACHE") or None)


def load_training_data(data: list[str], splice: list[str] | None = None, splice_n: int = 0, seed: int = 0,
                       negatives_n: int = 0, log=print, cue_rate: float = 0.0) -> list[D.Dialogue]:
    """Labelled dialogues from ``FORMAT:PATH`` specs, plus ``splice_n`` spliced dialogues made from
    the chats of each ``splice`` file (labelled: switch at the splice, 0 elsewhere) and
    ``negatives_n`` of its real chats whole, every message a continuation (0). With
    ``cue_rate``, that share of the spliced and real chats' user messages get a soft cue
    (data.cue_augment), switches and continuations alike."""
    out: list[D.Dialogue] = []
    for spec in data:
        fmt, path = D.parse_spec(spec)
        ds = [d for d in D.read(path, fmt) if (d.labels >= 0).any()]
        log(f"  {path}: {len(ds)} labelled dialogues, {int((np.concatenate([d.labels for d in ds]) == 1).sum()) if ds else 0} switches")
        out += ds
    for k, spec in enumerate(splice or [] if splice_n else []):
        # within one file: a user who keeps a window open keeps its language and register
        path = D.parse_spec(spec)[1]
        chats = list(D.read_chats(path))
        neg = random.Random(seed * 1000 + k).sample(chats, min(negatives_n, len(chats)))
        made = D.splice(chats, splice_n, seed=seed * 1000 + k) + D.continuations([d for d in neg if len(d) >= 2])
        out += D.cue_augment(made, cue_rate, seed=seed * 1000 + k) if cue_rate > 0 else made
        log(f"  {path}: {splice_n} spliced pseudo multi-turn dialogues and {len(neg)} real ones from {len(chats)} chats")
    if not out:
        raise D.DataError("no training data: give --data FORMAT:PATH and/or --splice PATH with --splice-n N")
    return out


def train(data: list[str], out: str, splice: list[str] | None = None, splice_n: int = 0,
          kinds=KINDS, folds: int = 5, seed: int = 0, embedder: str = "use-m3+minilm", cache_dir: str | None = None,
          negatives_n: int = 0, log=print, cue_rate: float = 0.25) -> TopicModel:
    dialogues = load_training_data(data, splice, splice_n, seed, negatives_n, log, cue_rate=cue_rate)
    m = fit_model(dialogues, _embedder(embedder, cache_dir), kinds=kinds, folds=folds, seed=seed,
                  embedder_name=embedder, log=log)
    m.info["data"] = [os.path.basename(D.parse_spec(s)[1]) for s in data]
    m.info["splice"] = {"from": [os.path.basename(D.parse_spec(s)[1]) for s in splice or []], "n": splice_n,
                        "real_negatives": negatives_n, "cue_rate": cue_rate}
    m.save(out)
    return m


def load_model(model_dir: str | None, profile: str | None) -> TopicModel:
    try:
        return TopicModel.load(model_dir, profile=profile)
    except KeyError as e:
        raise D.DataError(f"--profile: {e.args[0]}") from None


def evaluate(model_dir: str | None, path: str, fmt: str | None = None, cache_dir: str | None = None,
             profile: str | None = None) -> dict:
    """Switch-class P/R/F1 of the model's decisions, ROC-AUC of its P(switch), Pk / WindowDiff."""
    m = load_model(model_dir, profile)
    dialogues = [d for d in D.read(path, fmt) if (d.labels >= 0).any()]
    if not dialogues:
        raise D.DataError(f"{path}: no labelled messages")
    batch = F.featurize(dialogues, _embedder(m.embedder, cache_dir))
    mask, y = labelled_rows(dialogues, batch)
    p = m.p_switch(batch.X)
    res = {"file": path, "format": fmt or D.guess_format(path), "dialogues": len(dialogues),
           "labelled_messages": int(mask.sum()), "switch_rate": float((y[mask] == 1).mean()),
           "profile": m.profile, "head": m.active_head, "threshold": m.threshold, **prf(y[mask] == 1, p[mask] >= m.threshold), "roc_auc": roc_auc(y[mask] == 1, p[mask])}
    refs, hyps = [], []
    start = 0
    for d in dialogues:
        rows = batch.row_of[start + 1:start + len(d)]
        start += len(d)
        hyp = np.zeros(len(d), bool)
        hyp[1:] = p[rows] >= m.threshold
        refs.append(np.where(d.labels == 1, 1, 0))
        hyps.append(hyp)
    res.update(segmentation(refs, hyps))
    return res


def print_eval(res: dict, out: TextIO = sys.stdout) -> None:
    fmt = lambda x: "-" if x is None else f"{x:.4f}"  # noqa: E731
    print(f"{res['file']} ({res['format']}): {res['dialogues']} dialogues, {res['labelled_messages']} labelled "
          f"messages, switch rate {res['switch_rate']:.4f}", file=out)
    print(f"switch class at threshold {res['threshold']:.4f} (profile {res.get('profile') or '-'}): precision {fmt(res['precision'])}  recall "
          f"{fmt(res['recall'])}  F1 {fmt(res['f1'])}  (tp {res['tp']} fp {res['fp']} fn {res['fn']})", file=out)
    print(f"ROC-AUC {fmt(res['roc_auc'])}   Pk {fmt(res['pk'])}   WindowDiff {fmt(res['windowdiff'])}", file=out)


def predict(model_dir: str | None, inp: str, out: str, cache_dir: str | None = None, batch: int = 256,
            profile: str | None = None) -> int:
    """Copy JSONL chats from ``inp`` to ``out``, adding to every message after the first
    ``topic_continuity`` (calibrated P(same topic)) and ``topic_switch`` (the model's decision);
    the first message gets null for both. Returns the number of lines."""
    m = load_model(model_dir, profile)
    emb = _embedder(m.embedder, cache_dir)
    n = 0
    tmp = out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as g:
        pending: list[tuple[dict, D.Dialogue]] = []

        def flush():
            scored = m.score([d for _, d in pending], emb)
            for (rec, _), (cont, sw) in zip(pending, scored):
                for k, msg in enumerate(rec["messages"]):
                    msg["topic_continuity"] = None if k == 0 else round(float(cont[k]), 6)
                    msg["topic_switch"] = None if k == 0 else bool(sw[k])
                g.write(json.dumps(rec, ensure_ascii=False) + "\n")
            pending.clear()

        for ln, rec in D.iter_jsonl(inp):
            msgs = D.check_messages(inp, ln, rec)
            pending.append((rec, D.Dialogue([x["content"] for x in msgs], [str(x.get("role", "user")) for x in msgs],
                                            [-1] * len(msgs))))
            n += 1
            if len(pending) >= batch:
                flush()
        if pending:
            flush()
    os.replace(tmp, out)
    return n


def adapt(data: list[str], out: str, base: str | None = None, profile: str | None = None, folds: int = 5,
          seed: int = 0, cache_dir: str | None = None, log=print) -> TopicModel:
    """Refit the last layer and the threshold of ``base``'s ``profile`` head on the user's own
    labelled dialogues (model.adapt) and save the base with the result as its default
    profile ``adapted``; the base's own profiles stay as they were."""
    from .model import adapt as adapt_head
    m0 = TopicModel.load(base)
    dialogues = load_training_data(data, log=log)
    m = adapt_head(m0, dialogues, _embedder(m0.embedder, cache_dir), profile=profile, folds=folds, seed=seed,
                   log=log)
    m.info.setdefault("adapted", {})["data"] = [os.path.basename(D.parse_spec(s)[1]) for s in data]
    m.save(out)
    return m.use(None)


__all__ = ["train", "evaluate", "print_eval", "predict", "adapt", "DEFAULT_DIR"]
