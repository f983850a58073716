"""spaCy's English NER, fine-tuned for names in chat turns (docs/stages/pii.md#the-english-name-model).

``en_core_web_sm`` learnt its PERSON entities from news and the web; in chat turns it misses
names in frames it has not seen ("Maybe it's under Kónya", "cc Jerković") and tags street names
as people. Its ``ner`` pipe is fine-tuned here on sentences made from templates with faker's
names, companies, places and addresses of many locales filled in:

- the even-numbered templates of presidio-research's ``synth_dataset_v2`` (MIT; the odd ones
  are the held-out half that ``bench/pii_bench.py`` scores, never read here) and the values of
  their gold spans;
- ``models/en_name_frames.txt``: chat, mail and support frames written for this project;
- rehearsal: the stock model's own entities on real English chat turns (chitchat-dataset, MIT),
  so that what it knew stays.

Only the ``ner`` pipe's weights are shipped (``models/en_ner.bin``, ``en_ner.json``); they load
into the stock ``en_core_web_sm`` 3.8.0 and into nothing else (another model keeps its own NER,
with a warning).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

# the weights and their loading live with their user (en_names), so that this module, which
# trains them, is the only one of the two that imports the other
from pipeline.pii.en_names import FINE_TUNED_NER as WEIGHTS
from pipeline.pii.en_names import NER_BASE as BASE
from pipeline.pii.en_names import default_spacy_model, transliterate
from pipeline.pii.en_names import load_fine_tuned_ner as load_into  # noqa: F401  (the trainer's name for it)

FRAMES = WEIGHTS.parent / "en_name_frames.txt"
_SLOT = re.compile(r"\{\{(\w+)\}\}")

# presidio-research entity -> spaCy label taught; the rest of a template's entities are taught
# as no entity (a street name is no person), except dates, which keep their label
LABELS = {"PERSON": "PERSON", "ORGANIZATION": "ORG", "GPE": "GPE", "NRP": "NORP", "DATE_TIME": "DATE"}
# Latin-script faker locales whose names fill the PERSON slots (Cyrillic and Greek ones are
# transliterated, as en_names reads them)
LOCALES = ("en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "pl_PL", "cs_CZ", "hu_HU", "fi_FI", "sv_SE",
           "da_DK", "no_NO", "nl_NL", "pt_BR", "pt_PT", "ro_RO", "hr_HR", "sk_SK", "sl_SI", "tr_TR", "et_EE",
           "lv_LV", "lt_LT", "id_ID", "en_IN", "de_AT", "fr_CA", "es_MX", "ru_RU", "uk_UA", "el_GR", "bg_BG")


# --------------------------------------------------------------------------- training data

def _latin(name: str) -> Optional[str]:
    if all(ord(c) < 0x250 or not c.isalpha() for c in name):
        return name
    t = transliterate(name)
    return t[0] if t else None


class Filler:
    """Values for a template's slots: faker's of many locales, or a gold value of the same kind."""

    def __init__(self, gold: Dict[str, List[str]], seed: int = 0):
        from faker import Faker

        self.rng = random.Random(seed)
        self.gold = gold
        self.fakers = []
        for i, loc in enumerate(LOCALES):
            f = Faker(loc)
            f.seed_instance(seed + i)
            self.fakers.append(f)
        en = self.fakers[0]
        rng = self.rng
        self.make = {
            "PERSON": self.person,
            "ORGANIZATION": en.company,
            "GPE": lambda: rng.choice([en.city(), en.country(), en.state()]),
            "STREET_ADDRESS": lambda: rng.choice(self.fakers[:12]).address(),
            "DATE_TIME": lambda: rng.choice([en.date(), en.year(), en.day_of_week(), en.month_name()]),
            "PHONE_NUMBER": en.phone_number, "CREDIT_CARD": en.credit_card_number, "EMAIL_ADDRESS": en.email,
            "AGE": lambda: str(rng.randint(18, 90)),
            "NRP": lambda: rng.choice(["American", "Spanish", "Russian", "Czech", "Polish", "German", "French",
                                       "Chinese", "Indian", "Brazilian"]),
            "TITLE": lambda: rng.choice(["Dr.", "Mr.", "Mrs.", "Ms.", en.job()]), "ZIP_CODE": en.postcode,
            "DOMAIN_NAME": en.domain_name, "IBAN_CODE": en.iban, "US_SSN": en.ssn, "IP_ADDRESS": en.ipv4,
            "US_DRIVER_LICENSE": lambda: en.bothify("?#######"),
        }

    def person(self) -> str:
        rng = self.rng
        if self.gold.get("PERSON") and rng.random() < 0.25:
            v = rng.choice(self.gold["PERSON"])
        else:
            while True:
                f = rng.choice(self.fakers)
                first, last = _latin(f.first_name()), _latin(f.last_name())
                if first and last:
                    break
            r = rng.random()
            # the shapes of presidio-research's names: one word half the time
            v = (first if r < 0.3 else last if r < 0.5 else f"{first} {last}" if r < 0.88
                 else f"{first} {rng.choice('ABCDEFGHJKLMNPRST')}{rng.choice(['.', ''])} {last}")
        return v.lower() if rng.random() < 0.05 else v

    def value(self, kind: str) -> str:
        if kind != "PERSON" and self.gold.get(kind) and self.rng.random() < 0.5:
            return self.rng.choice(self.gold[kind])
        return self.make[kind]() if kind in self.make else self.rng.choice(self.gold.get(kind) or ["it"])

    def fill(self, template: str) -> Tuple[str, List[Tuple[int, int, str]]]:
        out, ents, pos = [], [], 0
        n = 0
        for m in _SLOT.finditer(template):
            out.append(template[pos:m.start()])
            n += len(out[-1])
            v = self.value(m.group(1))
            ents.append((n, n + len(v), m.group(1)))
            out.append(v)
            n += len(v)
            pos = m.end()
        out.append(template[pos:])
        return "".join(out), ents


def read_templates(evaldata: str) -> Tuple[List[str], Dict[str, List[str]]]:
    """The even-numbered templates of presidio-research's synth_dataset_v2 and their gold values
    by kind, plus the project's own frames."""
    with open(os.path.join(evaldata, "pii_presidio_research", "synth_dataset_v2.json"), encoding="utf-8") as f:
        rows = [r for r in json.load(f) if r["template_id"] % 2 == 0]
    gold: Dict[str, List[str]] = {}
    for r in rows:
        for s in r["spans"]:
            gold.setdefault(s["entity_type"], []).append(s["entity_value"])
    frames = [ln.replace("\\n", "\n") for ln in FRAMES.read_text(encoding="utf-8").splitlines() if ln.strip()]
    return sorted({r["masked"] for r in rows}) + frames, gold


