"""The topic-continuity model: scaler + logistic regression or a small MLP, Platt-calibrated,
with an operating threshold chosen on validation data for switch-class F1.

Saved as ``model.json`` (schema version, features, embedder, threshold, calibration, training
record) and ``weights.npz`` (arrays only): no pickle, so loading a model runs no code, and
inference is a few numpy matrix products, identical before and after a save/load round trip.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field

import numpy as np

from . import features as F
from .metrics import best_threshold, prf, roc_auc

SCHEMA_VERSION = 1
KINDS = ("logreg", "mlp")
THRESHOLD_TOL = 0.01  # operating point: centre of the out-of-fold F1 plateau (metrics.best_threshold)
DEFAULT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights")


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))


def _with_rules(p: np.ndarray, X: np.ndarray) -> np.ndarray:
    return np.where(F.acknowledgement(X), 0.0, p) if len(p) else p


@dataclass
class TopicModel:
    kind: str
    mean: np.ndarray
    scale: np.ndarray
    layers: list  # [(W, b), ...]; relu between layers; the last gives the switch logit
    calib: tuple = (1.0, 0.0)  # Platt: P(switch) = sigmoid(a * logit + b)
    threshold: float = 0.5     # on calibrated P(switch)
    features: list = field(default_factory=lambda: list(F.FEATURES))
    embedder: str = "use-m3"
    info: dict = field(default_factory=dict)

    # --------------------------------------------------------------- inference
    def logit(self, X: np.ndarray) -> np.ndarray:
        h = (np.asarray(X, dtype=np.float64) - self.mean) / self.scale
        for k, (W, b) in enumerate(self.layers):
            h = h @ W + b
            if k < len(self.layers) - 1:
                h = np.maximum(h, 0.0)
        return h[:, 0]

    def p_switch(self, X: np.ndarray) -> np.ndarray:
        """Calibrated P(switch); 0 for acknowledgements (features.acknowledgement)."""
        a, b = self.calib
        return _with_rules(_sigmoid(a * self.logit(X) + b), X)

    def score(self, dialogues, embedder=None, embeddings=None):
        """Per dialogue: (topic_continuity, topic_switch) arrays, NaN / False on the first
        message. ``embedder`` defaults to the one the model was trained with."""
        if embedder is None and embeddings is None:
            from pipeline.embed import get_embedder
            embedder = get_embedder(self.embedder)
        batch = F.featurize(dialogues, embedder, embeddings)
        p = self.p_switch(batch.X) if len(batch.X) else np.zeros(0)
        out = []
        start = 0
        for d in dialogues:
            n = len(d.texts)
            cont = np.full(n, np.nan)
            sw = np.zeros(n, dtype=bool)
            rows = batch.row_of[start:start + n]
            ok = rows >= 0
            cont[ok] = 1.0 - p[rows[ok]]
            sw[ok] = p[rows[ok]] >= self.threshold
            out.append((cont, sw))
            start += n
        return out

    # --------------------------------------------------------------- persistence
    def save(self, out_dir: str) -> None:
        os.makedirs(out_dir, exist_ok=True)
        arrays = {"mean": self.mean, "scale": self.scale}
        for k, (W, b) in enumerate(self.layers):
            arrays[f"W{k}"], arrays[f"b{k}"] = W, b
        np.savez(os.path.join(out_dir, "weights.npz"), **arrays)
        meta = {"schema_version": SCHEMA_VERSION, "kind": self.kind, "features": self.features,
                "embedder": self.embedder, "n_layers": len(self.layers), "calibration": list(self.calib),
                "threshold": self.threshold, "info": self.info}
        with open(os.path.join(out_dir, "model.json"), "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=2, ensure_ascii=False)
            f.write("\n")

    @classmethod
    def load(cls, model_dir: str | None = None) -> "TopicModel":
        model_dir = model_dir or DEFAULT_DIR
        path = os.path.join(model_dir, "model.json")
        if not os.path.exists(path):
            raise FileNotFoundError(f"no topic model at {model_dir} (model.json missing); train one with "
                                    f"`turnforge discriminator train`")
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
        if meta.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"{path}: schema_version {meta.get('schema_version')!r}, this turnforge reads "
                             f"{SCHEMA_VERSION}")
        if meta["features"] != F.FEATURES:
            raise ValueError(f"{path}: trained on features {meta['features']}, this turnforge computes {F.FEATURES}")
        with np.load(os.path.join(model_dir, "weights.npz"), allow_pickle=False) as z:
            layers = [(z[f"W{k}"], z[f"b{k}"]) for k in range(meta["n_layers"])]
            mean, scale = z["mean"], z["scale"]
        return cls(kind=meta["kind"], mean=mean, scale=scale, layers=layers, calib=tuple(meta["calibration"]),
                   threshold=float(meta["threshold"]), features=meta["features"], embedder=meta["embedder"],
                   info=meta.get("info", {}))


# ------------------------------------------------------------------- training

def labelled_rows(dialogues, batch: F.Batch) -> tuple[np.ndarray, np.ndarray]:
    """(row mask, labels) of the feature rows whose message carries a 0/1 label."""
    y = np.concatenate([d.labels for d in dialogues]) if dialogues else np.zeros(0, np.int8)
    lab = np.full(len(batch.X), -1, dtype=np.int8)
    ok = batch.row_of >= 0
    lab[batch.row_of[ok]] = y[ok]
    return lab >= 0, lab


def _fit(kind: str, X: np.ndarray, y: np.ndarray, seed: int):
    mean = X.mean(axis=0).astype(np.float64)
    scale = X.std(axis=0).astype(np.float64)
    scale[scale < 1e-9] = 1.0
    Z = (X - mean) / scale
    # hyper-parameters picked on TIAGE train out-of-fold F1 (bench/topic_bench.py)
    if kind == "logreg":
        from sklearn.linear_model import LogisticRegression
        m = LogisticRegression(C=0.1, class_weight="balanced", max_iter=3000).fit(Z, y)
        layers = [(m.coef_.T.astype(np.float64), m.intercept_.astype(np.float64))]
    elif kind == "mlp":
        from sklearn.neural_network import MLPClassifier
        m = MLPClassifier(hidden_layer_sizes=(32,), alpha=1.0, max_iter=300, early_stopping=True,
                          random_state=seed).fit(Z, y)
        layers = [(W.astype(np.float64), b.astype(np.float64)) for W, b in zip(m.coefs_, m.intercepts_)]
    else:
        raise ValueError(f"unknown model kind {kind!r}; use one of {KINDS}")
    return TopicModel(kind=kind, mean=mean, scale=scale, layers=layers)


def _platt(logit: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    from sklearn.linear_model import LogisticRegression
    m = LogisticRegression(C=1e6, max_iter=1000).fit(logit[:, None], y)
    return float(m.coef_[0, 0]), float(m.intercept_[0])


def fold_ids(dialogues, folds: int, seed: int) -> np.ndarray:
    """Deterministic dialogue-level fold of each dialogue (a hash of id and seed)."""
    return np.array([int(hashlib.blake2b(f"{seed}:{d.id}".encode(), digest_size=4).hexdigest(), 16) % folds
                     for d in dialogues], dtype=np.int64)


def featurize_labelled(dialogues, embedder) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X, y, dialogue index) of the labelled messages."""
    b = F.featurize(dialogues, embedder)
    mask, y = labelled_rows(dialogues, b)
    return b.X[mask], y[mask].astype(np.int64), b.dlg[mask]


