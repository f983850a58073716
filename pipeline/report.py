"""OUT/report.html: a shareable summary of a build (docs/design.md#a-build-on-disk).

    write_report(OUT)   -> OUT/report.html     (`turnforge report OUT`; `build` calls it last)

Sections: the funnel (in / kept / rejected by reason, archived, repairs), length histograms of
the output (turns per conversation, characters per message by role), languages, domains and
sources, mixture shares and validation sizes, topic, PII, dedup and synth figures.

Numbers only. The report holds counts, ids, labels the config chose (stage, source, domain,
reason and entity names) and figures computed from the shards; never message text, PII values
or the manifests' free-text `detail` strings, so it can be shared like a manifest. It is one
HTML file with inline CSS and bars drawn as plain HTML: opening it fetches nothing. The numbers
behind it are embedded as JSON (`<script type="application/json" id="turnforge-report">`) for
tools.

Shards are read batch by batch and every length is computed over the whole batch with
pyarrow.compute / numpy into fixed-bin histograms, so memory stays at one batch however large
the output is.
"""
from __future__ import annotations

import glob
import html
import json
import os
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import shards
from .schema import ROLES

REPORT = "report.html"

# Histogram bins: bin i holds [edges[i], edges[i+1]); the last one is open. Fixed edges let
# batches be added up as they stream past.
TURN_EDGES = (0, 1, 2, 3, 4, 5, 6, 8, 11, 16, 21, 31)
CHAR_EDGES = (0, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000)

# Stage manifest keys every stage has (shown in the funnel or not at all); anything else is a
# stage-specific section.
_COMMON = {"stage", "config", "input", "seed", "versions", "fingerprint", "counts", "accounting_ok", "tasks",
           "data_parts", "rejected_parts", "rejected_files"}
_SECTIONS = ("quality", "pii", "dedup", "topic", "synth")  # stage sections with their own part of the report


class Histogram:
    """Counts of integer values in fixed bins, plus n, sum and max, added batch by batch."""

    def __init__(self, edges):
        self.edges = np.asarray(edges, dtype=np.int64)
        self.counts = np.zeros(len(self.edges), dtype=np.int64)
        self.n = self.total = self.max = 0

    def add(self, values: np.ndarray) -> None:
        if not len(values):
            return
        idx = np.searchsorted(self.edges, values, side="right") - 1
        self.counts += np.bincount(idx, minlength=len(self.edges))
        self.n += len(values)
        self.total += int(values.sum())
        self.max = max(self.max, int(values.max()))

    def labels(self) -> list[str]:
        e = self.edges.tolist()
        out = []
        for lo, hi in zip(e, e[1:] + [None]):
            out.append(f"{lo:,}+" if hi is None else f"{lo:,}" if hi == lo + 1 else f"{lo:,}-{hi - 1:,}")
        return out

    def to_dict(self) -> dict:
        return {"bins": self.labels(), "counts": self.counts.tolist(), "n": self.n, "sum": self.total,
                "max": self.max, "mean": round(self.total / self.n, 2) if self.n else None}


def _value_counts(col: pa.Array) -> dict:
    vc = pc.value_counts(col)
    return dict(zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist()))


def folder_stats(folder: str) -> dict:
    """Length histograms and label counts of one shard folder's records, streamed."""
    turns = Histogram(TURN_EDGES)
    chars = {r: Histogram(CHAR_EDGES) for r in ROLES}
    labels = {"lang": Counter(), "domain": Counter(), "source": Counter()}
    messages = synthetic = 0
    for b in shards.iter_batches(folder):
        msgs = b.column("messages")
        flat = pc.list_flatten(msgs)
        parent = pc.list_parent_indices(msgs).to_numpy()
        roles = pc.struct_field(flat, "role")
        lengths = pc.utf8_length(pc.struct_field(flat, "content")).to_numpy(zero_copy_only=False)
        # A turn is one user message and the reply to it (docs/design.md#record), so turns = user messages.
        is_user = pc.equal(roles, "user").to_numpy(zero_copy_only=False)
        turns.add(np.bincount(parent[is_user], minlength=b.num_rows))
        for r in ROLES:
            chars[r].add(lengths[pc.equal(roles, r).to_numpy(zero_copy_only=False)])
        for name, c in labels.items():
            c.update(_value_counts(b.column(name)))
        messages += len(flat)
        synthetic += pc.sum(pc.struct_field(flat, "synthetic")).as_py() or 0
    return {"conversations": turns.n, "messages": messages, "synthetic_messages": synthetic,
            "turns": turns.to_dict(), "chars": {r: h.to_dict() for r, h in chars.items() if h.n},
            **{name: dict(sorted(c.items())) for name, c in labels.items()}}


