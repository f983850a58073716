"""`turnforge mix`, a build with a mix entry, and the ready strategy configs."""
import glob
import json
import os

import pytest
import yaml
from conftest import ROOT, SAMPLES
from test_mix import domain_folder

from pipeline import shards
from pipeline.cli import main
from pipeline.config import make_config
from pipeline.stages.mix import MixConfig


def test_cli_mix_dmt(tmp_path, capsys):
    code = domain_folder(tmp_path, "code", 120, 1)
    gen = domain_folder(tmp_path, "general", 200, 2)
    other = domain_folder(tmp_path, "misc", 40, 3)  # given a domain on the command line
    out = tmp_path / "out"
    rc = main(["mix", "--in", code, gen, f"math={other}", "--strategy", "dmt", "--k", "1,1/8", "--out", str(out),
               "--set", "specialist=code,math", "--set", "general=general", "--set", "val_size=4",
               "--set", "leakage=clusters", "--quiet"])
    assert rc == 0
    txt = capsys.readouterr().out
    assert "stage-2/k=1_8" in txt and "validation/math" in txt
    final = out / "final"
    assert sorted(os.listdir(final / "stage-2")) == ["k=1", "k=1_8"]
    assert {r["domain"] for r in shards.iter_records(str(final / "stage-1"))} == {"code", "math"}
    m = json.load(open(final / "mix_manifest.json"))
    assert m["k"] == ["1", "1/8"] and set(m["sources"]) == {"code", "general", "math"}
    assert main(["inspect", str(final / "stage-1"), "-n", "1"]) == 0  # stage folders read like any other


def test_cli_mix_errors(tmp_path, capsys):
    code = domain_folder(tmp_path, "code", 50, 1)
    rc = main(["mix", "--in", code, "--strategy", "dmt", "--out", str(tmp_path / "o"),
               "--set", "specialist=code,maths", "--quiet"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "specialist: unknown domain(s) ['maths']" in err and "['code']" in err
    rc = main(["mix", "--in", code, "--out", str(tmp_path / "o2"), "--set", "tempo=1", "--quiet"])
    assert rc == 2 and "unknown setting(s) ['tempo']" in capsys.readouterr().err


def test_build_with_mix_entry(tmp_path):
    cfg = {"seed": 3,
           "inputs": [{"path": os.path.join(SAMPLES, "sharegpt"), "source": "sharegpt", "domain": "code"},
                      {"path": os.path.join(SAMPLES, "openai"), "source": "openai", "domain": "general"},
                      {"path": os.path.join(SAMPLES, "alpaca"), "source": "alpaca", "domain": "math"}],
           "stages": [{"name": "extract"}, {"name": "dedup", "methods": "exact,minhash"},
                      {"name": "mix", "strategy": "multi_task", "val_size": 2, "long_size": 0}]}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "out"
    assert main(["build", str(path), "--out", str(out), "--set", "mix.alpha=0.0", "--quiet"]) == 0
    top = json.load(open(out / "manifest.json"))
    assert top["last_stage"] == os.path.join("stages", "02-dedup") and top["mix"]["strategy"] == "multi_task"
    m = json.load(open(out / "final" / "mix_manifest.json"))
    assert m["seed"] == 3 and m["config"]["alpha"] == 0.0
    counts = [e["count"] for e in m["stages"][0]["sources"].values()]
    assert max(counts) - min(counts) <= 1  # alpha 0: uniform over the three domains
    assert m["validation"]["realised"] == {"code": 2, "general": 2, "math": 2}
    # rerun: finished stages and the finished mix are reused as they are
    before = open(out / "final" / "mix_manifest.json").read()
    assert main(["build", str(path), "--out", str(out), "--set", "mix.alpha=0.0", "--quiet"]) == 0
    assert open(out / "final" / "mix_manifest.json").read() == before


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "configs", "mix_*.yaml"))))
def test_ready_configs(path):
    cfg = yaml.safe_load(open(path))
    mix = dict(cfg["mix"])
    c = make_config(MixConfig, mix)
    assert os.path.basename(path) == f"mix_{c.strategy}.yaml"
    assert [s["name"] for s in cfg["stages"]][-1] == "dedup"  # mixing runs on de-duplicated data
