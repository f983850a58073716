"""Tokenise + label mask + truncation + packing."""
import numpy as np
import pytest

from pipeline import runner, shards
from trainer.pack import Encoder, PackConfig, best_fit_decreasing, make_row, pack_folder
from trainer.tiny import load_tokenizer

from conftest import write_jsonl


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


def msgs(*pairs, system=None):
    out = [{"role": "system", "content": system, "turn": 0}] if system else []
    t = 0
    for p in pairs:
        if p[0] == "user" and any(m["role"] == "user" for m in out):
            t += 1
        out.append({"role": p[0], "content": p[1], "turn": t})
    return out


CONV = msgs(("user", "北京今天天气怎么样？"), ("assistant", "我查一下。"), ("tool", '{"temp": 3, "sky": "晴"}'),
            ("assistant", "北京今天晴，3 度。"), ("user", "And tomorrow in Paris?"),
            ("assistant", "Rain, 12 degrees."), system="You are helpful. 你是助手。")


def spans(tok, enc):
    """Decoded supervised runs, with their turn ids."""
    out, cur, ids = [], None, []
    for i, (lab, t) in enumerate(zip(enc["labels"], enc["turn_ids"])):
        if lab != -100:
            assert lab == enc["input_ids"][i]
            if cur is not None and t != cur[0]:
                out.append((cur[0], tok.decode(ids)))
                ids = []
            cur = (t,)
            ids.append(lab)
        elif ids:
            out.append((cur[0], tok.decode(ids)))
            ids, cur = [], None
    if ids:
        out.append((cur[0], tok.decode(ids)))
    return out


def test_only_assistant_content_and_end_of_turn_are_supervised(tok):
    (enc,) = Encoder(tok, "chatml", 4096).encode_many([CONV])
    got = spans(tok, enc)
    assert got == [(0, "我查一下。<|im_end|>"), (0, "北京今天晴，3 度。<|im_end|>"), (1, "Rain, 12 degrees.<|im_end|>")]
    text = tok.decode(enc["input_ids"])
    assert text.startswith("<|im_start|>system\nYou are helpful. 你是助手。<|im_end|>")
    # every unsupervised token carries turn -1, and nothing of system/user/tool is supervised
    assert ((enc["labels"] == -100) == (enc["turn_ids"] == -1)).all()
    sup_text = "".join(s for _, s in got)
    for piece in ("天气", "temp", "Paris", "system", "user", "<|im_start|>"):
        assert piece not in sup_text


def test_truncation_drops_early_turns_keeps_tail(tok):
    long = msgs(*[p for i in range(12) for p in (("user", f"问题 {i} " + "细节" * 20), ("assistant", f"回答 {i} " + "内容" * 20))],
                system="sys")
    full_len = len(Encoder(tok, "chatml", 100_000).encode_many([long])[0]["input_ids"])
    enc = Encoder(tok, "chatml", full_len // 3)
    (r,) = enc.encode_many([long])
    assert r["dropped_turns"] > 0 and len(r["input_ids"]) <= full_len // 3
    text = tok.decode(r["input_ids"])
    assert text.startswith("<|im_start|>system\nsys") and "回答 11" in text and "问题 0 " not in text
    # minimal: keeping one more early turn would not fit
    keep = [m for m in long if m["role"] == "system" or m["turn"] >= r["dropped_turns"] - 1]
    assert len(Encoder(tok, "chatml", 100_000).encode_many([keep])[0]["input_ids"]) > full_len // 3
    assert Encoder(tok, "chatml", 10).encode_many([long]) == ["too_long"]


def test_best_fit_decreasing_places_everything_within_capacity():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 300, size=2000).tolist()
    bins = best_fit_decreasing(lengths, 512)
    assert sorted(i for b in bins for i in b) == list(range(2000))
    assert all(sum(lengths[i] for i in b) <= 512 for b in bins)
    eff = sum(lengths) / (len(bins) * 512)
    assert eff > 0.97
    assert bins == best_fit_decreasing(lengths, 512)


