"""Topic-continuity discriminator and the `topic` stage, with the real use-m3 and MiniLM embedders."""
import json
import os

import numpy as np
import pyarrow as pa
import pytest

from conftest import SAMPLES, write_jsonl
from discriminators.topic_continuity import data as D
from discriminators.topic_continuity import features as F
from discriminators.topic_continuity import metrics
from discriminators.topic_continuity.model import DEFAULT_DIR, TopicModel

LABELLED = os.path.join(SAMPLES, "topic_shift", "labelled_turns.jsonl")


@pytest.fixture(scope="module")
def emb():
    from pipeline.embed import get_embedder
    return get_embedder("use-m3+minilm")  # the shipped model's: English messages also through MiniLM


@pytest.fixture(scope="module")
def trained(tmp_path_factory, emb):
    """A model trained on the shipped samples plus chats spliced from them."""
    from discriminators.topic_continuity.model import train
    labelled = D.read(LABELLED)
    chats = [D.Dialogue(d.texts, d.roles, [-1] * len(d)) for d in labelled]
    for k, d in enumerate(chats):
        d.id = f"chat{k}"
    m = train(labelled + D.splice(chats, 40, seed=1), emb, folds=3, log=lambda *_: None)
    out = tmp_path_factory.mktemp("model")
    m.save(str(out))
    return m, str(out)


# ----------------------------------------------------------------------------- readers
def test_tiage_reader(tmp_path):
    p = tmp_path / "anno.json"
    p.write_text(json.dumps({"7": [["hi , do you like cats ?", "-1"], ["i have two .", "0"],
                                   ["what is your job ?", "1"]]}))
    (d,) = D.read(str(p), "tiage")
    assert d.texts[2] == "what is your job ?" and d.labels.tolist() == [-1, 0, 1]
    assert d.roles == ["user", "assistant", "user"] and d.id == "tiage-7"
    p.write_text(json.dumps({"7": [["hi", "-1"], ["bad", "2"]]}))
    with pytest.raises(D.DataError, match="dialogue 7 utterance 1"):
        D.read(str(p), "tiage")


def test_dialseg_reader(tmp_path):
    p = tmp_path / "ref.txt"
    p.write_text("call_id_0\n0 book a taxi\n0 where to ?\n1 what's the weather\n1 sunny\ncall_id_1\n0 hi\n0 hello\n")
    a, b = D.read(str(p), "dialseg")
    assert a.labels.tolist() == [-1, 0, 1, 0] and a.texts[2] == "what's the weather"
    assert b.labels.tolist() == [-1, 0] and b.id == "dialseg-1"
    p.write_text("0 orphan line\n")
    with pytest.raises(D.DataError, match="ref.txt:1"):
        D.read(str(p), "dialseg")


def test_jsonl_reader_and_errors(tmp_path):
    ds = D.read(LABELLED)
    assert len(ds) == 30 and all(d.labels[0] == -1 for d in ds)
    assert sum(int((d.labels == 1).sum()) for d in ds) > 0
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"messages": [{"role": "user", "content": "a"},
                                                             {"role": "assistant", "content": "b", "topic_shift": 5}]}])
    with pytest.raises(D.DataError, match=r"bad.jsonl:1: messages\[1\].topic_shift"):
        D.read(bad, "jsonl")
    woz = write_jsonl(tmp_path / "x_woz.jsonl", [{"id": "w1", "messages": [
        {"role": "user", "content": "我想找餐馆", "derived_shift": 0},
        {"role": "assistant", "content": "推荐全聚德", "derived_shift": 0},
        {"role": "user", "content": "再帮我订一辆出租车", "derived_shift": 1}]}])
    (w,) = D.read(woz)  # format guessed from the name
    assert w.labels.tolist() == [-1, 0, 1]


