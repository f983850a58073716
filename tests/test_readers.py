import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.io import readers
from pipeline.io.readers import detect_format, iter_items, parse_timestamp, sniff_format


def test_detect_format_per_shape():
    assert detect_format({"messages": []}) == "openai"
    assert detect_format({"conversations": []}) == "sharegpt"
    assert detect_format({"instruction": "q", "input": "", "output": "a"}) == "alpaca"
    assert detect_format({"sid": 1, "speaker": "agent", "msg": "hi"}) == "events"
    assert detect_format({"foo": 1}) is None
    # config mapping wins over aliases
    assert detect_format({"a": 1, "b": "x"}, {"role": "a", "text": "b"}) == "events"


def test_jsonl_reports_bad_lines_with_line_numbers(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_bytes(b'{"messages": []}\n\n{"broken\n{"text": "caf\xff"}\n[1, 2]\n')
    items = list(iter_items(str(p)))
    assert [i.line for i in items] == [1, 3, 4, 5]
    assert items[0].obj == {"messages": []}
    assert items[1].error == "malformed_json" and items[1].raw == '{"broken'
    assert items[2].error == "invalid_utf8" and "\\xff" in items[2].raw
    assert items[3].obj == [1, 2]


def test_json_array_streams_elements_across_small_chunks(tmp_path, monkeypatch):
    rows = [{"conversations": [{"from": "human", "value": "问题" * (i + 1)}, {"from": "gpt", "value": "答" * 50}]}
            for i in range(40)]
    p = tmp_path / "a.json"
    p.write_text(json.dumps(rows, ensure_ascii=False, indent=2), encoding="utf-8")
    orig = readers._iter_json_array
    monkeypatch.setattr(readers, "_iter_json_array", lambda path: orig(path, chunk=64))
    items = list(iter_items(str(p)))
    assert [i.obj for i in items] == rows
    # line numbers point at the element's first line
    text = p.read_text(encoding="utf-8").splitlines()
    assert text[items[5].line - 1].strip() == "{"
    assert all(a.line < b.line for a, b in zip(items, items[1:]))


def test_json_array_with_broken_element_reports_rest(tmp_path):
    p = tmp_path / "b.json"
    p.write_text('[{"instruction": "a", "output": "b"}, {"instruction": oops}]', encoding="utf-8")
    items = list(iter_items(str(p)))
    assert items[0].obj["instruction"] == "a"
    assert items[1].error == "malformed_json" and "oops" in items[1].raw


def test_csv_multiline_quoted_fields_and_bad_bytes(tmp_path):
    p = tmp_path / "e.csv"
    p.write_bytes(b'sid,uid,ts,speaker,msg\n1,u,100,customer,"hello, world\nsecond line"\n'
                  b'1,u,101,agent,ok\n1,u,102,agent,\xffbad\n')
    items = list(iter_items(str(p)))
    assert items[0].obj["msg"] == "hello, world\nsecond line" and items[0].line == 2
    assert items[1].line == 4 and items[1].obj["speaker"] == "agent"
    assert items[2].error == "invalid_utf8" and items[2].line == 5
    assert sniff_format(str(p)) == "events"


def test_parquet_rows(tmp_path):
    p = tmp_path / "e.parquet"
    pq.write_table(pa.table({"session_id": ["a", "a"], "role": ["user", "bot"], "text": ["x", "y"],
                             "timestamp": [1, 2]}), p)
    items = list(iter_items(str(p)))
    assert [i.obj["text"] for i in items] == ["x", "y"] and [i.line for i in items] == [1, 2]
    assert sniff_format(str(p)) == "events"


def test_timestamps():
    assert parse_timestamp("2026-11-01T09:00:00+08:00") == parse_timestamp("2026-11-01T01:00:00Z")
    assert parse_timestamp(1_700_000_000_000) == 1_700_000_000.0  # milliseconds
    assert parse_timestamp("1700000000") == 1_700_000_000.0
    assert parse_timestamp(None) is None
    with pytest.raises(ValueError):
        parse_timestamp("yesterday")
    with pytest.raises(ValueError):
        parse_timestamp(True)


def test_expand_paths_sorted_and_clear_errors(tmp_path):
    (tmp_path / "b.jsonl").write_text("{}\n")
    (tmp_path / "a.json").write_text("[]")
    (tmp_path / "notes.txt").write_text("x")
    assert [p.split("/")[-1] for p in readers.expand_paths(str(tmp_path))] == ["a.json", "b.jsonl"]
    with pytest.raises(FileNotFoundError, match="no such file"):
        readers.expand_paths(str(tmp_path / "missing.jsonl"))


@pytest.mark.parametrize("name,body", [
    ("bom.jsonl", '{"messages": []}\n{"messages": [1]}\n'),
    ("bom_lines.json", '{"messages": []}\n{"messages": [1]}\n'),
    ("bom_array.json", '[{"messages": []}, {"messages": [1]}]'),
    ("bom.csv", "sid,speaker,msg\n1,customer,hi\n1,agent,hello\n"),
])
def test_a_byte_order_mark_costs_no_record(tmp_path, name, body):
    plain, marked = tmp_path / "plain", tmp_path / "marked"
    plain.mkdir(), marked.mkdir()
    (plain / name).write_text(body, encoding="utf-8")
    (marked / name).write_text(body, encoding="utf-8-sig")  # what Notepad and Excel save
    want = [(i.line, i.obj, i.error) for i in iter_items(str(plain / name))]
    got = [(i.line, i.obj, i.error) for i in iter_items(str(marked / name))]
    assert got == want and all(e is None for _, _, e in got)


def test_malformed_json_detail_keeps_the_whole_decoder_message(tmp_path):
    p = tmp_path / "ctl.jsonl"
    bad = '{"text": "a\tb"}'  # a raw tab inside a string: "Invalid control character at"
    p.write_text(bad + "\n", encoding="utf-8")
    with pytest.raises(json.JSONDecodeError) as e:
        json.loads(bad)
    (item,) = iter_items(str(p))
    assert item.error == "malformed_json"
    assert e.value.msg in item.detail and f"column {e.value.colno}" in item.detail
    assert not item.detail.rstrip().endswith(" at")


def test_units_keep_their_input_text(tmp_path):
    """A JSONL line (without its line break) and a JSON array element keep the text the file
    holds, so a rejected unit is archived as written."""
    line = '{"messages" :[],  "id":"caf\\u00e9"}'
    p = tmp_path / "x.jsonl"
    p.write_bytes((line + "\r\n").encode())
    assert [i.raw for i in iter_items(str(p))] == [line]
    a = tmp_path / "a.json"
    a.write_text('[ {"instruction": "a",\n  "output": "b"} ,{"x":1}]', encoding="utf-8")
    assert [i.raw for i in iter_items(str(a))] == ['{"instruction": "a",\n  "output": "b"}', '{"x":1}']


def test_probe_tells_why_a_whole_file_cannot_be_read(tmp_path):
    def probe(name, data, fmt="auto", fields=None):
        p = tmp_path / name
        p.write_bytes(data)
        return readers.probe_file(str(p), fmt, fields)

    ok = b'{"messages": []}\n'
    assert probe("stray.jsonl", ok + b'{"text": "caf\xff"}\n') == ("openai", None)  # one bad line, not binary
    _, gbk = probe("gbk.jsonl", '{"text": "你好，请问订单什么时候到"}\n'.encode("gbk") * 3)
    assert gbk.reason == "binary_file" and "UTF-8" in gbk.detail
    assert probe("hdr.csv", b"sid,speaker,msg\n")[1].reason == "empty_file"
    assert probe("blank.jsonl", b"\n  \n")[1].reason == "empty_file"
    _, mapped = probe("m.csv", b"sid,who,said\n1,user,hi\n", fields={"role": "speaker", "text": "said"})
    assert mapped.reason == "missing_columns" and "fields.role names 'speaker'" in mapped.detail
    assert "'who'" in mapped.detail and "text" not in mapped.detail.split("needs")[1].split(":")[0]
    assert probe("forced.jsonl", ok, fmt="sharegpt") == ("sharegpt", None)
    _, odd = probe("odd.jsonl", b'{"title": "x"}\n')
    assert odd.reason == "unknown_format" and "cannot detect the input format" in odd.detail
    with pytest.raises(ValueError, match="m.csv: missing_columns"):
        sniff_format(str(tmp_path / "m.csv"))
