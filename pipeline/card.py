"""Dataset cards and Parquet copies: what lets the usual tools read a build without glue
(docs/output.md).

A card is a `README.md` whose YAML header holds `configs:`, the form Hugging Face `datasets`
reads, so `load_dataset(FOLDER)` picks exactly the files of each split:

    shard folder   default config: train = data/*.arrow; `rejected` config: rejected/*.arrow
    OUT/final      default config: train = the training stage folders in order,
                   validation = validation/*/data/*.arrow (plus a config per stage / DMT k)

Without a card, `datasets` globs the folder itself: it mixes rejected/*.arrow (another schema)
into a shard folder's data, and in OUT/final it takes the `validation` folder name for a split
and drops the training stages. The body lists the columns, the counts and the config hash;
text samples only from folders that hold no raw personal data (after the pii stage).

Cards are pure functions of the folder and its manifest (no clock), so a resumed build stays
byte-identical.
"""
from __future__ import annotations

import glob
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq

from . import integrity, shards
from .config import ConfigError
from .schema import REJECTED_SCHEMA, SCHEMA

CARD = "README.md"
PARQUET_DIR = "parquet"  # beside data/, not in it: a folder of mixed file types is refused by LLaMA-Factory
SAMPLE_CHARS = 160
ROW_GROUP_BYTES = 32 << 20  # Arrow bytes per Parquet row group


def _type_name(t: pa.DataType) -> str:
    if pa.types.is_struct(t):
        return "{" + ", ".join(f"{f.name}: {_type_name(f.type)}" for f in t) + "}"
    if pa.types.is_list(t):
        return f"list<{_type_name(t.value_type)}>"
    return str(t)


def _columns(schema: pa.Schema) -> list[str]:
    return [f"| `{f.name}` | `{_type_name(f.type)}` |" for f in schema]


def _yaml_configs(configs: list[dict], ident: str) -> list[str]:
    """The `configs:` header; paths are relative to the card's folder (as `datasets` reads them).
    `datasets` caches a folder's dataset under its base name and a hash of this header only (not
    of the files), so a rebuilt OUT/stages/05-topic would load the old rows from the cache: each
    config's `description` carries the folder's config hash, which changes with its content."""
    out = ["configs:"]
    for c in configs:
        out.append(f"- config_name: {json.dumps(c['name'])}")
        if c.get("default"):
            out.append("  default: true")
        out.append(f"  description: {json.dumps(ident)}")
        out.append("  data_files:")
        for split, paths in c["splits"].items():
            out.append(f"  - split: {split}")
            out.append("    path:")
            out += [f"    - {json.dumps(p)}" for p in paths]
    return out


def _write(folder: str, header: list[str], body: list[str]) -> str:
    text = "---\n" + "\n".join(header) + "\n---\n\n" + "\n".join(body).rstrip() + "\n"
    path = os.path.join(folder, CARD)
    shards.atomic_write_bytes(path, text.encode("utf-8"))
    return path


def _sample(folder: str) -> list[str]:
    """The first record's first messages, cut short: a glimpse of the text, never more."""
    for batch in shards.iter_batches(folder):
        if batch.num_rows:
            rec = batch.slice(0, 1).to_pylist()[0]
            lines = [f"- id `{rec['id']}` ({rec['lang']}, {rec['domain']}):", ""]
            for m in rec["messages"][:3]:
                text = " ".join(m["content"].split())
                text = text[:SAMPLE_CHARS] + (" ..." if len(text) > SAMPLE_CHARS else "")
                lines.append(f"      {m['role']}: {text}")
            return lines
    return []