def test_chats_reader_formats(tmp_path):
    p = write_jsonl(tmp_path / "c.jsonl", [
        {"conversations": [{"from": "human", "value": "q1"}, {"from": "gpt", "value": "a1"}]},
        {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"},
                      {"role": "assistant", "content": "a"}]},
    ])
    a, b = D.read(p, "chats")
    assert a.roles == ["user", "assistant"] and b.texts == ["q", "a"]  # system dropped
    alp = tmp_path / "alp.json"
    alp.write_text(json.dumps([{"instruction": "q2", "input": "", "output": "a2", "history": [["q1", "a1"]]}]))
    (c,) = D.read(str(alp), "chats")
    assert c.texts == ["q1", "a1", "q2", "a2"]


def test_splice_labels_and_determinism():
    chats = [D.Dialogue([f"c{k} m{i}" for i in range(6)], ["user", "assistant"] * 3, [-1] * 6, id=f"c{k}")
             for k in range(10)]
    out = D.splice(chats, 50, seed=3)
    assert [d.texts for d in out] == [d.texts for d in D.splice(chats, 50, seed=3)]
    assert [d.texts for d in out] != [d.texts for d in D.splice(chats, 50, seed=4)]
    for d in out:
        s = d.meta["switch_at"]
        assert d.labels[0] == -1 and d.labels[s] == 1 and (d.labels == 1).sum() == 1
        assert (d.labels[1:s] == 0).all() and (d.labels[s + 1:] == 0).all()
        a, b = d.meta["a"], d.meta["b"]
        assert a != b and all(t.startswith(a + " ") for t in d.texts[:s])
        assert all(t.startswith(b + " ") for t in d.texts[s:])
        assert d.roles[s] == "user" and d.roles[s - 1] == "assistant"  # A left on a reply
    with pytest.raises(D.DataError):
        D.splice(chats[:1], 3)


# ----------------------------------------------------------------------------- features, metrics
def test_features_zh_en(emb):
    ds = [D.Dialogue(["我想学做红烧肉", "先焯水再炒糖色", "糖色怎么炒才不会苦", "对了，Python 怎么生成随机数"],
                     ["user", "assistant", "user", "user"], [-1, 0, 0, 1]),
          D.Dialogue(["How do I bake bread?", "Mix flour, water, yeast and salt.", "How long should the dough rise?"],
                     ["user", "assistant", "user"], [-1, 0, 0])]
    b = F.featurize(ds, emb)
    assert b.X.shape == (5, len(F.FEATURES)) and np.isfinite(b.X).all()
    assert b.dlg.tolist() == [0, 0, 0, 1, 1] and b.msg.tolist() == [1, 2, 3, 1, 2]
    col = {f: b.X[:, i] for i, f in enumerate(F.FEATURES)}
    assert col["switch_cue"].tolist() == [0, 0, 0, 0, 0]  # 对了 is no explicit "change of topic"...
    assert col["soft_cue"].tolist() == [0, 0, 1, 0, 0]    # ...but a soft cue, weighed with the content
    follow = [D.Dialogue(["这部电影讲什么", "讲人类带着地球流浪。", "对了，具体哪年上映的呀？", "换个话题，今天天气如何"],
                         ["user", "assistant", "user", "user"], [-1] * 4)]
    fx = F.featurize(follow, emb).X
    assert fx[:, F.FEATURES.index("cont_cue")].tolist() == [0, 1, 0]  # 对了 + 具体: a follow-up cue
    assert fx[:, F.FEATURES.index("switch_cue")].tolist() == [0, 0, 1]
    assert col["lex_prev"][1] > 0  # 糖色 is shared with the answer before it (char bigrams)
    # the second embedder reads English pairs only: Chinese rows copy the first one's cosines
    assert col["en_cos_prev"][:3].tolist() == col["cos_prev"][:3].tolist()
    assert np.abs(col["en_cos_prev"][3:] - col["cos_prev"][3:]).min() > 1e-4
    from pipeline.embed import get_embedder
    one = F.featurize(ds, get_embedder("use-m3")).X
    np.testing.assert_array_equal(one[:, F.FEATURES.index("en_cos_ctx")], one[:, F.FEATURES.index("cos_ctx")])
    np.testing.assert_allclose(np.delete(one, [F.FEATURES.index("en_" + c) for c in F.COSINES], axis=1),
                               np.delete(b.X, [F.FEATURES.index("en_" + c) for c in F.COSINES], axis=1), atol=1e-6)
    same = [D.Dialogue(["数据库索引怎么建", "数据库索引怎么建"], ["user", "user"], [-1, 0])]
    assert F.featurize(same, emb).X[0, F.FEATURES.index("lex_prev")] == pytest.approx(1.0)
    assert F.featurize(same, emb).X[0, F.FEATURES.index("cos_prev")] == pytest.approx(1.0, abs=1e-5)


