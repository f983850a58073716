"""configs/demo.yaml end to end (what `make demo` builds): every stage's accounting holds, the
funnel chains, the topic stage meets its pseudo share, the mix writes training and validation
folders, and no PII is left anywhere a user reads."""
import io
import json
import os

from conftest import ROOT
from pipeline import runner, shards
from pipeline.scan import scan_folder


def test_demo_config_builds_end_to_end(tmp_path):
    out = str(tmp_path / "demo")
    m = runner.build(os.path.join(ROOT, "configs", "demo.yaml"), out, progress=False)
    stages = [f["stage"] for f in m["funnel"]]
    assert stages == ["extract", "quality", "pii", "dedup", "topic"]
    for prev, cur in zip(m["funnel"], m["funnel"][1:]):
        assert cur["in"] == prev["records_out"]  # each stage reads what the one before wrote
    for f in m["funnel"]:
        assert f["in"] == f["kept"] + f["rejected_total"], f
    with open(os.path.join(out, "stages", "05-topic", "manifest.json")) as fh:
        topic = json.load(fh)["topic"]
    n_out = m["funnel"][-1]["records_out"]
    # no conversation is lost: pseudo ones beyond the share kept whole are split, never dropped
    assert topic["pseudo_dropped"] == 0 and topic["pseudo_kept"] <= round(0.1 * topic["true_multi_turn"] / 0.9)
    assert topic["true_multi_turn"] + topic["pseudo_kept"] + topic["pseudo_kept_unsplittable"] \
        + topic["split_pieces"] == n_out
    final = os.path.join(out, "final")
    assert shards.is_complete(os.path.join(final, "stage-1"))
    assert os.path.isdir(os.path.join(final, "validation", "general"))
    train_ids = {r["id"] for r in shards.iter_records(os.path.join(final, "stage-1"))}
    val_ids = {r["id"] for r in shards.iter_records(os.path.join(final, "validation", "general"))}
    assert train_ids and val_ids and not train_ids & val_ids
    with open(os.path.join(out, "stages", "02-quality", "manifest.json")) as fh:
        q = json.load(fh)["quality"]
    assert q["kept"] == m["funnel"][1]["kept"] and sum(q["rejected"].values()) == m["funnel"][1]["rejected_total"]
    with open(os.path.join(out, "report.html"), encoding="utf-8") as fh:
        html = fh.read()
    assert "<h2>Quality</h2>" in html and "<h2>Topic continuity</h2>" in html
    for folder in (os.path.join(out, "stages", "05-topic"), os.path.join(final, "stage-1")):
        assert scan_folder(folder, io.StringIO()) == 0, folder