def test_make_row_resets_positions_and_keeps_turns_apart():
    a = {"input_ids": np.array([1, 5, 6, 2], np.int32), "labels": np.array([-100, -100, 6, 2], np.int32),
         "turn_ids": np.array([-1, -1, 0, 0], np.int32), "id": "a", "domain": "code"}
    b = {"input_ids": np.array([1, 7, 8, 9, 2], np.int32), "labels": np.array([1, -100, 8, -100, 2], np.int32),
         "turn_ids": np.array([3, -1, 3, -1, 5], np.int32), "id": "b", "domain": "math"}
    r = make_row([a, b])
    assert r["position_ids"].tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 4]
    assert r["turn_ids"].tolist() == [-1, -1, 0, 0, -1, -1, 1, -1, 2]
    assert r["labels"][4] == -100  # a document's first token is never a target
    assert r["n_turns"] == 3 and r["doc_lens"] == [4, 5] and r["domains"] == ["code", "math"]


def test_pack_folder_accounting_and_efficiency(tmp_path):
    rows = []
    for i in range(120):
        k = 1 + i % 4
        m = []
        for t in range(k):
            m += [{"role": "user", "content": f"第{t}个问题 question {i}"},
                  {"role": "assistant", "content": ("答案 answer " * (1 + (i * 7 + t) % 15)).strip()}]
        rows.append({"id": f"c{i}", "messages": m})
    rows.append({"id": "huge", "messages": [{"role": "user", "content": "q"},
                                           {"role": "assistant", "content": "很长" * 2000}]})
    src = write_jsonl(tmp_path / "c.jsonl", rows)
    runner.run_stage("extract", {"domain": "general"}, src, str(tmp_path / "ext"), progress=False)
    m = pack_folder(str(tmp_path / "ext"), str(tmp_path / "packed"), PackConfig(max_len=256))
    assert m["accounting_ok"] and m["docs_in"] == 121 and m["rejected"] == {"too_long": 1}
    assert m["packing_efficiency"] > 0.9
    rej = list(shards.iter_records(str(tmp_path / "packed"), "rejected"))
    assert [r["record_id"] for r in rej] == ["huge"] and rej[0]["reason"] == "too_long"
    n_sup = n_rows = 0
    for r in shards.iter_records(str(tmp_path / "packed")):
        n_rows += 1
        assert len(r["input_ids"]) <= 256 and sum(r["doc_lens"]) == len(r["input_ids"])
        assert max(r["turn_ids"]) == r["n_turns"] - 1
        n_sup += r["n_supervised"]
    assert n_rows == m["rows"] and n_sup == m["supervised_tokens"]
    # reused when finished with the same settings; refused with other settings
    assert pack_folder(str(tmp_path / "ext"), str(tmp_path / "packed"), PackConfig(max_len=256)) == m
    with pytest.raises(ValueError, match="other settings"):
        pack_folder(str(tmp_path / "ext"), str(tmp_path / "packed"), PackConfig(max_len=128))


def test_packing_off_gives_one_conversation_per_row(tmp_path):
    rows = [{"id": f"c{i}", "messages": [{"role": "user", "content": f"q{i}"},
                                        {"role": "assistant", "content": "a" * (i + 1)}]} for i in range(300)]
    runner.run_stage("extract", {}, write_jsonl(tmp_path / "c.jsonl", rows), str(tmp_path / "ext"), progress=False)
    m = pack_folder(str(tmp_path / "ext"), str(tmp_path / "p"), PackConfig(max_len=512, packing=False))
    assert m["rows"] == 300 and all(len(r["doc_lens"]) == 1 for r in shards.iter_records(str(tmp_path / "p")))
    m2 = pack_folder(str(tmp_path / "ext"), str(tmp_path / "q"), PackConfig(max_len=512))
    assert m2["tokens"] == m["tokens"] and m2["rows"] <= m2["tokens"] // 512 + 2


def test_content_that_also_appears_in_markup_is_located_correctly(tok):
    """'a' occurs inside '<|im_start|>assistant': spans come from placeholders, not search."""
    (enc,) = Encoder(tok, "chatml", 512).encode_many([msgs(("user", "s"), ("assistant", "a"))])
    assert spans(tok, enc) == [(0, "a<|im_end|>")]
