"""The output read by the tools people train with (docs/output.md): `datasets.load_dataset` on a
shard folder and on OUT/final (the dataset card's `configs:`), LLaMA-Factory on every export and
on data/*.arrow (through tests/llamafactory_reader.py, a rule-by-rule stand-in: LLaMA-Factory is
not installed here), Parquet, and TRL's SFTTrainer with assistant-only loss on a shard folder."""
import glob
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import SAMPLES

import llamafactory_reader as lf
from pipeline import card, shards
from pipeline.cli import main

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    """A small build with system prompts, multi-turn records, rejections, a mix and parquet: true."""
    tmp = tmp_path_factory.mktemp("interop")
    cfg = {"seed": 1, "parquet": True, "rows_per_part": 7,
           "inputs": [{"path": os.path.join(SAMPLES, d), "source": d, "domain": dom}
                      for d, dom in (("sharegpt", "code"), ("openai", "general"), ("alpaca", "math"))]
           + [{"path": os.path.join(SAMPLES, "logs", "chat_events_2026-11-01.jsonl"), "source": "chatlog",
               "domain": "general"}],
           "stages": [{"name": "extract"}, {"name": "dedup", "methods": "exact,minhash"},
                      {"name": "mix", "strategy": "multi_task", "val_size": 3, "long_size": 0}]}
    path = tmp / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp / "out"
    assert main(["build", str(path), "--out", str(out), "--quiet"]) == 0
    return out


def _ids(folder, sub="data"):
    return [r["id"] if sub == "data" else (r["record_id"], r["reason"]) for r in shards.iter_records(folder, sub)]


def test_load_dataset_stage_folders(build):
    from datasets import load_dataset

    for folder in sorted(glob.glob(str(build / "stages" / "*"))):
        assert len(shards.data_files(folder)) > 1  # several parts: every one must be read
        ds = load_dataset(folder)
        assert list(ds) == ["train"] and ds["train"]["id"] == _ids(folder)
        assert ds["train"].column_names == ["id", "source", "domain", "lang", "messages", "meta"]
    extract = str(build / "stages" / "01-extract")
    rej = load_dataset(extract, "rejected")["train"]  # the rejected/ parts, with their own schema
    assert len(rej) == shards.load_manifest(extract)["counts"]["rejected_rows"] > 0
    assert list(zip(rej["record_id"], rej["reason"])) == _ids(extract, "rejected")


def test_load_dataset_final_splits(build):
    from datasets import load_dataset

    final = build / "final"
    ds = load_dataset(str(final))
    assert sorted(ds) == ["train", "validation"]
    assert ds["train"]["id"] == _ids(str(final / "stage-1"))  # the training rows, in training order
    val = [i for f in sorted(glob.glob(str(final / "validation" / "*"))) for i in _ids(f)]
    assert sorted(ds["validation"]["id"]) == sorted(val) and len(val) == 3 * 3  # val_size per domain
    assert not set(val) & set(ds["train"]["id"])


def test_final_card_dmt_and_sequential(tmp_path):
    """DMT: the default config is stage-1 then the first k; each k has its own config.
    Sequential: train is every stage in order; each stage has its own config."""
    from datasets import load_dataset
    from test_mix import domain_folder

    code = domain_folder(tmp_path, "code", 60, 1)
    gen = domain_folder(tmp_path, "general", 80, 2)
    out = tmp_path / "out"
    assert main(["mix", "--in", code, gen, "--strategy", "dmt", "--k", "1,1/4", "--out", str(out),
                 "--set", "specialist=code", "--set", "general=general", "--set", "val_size=3", "--quiet"]) == 0
    final = out / "final"
    s1, k4 = _ids(str(final / "stage-1")), _ids(str(final / "stage-2" / "k=1_4"))
    ds = load_dataset(str(final), "k=1_4")
    assert ds["train"]["id"] == s1 + k4 and len(ds["validation"]) == 6
    assert load_dataset(str(final))["train"]["id"] == s1 + _ids(str(final / "stage-2" / "k=1"))
    seq = tmp_path / "seq"
    assert main(["mix", "--in", code, gen, "--strategy", "sequential", "--out", str(seq), "--set", "val_size=3",
                 "--set", "specialist=code", "--quiet"]) == 0
    st = [_ids(str(seq / "final" / f"stage-{k}")) for k in (1, 2)]
    assert load_dataset(str(seq / "final"))["train"]["id"] == st[0] + st[1]  # the stages in training order
    assert load_dataset(str(seq / "final"), "stage-2")["train"]["id"] == st[1]


