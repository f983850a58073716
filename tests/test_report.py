"""OUT/report.html: self-contained, numbers that match the manifests, no record text."""
import json
import os
import re

import pytest
import yaml
from conftest import SAMPLES

from pipeline import cli, runner, shards
from pipeline.report import CHAR_EDGES, TURN_EDGES, folder_stats, write_report

# Distinctive text of data_samples/openai/openai_chat.jsonl, and an e-mail address the pii
# stage replaces (data_samples/logs/chat_events_2026-11-01.jsonl).
SENTENCE = "Use tuples for fixed collections such as coordinates"
EMAIL = "marcus.lee@example.com"


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    cfg = {"seed": 0,
           "inputs": [{"path": os.path.join(SAMPLES, "openai"), "source": "openai", "domain": "general"},
                      {"path": os.path.join(SAMPLES, "logs", "chat_events_2026-11-01.jsonl"), "source": "chatlog",
                       "domain": "general"},
                      {"path": os.path.join(SAMPLES, "sharegpt"), "source": "sharegpt", "domain": "code"}],
           "stages": [{"name": "extract"}, {"name": "pii"}, {"name": "dedup", "methods": "exact,minhash"}],
           "mix": {"strategy": "multi_task", "val_size": 0.1}}
    path = root / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = str(root / "out")
    m = runner.build(str(path), out, progress=False)
    with open(os.path.join(out, "report.html"), encoding="utf-8") as f:
        return out, m, f.read()


def _hist_sums(text, kind):
    """{(folder, role): sum of bin counts} of every histogram table of one kind."""
    sums = {}
    for attrs, body in re.findall(r'<table class="hist" data-hist="%s"([^>]*)>(.*?)</table>' % kind, text):
        folder = re.search(r'data-folder="([^"]*)"', attrs).group(1)
        role = re.search(r'data-role="([^"]*)"', attrs)
        sums[(folder, role and role.group(1))] = sum(int(n) for n in re.findall(r'data-count="(\d+)"', body))
    return sums


def test_build_writes_a_self_contained_report(build):
    out, _, text = build
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert not re.search(r'(src|href)\s*=\s*["\']?\s*(https?:)?//', text, re.I)
    assert not re.search(r"<(link|img|iframe)\b|@import|url\(", text, re.I)
    assert "<script" not in text.replace('<script type="application/json" id="turnforge-report">', "")


def test_report_has_the_funnel_numbers(build):
    out, m, text = build
    table = re.search(r'<table class="funnel">.*?</table>', text, re.S).group(0)
    for k, st in enumerate(m["funnel"], 1):
        row = re.search(rf"<tr><td>{k}</td><td>{os.path.basename(st['folder'])}</td>(.*?)</tr>", table).group(1)
        cells = re.findall(r'<td class="num">([^<]*)</td>', row)
        assert cells[:4] == [f"{st[x]:,}" for x in ("in", "kept", "rejected_total", "records_out")]
        for reason, n in st["rejected"].items():
            assert re.search(rf"<td>{os.path.basename(st['folder'])}</td><td>{reason}</td><td class=\"num\">{n:,}<",
                             text)
    pii = shards.load_manifest(os.path.join(out, "stages", "02-pii"))["pii"]
    for entity, n in pii["found"].items():
        assert re.search(rf"<td>{entity}</td><td class=\"num\">{n:,}</td>", text)
    mix = json.load(open(os.path.join(out, "final", "mix_manifest.json")))
    for name, n in mix["validation"]["realised"].items():
        assert re.search(rf"<td>{name}</td><td class=\"num\">[^<]*</td><td class=\"num\">{n:,}</td>", text)
    assert "stage not run" in text  # no topic or synth stage in this build


def test_histograms_sum_to_the_conversations(build):
    out, m, text = build
    turns = _hist_sums(text, "turns")
    expected = {"stages/03-dedup": m["funnel"][-1]["records_out"],
                **{f"final/{st}": n for st, n in m["mix"]["stages"].items()}}
    assert {f: n for (f, _), n in turns.items()} == expected
    chars = _hist_sums(text, "chars")
    for folder in expected:
        s = folder_stats(os.path.join(out, folder))
        assert sum(n for (f, _), n in chars.items() if f == folder) == s["messages"]


def test_report_holds_no_record_text(build):
    out, _, text = build
    with open(os.path.join(SAMPLES, "openai", "openai_chat.jsonl"), encoding="utf-8") as f:
        assert SENTENCE in f.read()
    with open(os.path.join(SAMPLES, "logs", "chat_events_2026-11-01.jsonl"), encoding="utf-8", errors="replace") as f:
        assert EMAIL in f.read()
    assert SENTENCE not in text and EMAIL not in text
    # nor any message actually written to the output (long enough not to be a label)
    contents = {m["content"] for r in shards.iter_records(os.path.join(out, "stages", "03-dedup"))
                for m in r["messages"] if len(m["content"]) >= 12}
    assert contents and not [c for c in contents if c in text]