def test_metrics():
    y = np.array([0, 1, 0, 1, 0])
    assert metrics.prf(y, y)["f1"] == 1.0 and metrics.prf(y, np.zeros(5))["f1"] == 0.0
    assert metrics.roc_auc(y, y.astype(float)) == 1.0 and metrics.roc_auc(np.zeros(3), np.ones(3)) is None
    thr, f1 = metrics.best_threshold(y, np.array([0.1, 0.9, 0.2, 0.8, 0.3]))
    assert f1 == 1.0 and 0.3 < thr <= 0.8
    ref = [np.array([-1, 0, 0, 1, 0, 0, 1, 0])]
    assert metrics.segmentation(ref, [ref[0] == 1]) == {"pk": 0.0, "windowdiff": 0.0}
    none = metrics.segmentation(ref, [np.zeros(8, bool)])
    # k = round(8 / (2 * 3 segments)) = 1: the 2 windows across a boundary of 7 are missed
    assert none == {"pk": pytest.approx(2 / 7), "windowdiff": pytest.approx(2 / 7)}


# ----------------------------------------------------------------------------- model
def test_save_load_round_trip_gives_identical_scores(trained, emb, tmp_path):
    m, path = trained
    again = TopicModel.load(path)
    ds = D.read(LABELLED)
    a = m.score(ds, emb)
    b = again.score(ds, emb)
    for (c1, s1), (c2, s2) in zip(a, b):
        assert np.array_equal(c1, c2, equal_nan=True) and np.array_equal(s1, s2)
    assert np.isnan(a[0][0][0]) and np.nanmin(a[0][0]) >= 0 and np.nanmax(a[0][0]) <= 1
    with open(os.path.join(path, "model.json")) as f:
        meta = json.load(f)
    assert meta["schema_version"] == 2 and meta["features"] == F.FEATURES
    with np.load(os.path.join(path, "weights.npz"), allow_pickle=False) as z:  # arrays only, no pickle
        assert "mean" in z.files
    meta["schema_version"] = 99
    (tmp_path / "model.json").write_text(json.dumps(meta))
    (tmp_path / "weights.npz").write_bytes(open(os.path.join(path, "weights.npz"), "rb").read())
    with pytest.raises(ValueError, match="schema_version"):
        TopicModel.load(str(tmp_path))


def test_trained_model_separates_switches(trained, emb):
    m, _ = trained
    assert m.info["oof_roc_auc"] > 0.8  # on dialogues each fold never saw


def test_shipped_model_loads_and_scores(emb):
    m = TopicModel.load(DEFAULT_DIR)
    assert m.embedder == "use-m3+minilm" and 0 < m.threshold < 1
    assert m.info["oof_roc_auc"] > 0.9
    ds = D.read(LABELLED)
    scored = m.score(ds, emb)
    y = np.concatenate([d.labels[1:] for d in ds])
    p = np.concatenate([1 - c[1:] for c, _ in scored])
    assert metrics.roc_auc(y == 1, p) > 0.8