def test_card_lists_columns_counts_hash_and_no_raw_text(build, tmp_path):
    extract = str(build / "stages" / "01-extract")
    m = shards.load_manifest(extract)
    text = open(os.path.join(extract, "README.md"), encoding="utf-8").read()
    head = yaml.safe_load(text.split("---\n")[1])
    assert head["configs"][0] == {"config_name": "default", "default": True,
                                  "description": f"turnforge 01-extract {m['fingerprint']}",
                                  "data_files": [{"split": "train", "path": ["data/*.arrow"]}]}
    assert m["fingerprint"] in text and f"| {m['counts']['in']} / {m['counts']['kept']} /" in text
    assert all(f"`{f.name}`" in text for f in shards.SCHEMA)
    assert m["raw_personal_data"] and "## A record" not in text
    first = next(shards.iter_records(extract))
    assert first["messages"][0]["content"][:30] not in text  # no text before the pii stage
    # the same folder, once it holds no raw personal data, shows a short sample
    card.write_card(extract, {**m, "raw_personal_data": False})
    text = open(os.path.join(extract, "README.md"), encoding="utf-8").read()
    assert "## A record" in text and first["id"] in text
    card.write_card(extract, m)  # as the build wrote it


def _expected(rec):
    """A record as a trainer should see it: the system prompt, then every turn."""
    system = "\n".join(m["content"] for m in rec["messages"] if m["role"] == "system")
    role = {"user": "user", "assistant": "assistant", "tool": "observation"}
    return {"system": system, "messages": [{"role": role[m["role"]], "content": m["content"]}
                                           for m in rec["messages"] if m["role"] != "system"]}


@pytest.mark.parametrize("fmt", ["sharegpt", "alpaca", "openai", "llamafactory"])
def test_exports_read_exactly_in_llamafactory(build, tmp_path, fmt):
    folder = str(build / "stages" / "02-dedup")
    recs = list(shards.iter_records(folder))
    multi = sum(sum(m["role"] == "user" for m in r["messages"]) > 1 for r in recs)
    system = sum(r["messages"][0]["role"] == "system" for r in recs)
    assert multi >= 5 and system >= 2  # the check below means something
    if fmt == "llamafactory":
        out, dset_dir, name = tmp_path / "lf", tmp_path / "lf", "lf"
    else:
        out, dset_dir, name = tmp_path / f"demo.{fmt}.jsonl", tmp_path, f"demo.{fmt}"
    assert main(["export", folder, "--format", fmt, "--out", str(out)]) == 0
    info = json.load(open(dset_dir / "dataset_info.json"))
    assert list(info) == [name]
    got = lf.read(str(dset_dir), name)
    assert got == [_expected(r) for r in recs]  # every turn, role and system prompt; nothing dropped
    if fmt in ("sharegpt", "llamafactory"):
        assert info[name] == {"file_name": f"{name}.jsonl", "formatting": "sharegpt"}  # the minimal entry
    if fmt == "alpaca":  # why the entry names history and system: the minimal one loses them
        minimal = lf.read(str(dset_dir), name, {"file_name": f"{name}.jsonl"})
        intact = [r["messages"][0]["role"] != "system" and sum(m["role"] == "user" for m in r["messages"]) == 1
                  for r in recs]
        assert [g == _expected(r) for g, r in zip(minimal, recs)] == intact and not all(intact)


def test_exports_share_one_dataset_dir(build, tmp_path):
    folder = str(build / "stages" / "02-dedup")
    for fmt in ("sharegpt", "alpaca"):
        assert main(["export", folder, "--format", fmt, "--out", str(tmp_path / f"d.{fmt}.jsonl")]) == 0
    info = json.load(open(tmp_path / "dataset_info.json"))
    assert sorted(info) == ["d.alpaca", "d.sharegpt"]
    (tmp_path / "dataset_info.json").write_text("{broken")
    assert main(["export", folder, "--format", "openai", "--out", str(tmp_path / "d.openai.jsonl")]) == 2


def test_llamafactory_reads_arrow_parts_directly(build):
    """The documented entry for data/*.arrow: LLaMA-Factory reads the shard parts as they are."""
    folder = build / "stages" / "02-dedup"
    from pipeline.io.writers import dataset_info_entry

    got = lf.read(str(folder), "x", dataset_info_entry("arrow", "data"))
    key = lambda r: json.dumps(r, ensure_ascii=False, sort_keys=True)  # noqa: E731 (os.listdir order)
    assert sorted(map(key, got)) == sorted(key(_expected(r)) for r in shards.iter_records(str(folder)))


def test_parquet_export_equals_the_shards(build, tmp_path):
    folder = str(build / "stages" / "02-dedup")
    want = pa.concat_tables([shards.read_table(p) for p in shards.data_files(folder)])
    assert main(["export", folder, "--format", "parquet", "--out", str(tmp_path / "all.parquet")]) == 0
    one = pq.read_table(tmp_path / "all.parquet")
    assert one.schema == shards.SCHEMA and one.equals(want)
    assert pq.ParquetFile(tmp_path / "all.parquet").metadata.row_group(0).column(0).compression == "ZSTD"
    assert main(["export", folder, "--format", "parquet", "--out", str(tmp_path / "parts")]) == 0
    parts = sorted(os.listdir(tmp_path / "parts"))
    assert parts == [os.path.basename(p)[:-6] + ".parquet" for p in shards.data_files(folder)]
    assert pq.read_table(tmp_path / "parts").equals(want)
    (tmp_path / "stale").mkdir()
    (tmp_path / "stale" / "old-00009.parquet").write_bytes(b"x")
    assert main(["export", folder, "--format", "parquet", "--out", str(tmp_path / "stale")]) == 2  # never mixed in


