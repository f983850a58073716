"""Fine-tuning spaCy's English NER for names in chat turns (pipeline/pii/en_ner.py): the training
command runs on a small folder shaped like the evaluation data and writes weights that load into
en_core_web_sm and change what it tags. Every sentence here is invented."""
import json

import pytest

from pipeline.pii import en_ner


def _evaldata(root):
    rows = [
        {"full_text": "", "masked": "Please ask {{PERSON}} to sign the lease at {{STREET_ADDRESS}}.", "spans": [],
         "template_id": 0},
        {"full_text": "", "masked": "{{PERSON}} moved to {{GPE}} to work for {{ORGANIZATION}}.", "spans": [],
         "template_id": 2},
        # odd template ids are the held-out half: never read
        {"full_text": "", "masked": "HELD OUT {{PERSON}}", "spans": [], "template_id": 1},
    ]
    (root / "pii_presidio_research").mkdir(parents=True)
    (root / "pii_presidio_research" / "synth_dataset_v2.json").write_text(json.dumps(rows), encoding="utf-8")
    (root / "chitchat").mkdir()
    chats = [{"messages": [{"role": "user", "content": "I spent the weekend in Chicago with my cousins."},
                           {"role": "assistant", "content": "Nice, did you see the lake while you were there?"}]}]
    (root / "chitchat" / "chitchat_messages.jsonl").write_text("\n".join(json.dumps(c) for c in chats), encoding="utf-8")
    return root


def test_templates_are_the_even_half_plus_the_projects_frames(tmp_path):
    templates, gold = en_ner.read_templates(str(_evaldata(tmp_path / "ev")))
    assert not any("HELD OUT" in t for t in templates)
    assert templates[:2] == ["Please ask {{PERSON}} to sign the lease at {{STREET_ADDRESS}}.",
                             "{{PERSON}} moved to {{GPE}} to work for {{ORGANIZATION}}."]
    assert len(templates) > 50 and any("\n" in t for t in templates)  # the frames file, line breaks unescaped


def test_a_filled_template_marks_every_slot():
    f = en_ner.Filler({"PERSON": ["Ana Souza"]}, seed=3)
    for _ in range(20):
        text, ents = f.fill("Dear {{PERSON}}, your parcel for {{STREET_ADDRESS}} left {{GPE}}.")
        assert [k for _, _, k in ents] == ["PERSON", "STREET_ADDRESS", "GPE"]
        assert "{{" not in text and all(text[a:b].strip() for a, b, _ in ents)
        assert text.startswith("Dear ") and text[ents[0][1]:].startswith(", your parcel for ")


def test_training_writes_weights_that_load_and_change_the_ner(tmp_path):
    import spacy

    from pipeline.pii.en_names import default_spacy_model

    ev = _evaldata(tmp_path / "ev")
    out = tmp_path / "w" / "en_ner.bin"
    en_ner.main(["train", "--evaldata", str(ev), "--out", str(out), "--epochs", "1", "--per-template", "1",
                 "--rehearsal", "2"])
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["epochs"] == 1 and "even template_id" in card["source"]
    nlp = spacy.load(default_spacy_model(), disable=["parser", "lemmatizer", "attribute_ruler", "tagger", "senter"])
    before = nlp.get_pipe("ner").to_bytes(exclude=["vocab"])
    assert en_ner.load_into(nlp, out) is True
    assert nlp.get_pipe("ner").to_bytes(exclude=["vocab"]) != before


def test_a_missing_folder_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        en_ner.main(["train", "--evaldata", str(tmp_path / "nope")])
    assert "synth_dataset_v2.json not found" in capsys.readouterr().err