def train(dialogues, embedder, kinds=KINDS, folds: int = 5, seed: int = 0,
          embedder_name: str | None = None, log=print) -> TopicModel:
    """Out-of-fold predictions (folds by dialogue) choose the kind with the best switch F1 and
    fit the Platt calibration and the operating threshold; the kept model is then refit on all
    the data. Reported validation scores are out-of-fold, i.e. on dialogues each fold never saw."""
    X, y, dlg = featurize_labelled(dialogues, embedder)
    if len(np.unique(y)) < 2:
        raise ValueError("training data needs both switch (1) and continue (0) labels")
    fold = fold_ids(dialogues, folds, seed)[dlg]
    best = None
    for kind in kinds:
        oof = np.zeros(len(y))
        for k in range(folds):
            te = fold == k
            if te.any() and len(np.unique(y[~te])) == 2:
                oof[te] = _fit(kind, X[~te], y[~te], seed).logit(X[te])
        thr, f1 = best_threshold(y, oof)
        log(f"  {kind:<7} out-of-fold F1 {f1:.3f}  ROC-AUC {roc_auc(y, oof):.3f}")
        if best is None or f1 > best[1]:
            best = (kind, f1, oof)
    kind, _, oof = best
    m = _fit(kind, X, y, seed)
    m.calib = _platt(oof, y)
    p = _with_rules(_sigmoid(m.calib[0] * oof + m.calib[1]), X)
    m.threshold, _ = best_threshold(y, p, tol=THRESHOLD_TOL)
    m.embedder = embedder_name or getattr(embedder, "name", "use-m3")
    sc = prf(y, p >= m.threshold)
    src = np.array([d.source for d in dialogues], dtype=object)[dlg]
    per_source = {}
    for name in sorted(set(src)):
        k = src == name
        s_ = prf(y[k], p[k] >= m.threshold)
        per_source[name] = {"rows": int(k.sum()), "switch_rate": float(y[k].mean()),
                            "flag_rate": float((p[k] >= m.threshold).mean()), "f1": s_["f1"],
                            "precision": s_["precision"], "recall": s_["recall"], "roc_auc": roc_auc(y[k], p[k])}
    m.info = {"rows": int(len(y)), "dialogues": len(dialogues), "switch_rate": float(y.mean()),
              "oof_f1": sc["f1"], "oof_precision": sc["precision"], "oof_recall": sc["recall"],
              "oof_roc_auc": roc_auc(y, p), "seed": seed, "folds": folds, "oof_by_source": per_source}
    return m