def _numbers(obj, prefix: str = "") -> dict:
    """The numeric leaves of a manifest section, flattened to `a.b` keys. Strings are left out:
    they may be free text (details, paths), which the report never shows."""
    out = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(_numbers(v, f"{prefix}{k}."))
    elif isinstance(obj, (bool, int, float)):
        out[prefix[:-1]] = obj
    return out


# Manifest strings the report may show: fixed labels and ids. Every other string (details,
# paths, model names) is dropped when a section is collected.
_LABEL_KEYS = {"policy", "model_kind", "backend", "followup", "embedder", "reason", "dropped", "kept", "switch_roles"}


def _clean(obj, key: str | None = None):
    """A manifest section with only numbers, lists of them and labelled strings (None: drop it)."""
    if isinstance(obj, dict):
        out = {k: _clean(v, k) for k, v in obj.items()}
        return {k: v for k, v in out.items() if v is not None}
    if isinstance(obj, list):
        return [x for x in (_clean(v, key) for v in obj) if x is not None]
    if isinstance(obj, str):
        return obj if key in _LABEL_KEYS else None
    return obj


def _load_json(path: str) -> dict | None:
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _load_build(out_dir: str, manifest: dict | None = None) -> dict:
    m = manifest if manifest is not None else _load_json(os.path.join(out_dir, "manifest.json"))
    if m is None:
        raise FileNotFoundError(f"{out_dir}: no manifest.json, so not a build folder "
                                f"(run `turnforge build CONFIG --out {out_dir}` first)")
    if "funnel" not in m and "counts" in m:  # one stage's shard folder: report it as a one-stage build
        m = {"funnel": [{"stage": m.get("stage", "stage"), "folder": ".", **m["counts"]}], "last_stage": ".",
             "seed": m.get("seed"), "versions": m.get("versions", {})}
    if "funnel" not in m:
        raise ValueError(f"{out_dir}/manifest.json: neither a build manifest (funnel) nor a stage manifest (counts)")
    return m


def collect(out_dir: str, manifest: dict | None = None) -> dict:
    """Every number the report shows, from the manifests and the shards (no text). `manifest`:
    the build manifest when it is not on disk yet."""
    m = _load_build(out_dir, manifest)
    stages = []
    for k, f in enumerate(m["funnel"], 1):
        sm = _load_json(os.path.join(out_dir, f["folder"], "manifest.json")) or {}
        row = {key: f.get(key) for key in ("stage", "folder", "in", "kept", "rejected_total", "records_out")}
        row.update({key: dict(f.get(key) or {}) for key in ("rejected", "archived", "repairs")})
        row["label"] = os.path.basename(os.path.normpath(f["folder"])) if f["folder"] != "." else f["stage"]
        row["sections"] = {s: _clean(sm[s]) for s in _SECTIONS if isinstance(sm.get(s), dict)}
        other = {key: v for key, v in sm.items() if key not in _COMMON and key not in _SECTIONS}
        row["other"] = _numbers({**other, "stats": f.get("stats") or {}}) if not row["sections"] else {}
        stages.append(row)

    outputs = []
    if m.get("last_stage") and m["last_stage"] != "final":
        outputs.append(m["last_stage"])
    mix = None
    if m.get("mix"):
        final = m["mix"].get("final", "final")
        mix = _load_json(os.path.join(out_dir, final, "mix_manifest.json"))
        names = (mix or {}).get("folders", {}).get("stages")
        if names is None:
            names = sorted(os.path.relpath(os.path.dirname(p), os.path.join(out_dir, final))
                           for p in glob.glob(os.path.join(out_dir, final, "stage-*", "**", "_SUCCESS"),
                                              recursive=True))
        outputs += [os.path.join(final, n) for n in names]
    return {
        "build": {"folder": os.path.basename(os.path.abspath(out_dir)),
                  "config": os.path.basename(m["config"]) if m.get("config") else None,
                  "seed": m.get("seed"), "versions": m.get("versions", {})},
        "funnel": stages,
        "outputs": {rel: folder_stats(os.path.join(out_dir, rel)) for rel in outputs},
        "mix": _mix_numbers(mix) if mix else None,
    }