def write_card(folder: str, manifest: dict) -> str:
    """The card of a shard folder (a stage's output or one folder of OUT/final), written just
    before the folder is marked complete; returns its path."""
    has_data = bool(shards.data_files(folder))
    has_rejected = bool(shards.data_files(folder, "rejected"))
    configs = [{"name": "default", "default": True, "splits": {"train": ["data/*.arrow"]}}]
    if has_rejected:
        configs.append({"name": "rejected", "splits": {"train": ["rejected/*.arrow"]}})
    base = os.path.basename(os.path.abspath(folder))
    name = manifest.get("mix_stage") or base
    header = _yaml_configs(configs, f"turnforge {name} {manifest.get('fingerprint', '')}") + [
        "tags:", "- turnforge", "- multi-turn", "- sft"]
    c = manifest.get("counts") or {}
    raw = bool(manifest.get("raw_personal_data", True))
    body = [f"# turnforge shard folder: {name}", "",
            "Multi-turn SFT conversations, one row per conversation, written by turnforge "
            "(Arrow IPC stream parts). Read them with:", "",
            "```python",
            "from datasets import load_dataset",
            f"ds = load_dataset(\".../{base}\")  # this folder; split train = data/*.arrow"
            + (f"\nrej = load_dataset(\".../{base}\", \"rejected\")  # dropped records with stage and reason"
               if has_rejected else ""),
            "```", "",
            "| | |", "|---|---|",
            f"| stage | `{manifest.get('stage', name)}` |",
            f"| config hash | `{manifest.get('fingerprint', '')}` |",
            f"| records in / kept / out | {c.get('in', '')} / {c.get('kept', '')} / {c.get('records_out', '')} |",
            f"| rejected | {c.get('rejected_total', 0)}"
            + "".join(f"; {k}: {v}" for k, v in sorted((c.get("rejected") or {}).items())) + " |",
            f"| data parts | {len(shards.data_files(folder))} |",
            f"| raw personal data | {'may hold it (before the pii stage): no text shown here' if raw else 'no'} |",
            f"| turnforge / schema | {(manifest.get('versions') or {}).get('turnforge', '')} / "
            f"{(manifest.get('versions') or {}).get('schema', '')} |",
            "", "## Columns (data/*.arrow)", "", "| column | type |", "|---|---|", *_columns(SCHEMA)]
    if has_rejected:
        body += ["", "## Columns (rejected/*.arrow)", "", "| column | type |", "|---|---|", *_columns(REJECTED_SCHEMA)]
    if has_data and not raw:
        body += ["", "## A record", "", *_sample(folder)]
    return _write(folder, header, body)


def _rel(sub: str) -> str:
    return f"{sub}/data/*.arrow"


def write_final_card(final: str, manifest: dict) -> str:
    """The card of OUT/final: train = the training stages in order, validation = every held-out
    set; a config per training stage (sequential strategies) and, for DMT, per k (stage-1 then
    that k's stage-2). Written before mix_manifest.json, the mix's last file."""
    folders = manifest.get("folders") or {}
    stages = [s for s in folders.get("stages", []) if shards.data_files(os.path.join(final, s))]
    val = [v for v in folders.get("validation", []) if shards.data_files(os.path.join(final, v))]
    val_split = {"validation": [_rel("validation/*")]} if val else {}
    plain = [s for s in stages if "/" not in s]
    grid = [s for s in stages if "/" in s]  # DMT: stage-2/k=1_2 ... alternatives, not a sequence
    first = plain + grid[:1]
    configs = [{"name": "default", "default": True,
                "splits": {**({"train": [_rel(s) for s in first]} if first else {}), **val_split}}]
    if len(plain) > 1 and not grid:
        configs += [{"name": s, "splits": {"train": [_rel(s)]}} for s in plain]
    for g in grid:
        configs.append({"name": g.split("/", 1)[1], "splits": {"train": [_rel(s) for s in plain + [g]],
                                                             **val_split}})
    header = _yaml_configs(configs, f"turnforge final {manifest.get('fingerprint', '')}") + [
        "tags:", "- turnforge", "- multi-turn", "- sft"]
    counts = {s["stage"]: s.get("total") for s in manifest.get("stages", [])}
    realised = (manifest.get("validation") or {}).get("realised", {})
    body = ["# turnforge mixed training set", "",
            f"Strategy `{manifest.get('strategy', '')}`, seed {manifest.get('seed', '')}, config hash "
            f"`{manifest.get('fingerprint', '')}`. Read it with:", "",
            "```python",
            "from datasets import load_dataset",
            "ds = load_dataset(\"final\")  # train: " + (" then ".join(first) or "none") + "; validation: "
            + (", ".join(val) or "none"),
            *([f"ds_k = load_dataset(\"final\", \"{configs[-1]['name']}\")  # one DMT k: stage-1 then its stage-2"]
              if grid else []),
            "```", "",
            "| folder | records |", "|---|---|",
            *[f"| `{s}` (train) | {counts.get(s, '')} |" for s in stages],
            *[f"| `{v}` (validation) | {realised.get(v.split('/', 1)[1], '')} |" for v in val],
            "", "Each folder is a shard folder with its own card and manifest; columns: "
            "see any `stage-*/README.md`. `mix_manifest.json` holds the shares, weights and hold-outs."]
    return _write(final, header, body)