def test_folder_stats_match_a_per_message_count(build):
    out, _, _ = build
    folder = os.path.join(out, "stages", "03-dedup")
    recs = list(shards.iter_records(folder))
    s = folder_stats(folder)

    def binned(values, edges):
        counts = [0] * len(edges)
        for v in values:
            counts[max(i for i, e in enumerate(edges) if v >= e)] += 1
        return counts

    assert s["turns"]["counts"] == binned([sum(m["role"] == "user" for m in r["messages"]) for r in recs], TURN_EDGES)
    for role, h in s["chars"].items():
        lengths = [len(m["content"]) for r in recs for m in r["messages"] if m["role"] == role]
        assert h["counts"] == binned(lengths, CHAR_EDGES) and h["sum"] == sum(lengths) and h["max"] == max(lengths)
    assert sum(s["lang"].values()) == len(recs) == s["conversations"]


def test_report_command(build, tmp_path, capsys):
    out, _, text = build
    dest = str(tmp_path / "r.html")
    assert cli.main(["report", out, "--out", dest]) == 0
    assert capsys.readouterr().out.strip() == f"report: {dest}"
    assert open(dest, encoding="utf-8").read() == text  # deterministic: same build, same report


def test_report_of_a_stage_folder(build, tmp_path):
    out, m, _ = build
    text = open(write_report(os.path.join(out, "stages", "01-extract"), str(tmp_path / "s.html"))).read()
    assert f"<td>{m['funnel'][0]['kept']:,}</td>" in text.replace('<td class="num">', "<td>")
    assert set(_hist_sums(text, "turns").values()) == {m["funnel"][0]["records_out"]}


def test_report_without_manifest_exits_2(tmp_path, capsys):
    assert cli.main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "turnforge: error:" in err and "no manifest.json" in err and str(tmp_path) in err
    assert not os.path.exists(tmp_path / "report.html")


def test_synth_section(tmp_path, monkeypatch):
    from fake_openai import FakeAPI

    monkeypatch.setenv("OPENAI_API_KEY", "sk-report-test-0123456789")
    with FakeAPI() as api:
        cfg = {"inputs": [{"path": os.path.join(SAMPLES, "openai"), "source": "openai", "domain": "general"}],
               "stages": [{"name": "extract"},
                          {"name": "synth", "backend": "openai", "base_url": api.base_url, "model": "fake",
                           "max_turns": 2, "cache_dir": str(tmp_path / "cache"), "price_in": 1.0, "price_out": 4.0}]}
        (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
        runner.build(str(tmp_path / "cfg.yaml"), str(tmp_path / "out"), progress=False)
    s = shards.load_manifest(str(tmp_path / "out" / "stages" / "02-synth"))["synth"]
    text = open(tmp_path / "out" / "report.html", encoding="utf-8").read()
    assert s["requests"] > 0 and f"<td>requests</td><td class=\"num\">{s['requests']:,}</td>" in text
    for name, c in s["checks"].items():
        assert re.search(rf"<tr><td>{name}</td><td class=\"num\">{c['run']:,}</td>"
                         rf"<td class=\"num\">{c['failed']:,}</td><td class=\"num\">{100 * c['pass_rate']:.1f}%", text)
    assert "127.0.0.1" not in text and "sk-report" not in text  # no endpoint, no key
    stats = folder_stats(str(tmp_path / "out" / "stages" / "02-synth"))
    assert stats["synthetic_messages"] == s["messages_kept"]


def test_topic_section_and_other_stages_render(build):
    from pipeline.report import collect, render

    out, _, _ = build
    data = collect(out)
    data["funnel"][-1]["sections"] = {"topic": {"switch_rate": 0.2349, "true_multi_turn": 88, "pseudo_multi_turn": 31,
                                                "pseudo_share_before": 0.2605, "pseudo_share_after": 0.102}}
    data["funnel"][0]["other"] = {"quality.mean": 0.75}
    text = render(data)
    for label, v in (("switch rate (switch-role messages)", "0.2349"), ("true multi-turn", "88"),
                     ("pseudo multi-turn", "31"), ("pseudo share before", "0.2605"), ("pseudo share after", "0.102"),
                     ("quality.mean", "0.75")):
        assert f'<td>{label}</td><td class="num">{v}</td>' in text
