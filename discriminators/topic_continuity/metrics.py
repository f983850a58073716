"""Scores of topic-switch decisions: shift-class P/R/F1, ROC-AUC, and segmentation Pk / WindowDiff."""
from __future__ import annotations

import numpy as np


def prf(y: np.ndarray, pred: np.ndarray) -> dict:
    """Precision, recall, F1 of the switch class (label 1)."""
    y, pred = np.asarray(y, bool), np.asarray(pred, bool)
    tp = int((y & pred).sum())
    fp = int((~y & pred).sum())
    fn = int((y & ~pred).sum())
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0, "tp": tp, "fp": fp, "fn": fn}


def roc_auc(y: np.ndarray, score: np.ndarray) -> float | None:
    """ROC-AUC of ``score`` for the switch class (None when only one class is present)."""
    y = np.asarray(y, bool)
    if y.all() or not y.any():
        return None
    from sklearn.metrics import roc_auc_score
    return float(roc_auc_score(y, score))


def best_threshold(y: np.ndarray, score: np.ndarray, tol: float = 0.0) -> tuple[float, float]:
    """(threshold, F1) for the switch-class decision ``score >= threshold``. With ``tol`` > 0,
    the median of the thresholds whose F1 is within ``tol`` of the best: the F1 curve is flat
    and noisy near its top, and its centre moves less from one sample to the next than its
    argmax does."""
    y = np.asarray(y, bool)
    order = np.argsort(-score, kind="stable")
    s, t = score[order], y[order]
    tp = np.cumsum(t)
    fp = np.cumsum(~t)
    last = np.r_[s[1:] != s[:-1], True]  # only cut between distinct scores
    f1 = np.where(last, 2 * tp / np.maximum(tp + fp + t.sum(), 1), -1)
    k = int(np.argmax(f1))
    if tol <= 0:
        return float(s[k]), float(f1[k])
    near = np.flatnonzero(f1 >= f1[k] - tol)
    j = int(near[len(near) // 2])
    return float(s[j]), float(f1[j])


def _windows(boundary: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """For i in [0, n-k): boundaries in (i, i+k] and whether i and i+k share a segment."""
    c = np.r_[0, np.cumsum(boundary[1:].astype(np.int64))]
    cnt = c[k:] - c[:-k]
    return cnt, cnt == 0


def segmentation(dialogue_labels: list[np.ndarray], dialogue_pred: list[np.ndarray]) -> dict:
    """Pk and WindowDiff (lower is better) over dialogues; a boundary is before message i when
    its label (or decision) is 1. k is half the mean reference segment length of each dialogue."""
    pk_err = wd_err = total = 0
    for ref, hyp in zip(dialogue_labels, dialogue_pred):
        ref = (np.asarray(ref) == 1)
        hyp = np.asarray(hyp, bool)
        n = len(ref)
        k = max(1, int(round(n / (2 * (1 + ref[1:].sum())))))
        if n <= k:
            continue
        rc, rs = _windows(ref, k)
        hc, hs = _windows(hyp, k)
        pk_err += int((rs != hs).sum())
        wd_err += int((rc != hc).sum())
        total += n - k
    return {"pk": pk_err / total if total else None, "windowdiff": wd_err / total if total else None}