def _mix_numbers(mix: dict) -> dict:
    v = mix.get("validation", {})
    return {
        "strategy": mix.get("strategy"),
        "validation": {"requested": v.get("requested", {}), "realised": v.get("realised", {}),
                       "excluded_same_cluster": v.get("excluded_same_cluster"),
                       "leakage_method": v.get("leakage_method")},
        "sources": {name: {k: s.get(k) for k in ("domain", "n", "validation", "train_pool", "excluded_leakage")}
                    for name, s in (mix.get("sources") or {}).items()},
        "stages": [{"stage": st["stage"], "total": st.get("total"), "k": st.get("k"),
                    "replay_share": st.get("replay_share"),
                    "domains": st.get("domains", {}),
                    "sources": {n: {"count": s.get("count"), "share": s.get("share")}
                                for n, s in (st.get("sources") or {}).items()},
                    "schemes": {part: w.get("scheme") for part, w in (st.get("weights") or {}).items()}}
                   for st in mix.get("stages", [])],
    }


# ------------------------------------------------------------------------------------ HTML

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;
color:#1d2330;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:2px solid #dde3ec;padding-bottom:.2em;margin-top:2em}
h3{margin:1.2em 0 .4em;font-size:1.05em}
table{border-collapse:collapse;margin:.4em 0 1em}th,td{padding:3px 10px;text-align:left;vertical-align:middle}
th{background:#f1f4f9;font-weight:600}tr:nth-child(even) td{background:#fafbfd}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.bar{display:flex;width:260px;height:12px;background:#edf0f5;border-radius:2px;overflow:hidden}
.bar span{display:block;height:100%}.k{background:#3d7ede}.r{background:#e0574f}.s{background:#8a6fd1}
.muted{color:#6b7486}.grid{display:flex;flex-wrap:wrap;gap:0 2.5em}.note{color:#6b7486;font-size:.92em}
code{background:#f1f4f9;padding:0 3px;border-radius:2px}
"""


def _e(x) -> str:
    return html.escape(str(x), quote=True)


def _n(x) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):  # 4 decimals, or 3 significant digits for tiny values (costs)
        return f"{x:,.4f}".rstrip("0").rstrip(".") if x == 0 or abs(x) >= 1e-3 else f"{x:.3g}"
    return _e(x)


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _bar(parts: list[tuple[float, str]], scale: float) -> str:
    """A horizontal bar of coloured segments (value, css class), scaled so `scale` fills it."""
    spans = "".join(f'<span class="{c}" style="width:{100 * v / scale:.2f}%"></span>'
                    for v, c in parts if scale and v)
    return f'<div class="bar">{spans}</div>'


def _table(head: list[str], rows: list[list[str]], attrs: str = "", num_from: int = 1) -> str:
    """Cells are already HTML; columns from `num_from` on are right-aligned numbers."""
    th = "".join(f'<th class="num">{h}</th>' if i >= num_from and h else f"<th>{h}</th>" for i, h in enumerate(head))
    body = "".join("<tr>" + "".join(f'<td class="num">{c}</td>' if i >= num_from and not c.startswith("<div")
                                    else f"<td>{c}</td>" for i, c in enumerate(r)) + "</tr>" for r in rows)
    head_row = f"<tr>{th}</tr>" if any(head) else ""  # key/value tables need no header
    return f"<table{attrs}>{head_row}{body}</table>"


def _counts_table(title: str, counts: dict, total: int | None = None, css: str = "k") -> str:
    """Label / count / share bar rows, largest first."""
    if not counts:
        return ""
    total = total or sum(counts.values())
    top = max(counts.values())
    rows = [[_e(k), _n(v), _pct(v / total if total else None), _bar([(v, css)], top)]
            for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))]
    return f"<h3>{title}</h3>" + _table(["", "count", "share", ""], rows)


def _funnel(stages: list[dict]) -> str:
    top = max([s["in"] or 0 for s in stages] + [1])
    rows = [[f"{k}", _e(s["label"]), _n(s["in"]), _n(s["kept"]), _n(s["rejected_total"]), _n(s["records_out"]),
             _pct(s["kept"] / s["in"] if s["in"] else None),
             _bar([(s["kept"] or 0, "k"), (s["rejected_total"] or 0, "r")], top)]
            for k, s in enumerate(stages, 1)]
    parts = ["<h2>Funnel</h2>",
             _table(["#", "stage", "in", "kept", "rejected", "records out", "kept share",
                     '<span class="muted">kept <b style="color:#3d7ede">&#9632;</b> '
                     'rejected <b style="color:#e0574f">&#9632;</b></span>'],
                    rows, ' class="funnel"', num_from=2),
             '<p class="note">in / kept / rejected count input units (for extract: lines or events; later '
             "stages: conversations), so in = kept + rejected for every stage; records out counts the "
             "conversations a stage wrote.</p>"]
    for key, title, what, css in (("rejected", "Rejected by reason", "reason", "r"),
                                  ("archived", "Archived (cut parts of kept records)", "reason", "s"),
                                  ("repairs", "Repairs applied", "rule", "k")):
        items = [(s["label"], reason, v) for s in stages for reason, v in s[key].items()]
        if items:
            top = max(v for _, _, v in items)
            rows = [[_e(label), _e(reason), _n(v), _bar([(v, css)], top)] for label, reason, v in items]
            parts.append(f"<h3>{title}</h3>" + _table(["stage", what, "count", ""], rows, num_from=2))
    return "".join(parts)


def _hist(kind: str, folder: str, role: str | None, h: dict, title: str = "") -> str:
    counts, labels = h["counts"], h["bins"]
    nz = [i for i, c in enumerate(counts) if c]
    lo, hi = (nz[0], nz[-1] + 1) if nz else (0, 0)  # empty bins at both ends carry nothing
    top = max(counts) if nz else 1
    rows = "".join(f'<tr><td>{_e(labels[i])}</td><td>{_bar([(counts[i], "k")], top)}</td>'
                   f'<td class="num" data-count="{counts[i]}">{counts[i]:,}</td></tr>' for i in range(lo, hi))
    role_attr = f' data-role="{_e(role)}"' if role else ""
    head = f"{title}{_e(role)}: " if role else title
    return (f'<div><h3>{head}n {h["n"]:,}, mean {_n(h["mean"])}, max {h["max"]:,}</h3>'
            f'<table class="hist" data-hist="{kind}" data-folder="{_e(folder)}"{role_attr}>{rows}</table></div>')


def _outputs(outputs: dict) -> str:
    if not outputs:
        return "<h2>Output</h2><p>No output folder.</p>"
    parts = ["<h2>Output</h2>"]
    for folder, s in outputs.items():
        parts.append(f"<h3>{_e(folder)}</h3>")
        parts.append(_table(["conversations", "messages", "synthetic messages", "turns (mean)"],
                            [[_n(s["conversations"]), _n(s["messages"]), _n(s["synthetic_messages"]),
                              _n(s["turns"]["mean"])]], num_from=0))
        parts.append(_hist("turns", folder, None, s["turns"], "turns per conversation: "))
        parts.append("<h3>characters per message, by role</h3>")
        parts.append('<div class="grid">' + "".join(_hist("chars", folder, r, h) for r, h in s["chars"].items())
                     + "</div>")
        parts.append('<div class="grid">' + "".join(
            f"<div>{_counts_table(title, s[key], s['conversations'], 's')}</div>"
            for key, title in (("lang", "language"), ("domain", "domain"), ("source", "source"))) + "</div>")
    return "".join(parts)


def _mix(mix: dict | None) -> str:
    if not mix:
        return "<h2>Mixture</h2><p>stage not run (no <code>mix:</code> in the config).</p>"
    parts = [f"<h2>Mixture</h2><p>strategy <b>{_e(mix['strategy'])}</b></p>"]
    for st in mix["stages"]:
        extra = "".join(f", {k} {_n(st[k])}" for k in ("k", "replay_share") if st.get(k) not in (None, 0, 0.0))
        schemes = ", ".join(f"{_e(p)}: {_e(s)}" for p, s in st["schemes"].items())
        parts.append(f"<h3>final/{_e(st['stage'])}: {_n(st['total'])} records{extra}"
                     f'{f" <span class=muted>({schemes})</span>" if schemes else ""}</h3>')
        rows = [["domain", _e(d), _n(v.get("count")), _pct(v.get("share")), _bar([(v.get("share") or 0, "k")], 1)]
                for d, v in st["domains"].items()]
        # Sources split from one folder by domain are named after their domain: show them once.
        if any(st["domains"].get(n, {}).get("count") != v.get("count") for n, v in st["sources"].items()):
            rows += [["source", _e(n), _n(v.get("count")), _pct(v.get("share")),
                      _bar([(v.get("share") or 0, "s")], 1)] for n, v in st["sources"].items()]
        parts.append(_table(["", "name", "count", "realised share", ""], rows, ' class="mix"', num_from=2))
    v = mix["validation"]
    rows = [[_e(name), _n(v["requested"].get(name)), _n(n)] for name, n in v["realised"].items()]
    parts.append("<h3>Validation splits (held out before mixing)</h3>"
                 + _table(["set", "requested", "realised"], rows, ' class="validation"')
                 + f'<p class="note">leakage check: {_e(v["leakage_method"])}; excluded as same cluster: '
                   f'{_n(v["excluded_same_cluster"])}</p>')
    rows = [[_e(n), _e(s["domain"]), _n(s["n"]), _n(s["validation"]), _n(s["train_pool"]), _n(s["excluded_leakage"])]
            for n, s in mix["sources"].items()]
    parts.append("<h3>Sources</h3>" + _table(["source", "domain", "records", "validation", "train pool",
                                               "excluded (leakage)"], rows, num_from=2))
    return "".join(parts)


def _kv(pairs: list[tuple[str, object]]) -> str:
    return _table(["", ""], [[_e(k), _n(v)] for k, v in pairs if v is not None], ' class="kv"')


def _topic(t: dict) -> str:
    return _kv([("policy", t.get("policy")), ("beyond the ratio", t.get("over_ratio")),
                ("profile", t.get("profile")), ("conversations scored", t.get("conversations")),
                ("messages scored", t.get("scored_messages")),
                ("switch rate (switch-role messages)", t.get("switch_rate")),
                ("switch rate (all scored messages)", t.get("switch_rate_all_messages")),
                ("true multi-turn", t.get("true_multi_turn")), ("pseudo multi-turn", t.get("pseudo_multi_turn")),
                ("pseudo share before", t.get("pseudo_share_before")),
                ("pseudo share after", t.get("pseudo_share_after")),
                ("pseudo ratio target", t.get("pseudo_ratio_target")), ("pseudo kept whole", t.get("pseudo_kept")),
                ("pseudo split", t.get("pseudo_split")), ("pseudo dropped", t.get("pseudo_dropped")),
                ("split pieces", t.get("split_pieces")), ("threshold P(switch)", t.get("threshold")),
                ("model", t.get("model_kind"))])


def _pii(p: dict) -> str:
    found, residual = p.get("found") or {}, p.get("residual") or {}
    ents = sorted(set(found) | set(residual), key=lambda e: (-found.get(e, 0), e))
    top = max(list(found.values()) + [1])
    rows = [[_e(e), _n(found.get(e, 0)), _n(residual.get(e, 0)), _bar([(found.get(e, 0), "k")], top)] for e in ents]
    return (f"<p>messages scanned {_n(p.get('messages'))}; found {_n(sum(found.values()))}, "
            f"residual after anonymisation {_n(sum(residual.values()))}</p>"
            + (_table(["entity", "found / replaced", "residual (record rejected)", ""], rows, ' class="pii"')
               if rows else "<p>No PII found.</p>"))


def _dedup(d: dict) -> str:
    dropped = d.get("dropped") or {}
    methods = [("exact", "exact_clusters", "exact_dup"), ("prefix + MinHash", "near_clusters", "near_dup"),
               ("semantic", "semantic_clusters", "semantic_dup")]
    rows = [[m, _n(d.get(c)), _n(dropped.get(r))] for m, c, r in methods if c in d or r in dropped]
    ex = d.get("examples") or []
    return (f"<p>records {_n(d.get('records'))}; prefix duplicates {_n(d.get('prefix_dups'))}; "
            f"LSH candidates {_n(d.get('lsh_candidates'))}, verified {_n(d.get('lsh_verified'))}</p>"
            + _table(["method", "clusters", "records dropped"], [[_e(a), b, c] for a, b, c in rows], ' class="dedup"')
            + (("<p class=note>examples (ids): " + "; ".join(
                f"{_e(x.get('dropped'))} &rarr; {_e(x.get('kept'))} ({_e(x.get('reason'))})" for x in ex[:5]) + "</p>")
               if ex else ""))


def _synth(s: dict) -> str:
    head = _kv([("backend", s.get("backend")), ("follow-ups", s.get("followup")), ("max turns", s.get("max_turns")),
                ("records grown", s.get("records_grown")), ("turns added", s.get("turns_added")),
                ("messages generated", s.get("messages_generated")), ("messages kept", s.get("messages_kept")),
                ("requests", s.get("requests")), ("cache hits", s.get("cache_hits")), ("retries", s.get("retries")),
                ("budget", s.get("budget")), ("budget refused", s.get("budget_refused")),
                ("tokens in", s.get("tokens_in")), ("tokens out", s.get("tokens_out")),
                ("cost (USD)", s.get("cost_usd"))])
    rows = []
    for name, c in (s.get("checks") or {}).items():
        rate = c.get("pass_rate")
        rows.append([_e(name), _n(c.get("run")), _n(c.get("failed")), _pct(rate),
                     _pct((c.get("user") or {}).get("pass_rate")), _pct((c.get("assistant") or {}).get("pass_rate")),
                     _bar([(rate or 0, "k"), (1 - rate if rate is not None else 0, "r")], 1)])
    checks = ("<h3>checks</h3>" + _table(["check", "run", "failed", "pass rate", "follow-ups", "replies", ""],
                                         rows, ' class="synth"')) if rows else ""
    errors = _counts_table("backend errors", s.get("errors") or {}, css="r")
    stops = _counts_table("why records stopped growing", s.get("stop") or {}, css="s")
    return head + checks + '<div class="grid">' + f"<div>{stops}</div><div>{errors}</div></div>"


def _quality(q: dict) -> str:
    rej = q.get("rejected") or {}
    top = max(list(rej.values()) + [1])
    rows = [[_e(r), _n(n), _bar([(n, "r")], top)] for r, n in rej.items()]
    return (_kv([("conversations", q.get("conversations")), ("kept", q.get("kept")),
                 ("share rejected", q.get("reject_share")),
                 ("kept with an AI-boilerplate refusal", q.get("refusal")),
                 ("kept with the reply in another language", q.get("lang_mismatch")),
                 ("kept with short replies", q.get("short_replies"))])
            + _table(["rule", "conversations rejected", ""], rows, ' class="quality"'))


_RENDER = {"quality": ("Quality", _quality), "topic": ("Topic continuity", _topic), "pii": ("PII", _pii),
           "dedup": ("Dedup", _dedup), "synth": ("Synthesis", _synth)}


def render(data: dict) -> str:
    b = data["build"]
    stages = data["funnel"]
    v = b.get("versions") or {}
    body = [f"<h1>turnforge build report: {_e(b['folder'])}</h1>",
            f'<p class="muted">config {_e(b["config"] or "-")} &middot; seed {_n(b["seed"])} &middot; '
            + " &middot; ".join(f"{_e(k)} {_e(x)}" for k, x in sorted(v.items())) + "</p>",
            _funnel(stages), _outputs(data["outputs"]), _mix(data["mix"])]
    for key, (title, fn) in _RENDER.items():
        runs = [s for s in stages if key in s["sections"]]
        body.append(f"<h2>{title}</h2>")
        if not runs:
            body.append(f"<p>stage not run (no <code>{key}</code> stage in this build).</p>")
        for s in runs:
            if len(runs) > 1 or s["label"] != key:
                body.append(f"<h3>{_e(s['label'])}</h3>")
            body.append(fn(s["sections"][key]))
    other = [s for s in stages if s["other"]]
    if other:
        body.append("<h2>Other stage figures</h2>")
        for s in other:
            body.append(f"<h3>{_e(s['label'])}</h3>" + _kv(sorted(s["other"].items())))
    # `<` escaped so no value can close the script element.
    blob = json.dumps(data, ensure_ascii=False, sort_keys=True).replace("<", "\\u003c")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>turnforge report: {_e(b['folder'])}</title><style>{CSS}</style></head><body>"
            + "\n".join(body)
            + f'\n<script type="application/json" id="turnforge-report">{blob}</script>\n</body></html>\n')


def write_report(out_dir: str, path: str | None = None, manifest: dict | None = None) -> str:
    """Write the report of the build in `out_dir` (default OUT/report.html); returns its path.
    `runner.build` passes its manifest so the report is written before OUT/manifest.json, which
    stays the last file of a build (a build without it is unfinished)."""
    text = render(collect(out_dir, manifest))
    path = path or os.path.join(out_dir, REPORT)
    shards.atomic_write_bytes(path, text.encode("utf-8"))
    return path