def test_build_parquet_option(build, tmp_path):
    folders = sorted(glob.glob(str(build / "stages" / "*"))) + card.final_folders(str(build / "final"))
    assert len(folders) == 2 + 1 + 3
    for f in folders:
        want = pa.concat_tables([shards.read_table(p) for p in shards.data_files(f)])
        got = pq.read_table(os.path.join(f, "parquet"))
        assert got.equals(want), f
        assert shards.is_owner_only(os.path.join(f, "parquet")) == shards.is_owner_only(f)
    # a copy killed half-way leaves a temp file; the next build removes it and keeps the parts
    pdir = build / "stages" / "02-dedup" / "parquet"
    (pdir / ".part-00000.parquet.99.tmp").write_bytes(b"half")
    before = {p: os.path.getmtime(pdir / p) for p in os.listdir(pdir)}
    card.write_parquet(str(build / "stages" / "02-dedup"))
    assert {p: os.path.getmtime(pdir / p) for p in os.listdir(pdir)} == {
        p: t for p, t in before.items() if not p.endswith(".tmp")}
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"parquet": "yes", "inputs": [{"path": SAMPLES + "/openai"}],
                                   "stages": ["extract"]}))
    assert main(["build", str(cfg), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert not os.path.exists(tmp_path / "o" / "stages")


def test_shipped_template_renders_plain_chatml(build):
    """The {% generation %} markers change no text, so turnforge's own label mask is unchanged."""
    from pipeline.templates import CHATML, CHATML_GENERATION
    from trainer.pack import Encoder
    from trainer.tiny import load_tokenizer

    tok = load_tokenizer()
    assert tok.chat_template == CHATML_GENERATION
    recs = list(shards.iter_records(str(build / "stages" / "02-dedup")))[:20]
    shipped, plain = Encoder(tok, "auto"), Encoder(tok, CHATML)
    for r in recs:
        msgs = [{"role": m["role"], "content": m["content"]} for m in r["messages"]]
        assert tok.apply_chat_template(msgs, tokenize=False) == tok.apply_chat_template(
            msgs, tokenize=False, chat_template=CHATML)
    a, b = (e.encode_many([r["messages"] for r in recs]) for e in (shipped, plain))
    assert len(a) == len(recs) and all(isinstance(x, dict) for x in a)
    for x, y in zip(a, b):
        assert list(x["input_ids"]) == list(y["input_ids"]) and list(x["labels"]) == list(y["labels"])
        assert 0 < sum(v != -100 for v in x["labels"]) < len(x["labels"])


def test_trl_assistant_only_loss_on_a_shard_folder(build, tmp_path):
    """TRL's SFTTrainer, assistant-only loss with packing, on a shard folder as load_dataset
    reads it: the shipped tokenizer's template carries {% generation %} markers, and the extra
    message keys and meta need no conversion."""
    import trl  # in the dev extra
    import torch
    from datasets import load_dataset
    from trl import SFTConfig, SFTTrainer

    from trainer.tiny import load_tokenizer, tiny_model

    tok = load_tokenizer()
    ds = load_dataset(str(build / "final"))["train"]
    model = tiny_model(len(tok), seed=0)
    args = SFTConfig(output_dir=str(tmp_path / "trl"), use_cpu=True, bf16=False, fp16=False, packing=True,
                     max_length=256, assistant_only_loss=True, per_device_train_batch_size=2, max_steps=3,
                     learning_rate=1e-3, report_to="none", save_strategy="no", logging_steps=1,
                     disable_tqdm=True, dataloader_num_workers=0, activation_checkpointing=False)
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
    row = trainer.train_dataset[0]  # TRL folds the assistant mask from the markers into labels
    sup = [t for t, lab in zip(row["input_ids"], row["labels"]) if lab != -100]
    assert 0 < len(sup) < len(row["input_ids"])  # only assistant tokens are supervised
    text = tok.decode(sup)
    assert "<|im_start|>" not in text and "<|im_end|>" in text  # replies and their end, no role headers
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert trainer.state.global_step == 3 and len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
    assert trl.__version__


def test_rebuilt_folder_of_the_same_name_is_not_read_from_the_cache(tmp_path):
    """`datasets` caches a folder by its base name and card header: two builds' 01-extract
    must each load their own rows."""
    from datasets import load_dataset

    from conftest import write_jsonl

    rows = []
    for k in range(2):
        inp = write_jsonl(tmp_path / f"in{k}.jsonl", [{"messages": [{"role": "user", "content": f"q{k} {i}"},
                                                                    {"role": "assistant", "content": f"a {i}"}]}
                                                      for i in range(3 + k)])
        out = str(tmp_path / f"b{k}" / "01-extract")
        assert main(["stage", "extract", "--in", inp, "--out", out, "--set", "source=s", "--quiet"]) == 0
        rows.append((load_dataset(out)["train"]["id"], _ids(out)))
    assert rows[0][0] == rows[0][1] and rows[1][0] == rows[1][1] and rows[0][0] != rows[1][0]