def write_parquet(folder: str) -> list[str]:
    """`parquet: true`: a zstd Parquet copy of every data part in FOLDER/parquet/, same names and
    rows; parts already written are kept (a resumed build rewrites nothing)."""
    out_dir = os.path.join(folder, PARQUET_DIR)
    written = []
    with shards.owner_only(shards.is_owner_only(folder)):  # a copy of raw data is as private as the data
        os.makedirs(out_dir, exist_ok=True)
        for tmp in glob.glob(os.path.join(out_dir, ".*.tmp")):  # a killed copy's; its part is redone
            os.remove(tmp)
        for src in shards.verified_files(folder):  # parts as the manifest lists them
            dst = os.path.join(out_dir, os.path.basename(src)[:-len(".arrow")] + ".parquet")
            if not os.path.exists(dst):
                _parquet_part([src], dst)
            written.append(dst)
    return written


def _parquet_part(srcs: list[str], dst: str) -> int:
    """Stream Arrow parts into one Parquet file, visible under its name only when complete.
    Batches are gathered into row groups of up to ROW_GROUP_BYTES: one row group per stage batch
    (1,000 rows) would compress worse and write slower, a whole part at once would hold it all in
    memory."""
    # a dot name: Parquet readers of the folder (pandas, pyarrow.dataset) skip it
    tmp = os.path.join(os.path.dirname(dst) or ".", "." + os.path.basename(integrity.temp_name(dst)))  # per writer
    rows, buf, size = 0, [], 0
    with pq.ParquetWriter(tmp, SCHEMA, compression="zstd") as w:
        for src in srcs:
            for b in shards.iter_batches_of(src):
                buf.append(b)
                size += b.nbytes
                rows += b.num_rows
                if size >= ROW_GROUP_BYTES:
                    w.write_table(pa.Table.from_batches(buf, SCHEMA), row_group_size=1 << 30)
                    buf, size = [], 0
        if buf:
            w.write_table(pa.Table.from_batches(buf, SCHEMA), row_group_size=1 << 30)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, dst)
    return rows


def export_parquet(folder: str, out: str) -> tuple[int, list[str]]:
    """`turnforge export --format parquet`: OUT ending in .parquet is one file, else a folder
    of parts named like the shard's. Returns (rows, files written)."""
    parts = shards.data_files(folder)
    if out.endswith(".parquet"):
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        return _parquet_part(parts, out), [out]
    names = [os.path.basename(p)[:-len(".arrow")] + ".parquet" for p in parts]
    other = sorted(set(os.listdir(out)) - set(names)) if os.path.isdir(out) else []
    if any(f.endswith(".parquet") for f in other):  # a reader of the folder would mix them in
        raise ConfigError(f"{out}: holds other Parquet files ({', '.join(f for f in other if f.endswith('.parquet'))[:200]}); "
                          "export into an empty folder or to FILE.parquet")
    os.makedirs(out, exist_ok=True)
    rows, files = 0, []
    for src, name in zip(parts, names):
        dst = os.path.join(out, name)
        rows += _parquet_part([src], dst)
        files.append(dst)
    return rows, files


def final_folders(final: str) -> list[str]:
    """Every shard folder under OUT/final (training stages, DMT alternatives, validation sets)."""
    return sorted(os.path.dirname(p.rstrip(os.sep)) for p in glob.glob(os.path.join(final, "**", "data", ""),
                                                                         recursive=True))