# ----------------------------------------------------------------------------- CLI
def test_cli_train_eval_predict(tmp_path, capsys):
    from pipeline.cli import main
    model = str(tmp_path / "m")
    assert main(["discriminator", "train", "--data", f"jsonl:{LABELLED}", "--splice", LABELLED,
                 "--splice-n", "30", "--folds", "3", "--kinds", "logreg", "--out", model]) == 0
    assert os.path.exists(os.path.join(model, "weights.npz"))
    capsys.readouterr()
    out = str(tmp_path / "pred.jsonl")
    assert main(["discriminator", "predict", "--model", model, "--in", LABELLED, "--out", out]) == 0
    rows = [json.loads(x) for x in open(out, encoding="utf-8")]
    assert len(rows) == 30
    for r in rows:
        first, *rest = r["messages"]
        assert first["topic_continuity"] is None and first["topic_switch"] is None
        assert all(0 <= x["topic_continuity"] <= 1 and isinstance(x["topic_switch"], bool) for x in rest)
        thr = _threshold(model)  # (continuity is rounded to 6 digits: skip exact ties)
        assert all(x["topic_switch"] == (1 - x["topic_continuity"] >= thr) for x in rest
                   if abs(1 - x["topic_continuity"] - thr) > 1e-5)
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"messages": [{"role": "user", "content": 3}]}])
    assert main(["discriminator", "predict", "--model", model, "--in", bad, "--out", out]) == 2
    assert "bad.jsonl:1: messages[0].content" in capsys.readouterr().err