def chat_turns(evaldata: str, n: int, seed: int = 0) -> List[str]:
    """English chat messages (chitchat-dataset) for rehearsal."""
    out = []
    with open(os.path.join(evaldata, "chitchat", "chitchat_messages.jsonl"), encoding="utf-8") as f:
        for line in f:
            out += [m["content"] for m in json.loads(line)["messages"] if len(m.get("content", "")) >= 20]
    random.Random(seed).shuffle(out)
    return out[:n]


def examples(nlp, texts_ents: Sequence[Tuple[str, List[Tuple[int, int, str]]]]):
    from spacy.training import Example, offsets_to_biluo_tags

    out = []
    for text, ents in texts_ents:
        doc = nlp.make_doc(text)
        spans = []
        for a, b, kind in ents:
            if kind in LABELS and (sp := doc.char_span(a, b, label=LABELS[kind], alignment_mode="expand")):
                spans.append((sp.start_char, sp.end_char, sp.label_))
        out.append(Example.from_dict(doc, {"entities": offsets_to_biluo_tags(doc, spans)}))
    return out


def train(evaldata: str, out: Optional[str] = str(WEIGHTS), epochs: int = 5, per_template: int = 40,
          rehearsal: int = 3000, seed: int = 0, model: Optional[str] = None, log=print):
    """Fine-tune en_core_web_sm's ner pipe; write its weights (``ner.to_bytes`` without the
    vocabulary) and a json card next to them. Returns the pipeline."""
    import spacy
    from spacy.training import Example
    from spacy.util import fix_random_seed

    fix_random_seed(seed)
    rng = random.Random(seed)
    nlp = spacy.load(model or default_spacy_model(),
                     disable=["parser", "lemmatizer", "attribute_ruler", "tagger", "senter"])
    templates, gold = read_templates(evaldata)
    filler = Filler(gold, seed)
    data = examples(nlp, [filler.fill(t) for t in templates for _ in range(per_template)])
    # rehearsal: what the stock model finds in real chats is what it should still find
    silver = [Example(nlp.make_doc(d.text), d) for d in nlp.pipe(chat_turns(evaldata, rehearsal, seed))]
    log(f"{len(templates)} templates x {per_template} = {len(data)} sentences, {len(silver)} rehearsal turns")
    opt = nlp.resume_training()
    with nlp.select_pipes(enable="ner"):
        for ep in range(epochs):
            batch = data + silver
            rng.shuffle(batch)
            losses: dict = {}
            for i in range(0, len(batch), 32):
                nlp.update(batch[i:i + 32], sgd=opt, drop=0.2, losses=losses)
            log(f"epoch {ep + 1}/{epochs}: ner loss {float(losses.get('ner', 0)):.0f}")
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_bytes(nlp.get_pipe("ner").to_bytes(exclude=["vocab"]))
        card = {"base": f"en_{BASE[0]} {BASE[1]}", "spacy": spacy.__version__, "epochs": epochs,
                "per_template": per_template, "rehearsal": rehearsal, "seed": seed, "templates": len(templates),
                "source": "presidio-research synth_dataset_v2 (MIT), even template_id only; "
                          "pipeline/pii/models/en_name_frames.txt; chitchat-dataset (MIT) for rehearsal; "
                          "faker values"}
        Path(out).with_suffix(".json").write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")
    return nlp


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m pipeline.pii.en_ner", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="fine-tune en_core_web_sm's ner pipe (docs/stages/pii.md#the-english-name-model)")
    t.add_argument("--evaldata", required=True,
                   help="folder with pii_presidio_research/synth_dataset_v2.json and chitchat/chitchat_messages.jsonl")
    t.add_argument("--out", default=str(WEIGHTS))
    t.add_argument("--epochs", type=int, default=5)
    t.add_argument("--per-template", type=int, default=40)
    t.add_argument("--rehearsal", type=int, default=3000)
    t.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    p = os.path.join(a.evaldata, "pii_presidio_research", "synth_dataset_v2.json")
    if not os.path.isfile(p):
        ap.error(f"--evaldata: {p} not found")
    train(a.evaldata, a.out, a.epochs, a.per_template, a.rehearsal, a.seed)


if __name__ == "__main__":
    main()