def test_cli_eval_prints_scores(tmp_path, capsys, trained):
    from pipeline.cli import main
    _, model = trained
    assert main(["discriminator", "eval", "--model", model, "--data", LABELLED, "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["dialogues"] == 30 and {"precision", "recall", "f1", "roc_auc", "pk", "windowdiff"} <= set(res)
    assert res["roc_auc"] > 0.8 and 0 <= res["pk"] <= 1


def _threshold(model_dir):
    """The operating threshold: the default profile's when the model has profiles."""
    with open(os.path.join(model_dir, "model.json")) as f:
        meta = json.load(f)
    return meta["profiles"][meta["default_profile"]]["threshold"] if meta.get("profiles") else meta["threshold"]


def test_acknowledgements_are_never_switches(emb):
    m = TopicModel.load(DEFAULT_DIR)
    ds = [D.Dialogue(["红烧肉怎么做", "先焯水再炒糖色，小火炖一小时。", "谢谢！", "不客气。"],
                     ["user", "assistant", "user", "assistant"], [-1] * 4),
          D.Dialogue(["How do I sort a list in Python?", "Use sorted(xs) or xs.sort().", "thanks, got it", "You're welcome!"],
                     ["user", "assistant", "user", "assistant"], [-1] * 4),
          D.Dialogue(["红烧肉怎么做", "先焯水再炒糖色。", "谢谢，那 Python 怎么排序？"],
                     ["user", "assistant", "user"], [-1] * 3)]
    (c1, s1), (c2, s2), (c3, _) = m.score(ds, emb)
    assert c1[2] == 1.0 and not s1[2] and c2[2] == 1.0 and not s2[2]
    assert c3[2] < 1.0  # thanks plus a new question is not an acknowledgement
    b = F.featurize(ds, emb)
    assert F.acknowledgement(b.X).tolist() == [False, True, False, False, True, False, False, False]


def test_verdicts_on_the_answer_and_references_to_it_continue(emb):
    """A short verdict on the answer ("回答的不错", "that's wrong") is an acknowledgement in every
    profile; a short message pointing at the answer ("结尾再修饰一下", "your code") continues in
    the assistant profile only (in task dialogues it can open a new domain)."""
    story = ["写一个关于机器人的短故事", "从前有个机器人叫阿铁，它每天在工厂里……最后它学会了画画。"]
    code = ["Write a Python function that reverses a string.", "def rev(s):\n    return s[::-1]"]
    ds = [D.Dialogue(story + ["回答的不错"], ["user", "assistant", "user"], [-1] * 3),
          D.Dialogue(story + ["结尾有点仓促，可以再修饰一下吗？"], ["user", "assistant", "user"], [-1] * 3),
          D.Dialogue(code + ["Is your code safe for unicode?"], ["user", "assistant", "user"], [-1] * 3),
          D.Dialogue(story + ["很好，帮我写一首关于大海的诗"], ["user", "assistant", "user"], [-1] * 3),
          D.Dialogue(code + ["That's wrong"], ["user", "assistant", "user"], [-1] * 3)]
    X = F.featurize(ds, emb).X
    assert F.acknowledgement(X)[1::2].tolist() == [True, False, False, False, True]  # a request is no verdict
    assert F.refers_back(X)[1::2].tolist() == [False, True, True, False, False]
    a, t = TopicModel.load(DEFAULT_DIR, "assistant"), TopicModel.load(DEFAULT_DIR, "task")
    assert "refers_back" in a.rules and "refers_back" not in t.rules
    pa_, pt = a.p_switch(X)[1::2], t.p_switch(X)[1::2]
    assert pa_[0] == pa_[1] == pa_[2] == pa_[4] == 0.0 and pt[0] == pt[4] == 0.0
    assert pa_[3] > 0 and pt[1] > 0 and pt[2] > 0  # the new request is scored; task scores the references


# ----------------------------------------------------------------------------- profiles
def _probs(m, ds, emb):
    return np.concatenate([1 - c[1:] for c, _ in m.score(ds, emb)])


def test_shipped_profiles_change_the_threshold_and_only_it_or_the_declared_head(emb):
    raw = TopicModel.load(DEFAULT_DIR, profile=None)
    assert raw.default_profile == "assistant" and {"assistant", "chitchat", "task"} <= set(raw.profiles)
    with open(os.path.join(DEFAULT_DIR, "model.json")) as f:
        meta = json.load(f)
    ds = D.read(LABELLED)
    main = _probs(TopicModel.load(DEFAULT_DIR).use("assistant"), ds, emb)
    thresholds = set()
    for name, pr in meta["profiles"].items():
        m = TopicModel.load(DEFAULT_DIR, profile=name)
        assert m.profile == name and m.threshold == pr["threshold"] and m.active_head == pr["head"]
        assert m.rules == tuple(pr.get("rules", F.DEFAULT_RULES))
        thresholds.add(round(m.threshold, 6))
        p = _probs(m, ds, emb)
        if pr["head"] == raw.profiles["assistant"]["head"]:
            np.testing.assert_array_equal(p, main)  # same head: the same scores, another cut
        else:
            assert pr["head"] in meta["heads"] and not np.allclose(p, main)
        sw = np.concatenate([s[1:] for _, s in m.score(ds, emb)])
        np.testing.assert_array_equal(sw, p >= m.threshold)
    assert len(thresholds) == len(meta["profiles"])  # each profile is its own operating point
    with pytest.raises(KeyError, match="unknown profile 'support'"):
        TopicModel.load(DEFAULT_DIR, profile="support")


def test_training_derives_profiles_from_their_own_rows(emb, tmp_path):
    from discriminators.topic_continuity.model import train
    labelled = D.read(LABELLED)
    chats = [D.Dialogue(d.texts, d.roles, [-1] * len(d), id=f"c{k}") for k, d in enumerate(labelled)]
    chit = [D.Dialogue(d.texts, d.roles, d.labels, id=f"chit{k}", profile="chitchat") for k, d in enumerate(labelled)]
    spliced = D.splice(chats, 40, seed=2)
    m = train(chit + spliced + D.continuations(chats), emb, kinds=("logreg",), folds=3, log=lambda *_: None)
    assert set(m.profiles) == {"assistant", "chitchat"} and m.default_profile == "assistant"
    for name, pr in m.profiles.items():
        assert 0 < pr["threshold"] < 1 and pr["rows"] > 0 and pr["head"] in ("main", name)
    # the assistant profile caps the share of continuing user messages called a switch
    assert m.profiles["assistant"]["oof_false_switch_user"] <= 0.02 + 1e-9
    m.save(str(tmp_path))
    ds = D.read(LABELLED)
    for name in m.profiles:
        np.testing.assert_allclose(_probs(TopicModel.load(str(tmp_path), name), ds, emb), _probs(m.use(name), ds, emb))


def test_a_soft_cue_is_weighed_with_the_content(emb):
    """对了 / by the way open a follow-up as often as a new topic: the content decides."""
    m = TopicModel.load(DEFAULT_DIR)
    film = ["最近有什么好看的科幻电影推荐吗？", "推荐《流浪地球》，讲人类带着地球逃离太阳系，特效和剧情都不错。"]
    en = ["Can you recommend a good science fiction film?",
          "Try Interstellar: astronauts travel through a wormhole to find a new home for humanity."]
    ds = [D.Dialogue(film + ["对了，具体哪年上映的呀？"], ["user", "assistant", "user"], [-1] * 3),
          D.Dialogue(film + ["对了，红烧肉怎么做才不腻？"], ["user", "assistant", "user"], [-1] * 3),
          D.Dialogue(en + ["By the way, who directed Interstellar?"], ["user", "assistant", "user"], [-1] * 3),
          D.Dialogue(en + ["By the way, how do I reset my router password?"], ["user", "assistant", "user"], [-1] * 3)]
    (c1, s1), (c2, s2), (c3, s3), (c4, s4) = m.score(ds, emb)
    assert not s1[2] and s2[2] and c1[2] > c2[2]
    assert not s3[2] and s4[2] and c3[2] > c4[2]


# ----------------------------------------------------------------------------- adaptation
def test_fit_toward_base_pulls_weights(emb):
    from discriminators.topic_continuity.model import _fit_toward
    rng = np.random.default_rng(0)
    H = rng.normal(size=(200, 4))
    y = (H[:, 0] + 0.3 * rng.normal(size=200) > 0).astype(int)
    w0 = np.array([0.0, 0.0, 3.0, 0.0])  # a base that looks at the wrong column
    w_free, _ = _fit_toward(H, y, w0, 1e-3)
    w_held, _ = _fit_toward(H, y, w0, 1e7)
    assert w_free[0] > 1.0 and abs(w_free[2]) < 1.0      # few-label data can overrule the base...
    np.testing.assert_allclose(w_held, w0, atol=1e-2)     # ...or a strong pull keeps it


def test_cli_adapt_round_trip(tmp_path, capsys, trained, emb):
    from pipeline.cli import main
    _, base = trained
    out = str(tmp_path / "adapted")
    assert main(["discriminator", "adapt", "--data", f"jsonl:{LABELLED}", "--base", base, "--folds", "3",
                 "--out", out]) == 0
    assert "adapted from profile" in capsys.readouterr().out
    m = TopicModel.load(out)
    b = TopicModel.load(base)
    assert m.profile == "adapted" and m.active_head == "adapted"
    h, hb = m.head(), b.head()
    # only the last layer is refit: the scaler and any hidden layers are the base's
    np.testing.assert_array_equal(h.mean, hb.mean)
    for (W, bb), (W0, b0) in zip(h.layers[:-1], hb.layers[:-1]):
        np.testing.assert_array_equal(W, W0)
    assert h.layers[-1][0].shape == hb.layers[-1][0].shape
    ds = D.read(LABELLED)
    y = np.concatenate([d.labels[1:] for d in ds])
    assert metrics.roc_auc(y == 1, _probs(m, ds, emb)) > 0.8
    # the output works with --model everywhere: eval and predict at its default profile
    assert main(["discriminator", "eval", "--model", out, "--data", LABELLED, "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["profile"] == "adapted" and res["threshold"] == m.threshold
    pred = str(tmp_path / "p.jsonl")
    assert main(["discriminator", "predict", "--model", out, "--in", LABELLED, "--out", pred]) == 0
    assert main(["discriminator", "eval", "--model", out, "--profile", "nope", "--data", LABELLED]) == 2
    assert "unknown profile 'nope'" in capsys.readouterr().err
