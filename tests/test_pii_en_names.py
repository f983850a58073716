"""English person names (pipeline/pii/en_names.py): international names in invented English
sentences are found, capitalised phrases that are no person are left alone, and the pii stage
replaces planted English names. The model and the name lists are the real ones (spaCy's
en_core_web_sm wheel, faker's person providers); every sentence here is invented."""
import re

import pytest

from conftest import extract_then_pii
from pipeline.pii.en_names import EnglishNames, name_gazetteer, transliterate


@pytest.fixture(scope="module")
def en():
    return EnglishNames()


def names(en, text):
    """what the detector marks, longest first where spans overlap (as the analyzer resolves them)"""
    spans = sorted({(s, e) for s, e, _ in en.find_batch([text])[0]}, key=lambda x: (x[0], -(x[1] - x[0])))
    out, end = [], -1
    for s, e in spans:
        if s >= end:
            out.append(text[s:e])
            end = e
    return out


@pytest.mark.parametrize("text,name", [
    ("Please forward the contract to Szabina J. Gelencsér before Friday.", "Szabina J. Gelencsér"),
    ("My colleague Tomasz Wiśniewski will call you back tomorrow.", "Tomasz Wiśniewski"),
    ("The invoice was signed by Olga Yefremova in March.", "Olga Yefremova"),
    ("Can you check whether Aiko Nakamura booked the meeting room?", "Aiko Nakamura"),
    ("I asked Björn Guðmundsdóttir about the delivery.", "Björn Guðmundsdóttir"),
    ("Dear Mr. Okonkwo, thank you for your patience.", "Okonkwo"),
    ("hi, my name is siobhan and I need help with my order", "siobhan"),
    ("please follow up with patricia desrosiers about the refund", "patricia desrosiers"),
    ("What is your maiden name? Kowalczyk", "Kowalczyk"),
    ("Warrane, can I please speak to the manager?", "Warrane"),
    # lower case: a possessive is no part of the name; a record's name line counts whatever the
    # language of the lines around it
    ("we read tomasz wisniewski's report twice", "tomasz wisniewski"),
    ("dorota kowalczyk\nul. kwiatowa 12\nwarszawa", "dorota kowalczyk"),
])
def test_international_names_are_found(en, text, name):
    assert name in names(en, text)


def test_words_of_a_full_name_and_lists_of_names(en):
    text = "The film was directed by Maciej Borkowski and starring Borkowski himself."
    assert names(en, text) == ["Maciej Borkowski", "Borkowski"]
    assert names(en, "The company was founded by Morrison, Rogers and Torres in 1999.") == [
        "Morrison", "Rogers", "Torres"]
    # a list of languages is no list of people
    assert names(en, "She speaks French, Latin and German fluently.") == []


@pytest.mark.parametrize("text", [
    "The London Eye is a giant wheel on the South Bank of the Thames.",
    "Click File and then Save As to keep a copy of the document.",
    "Paris is the capital of France and Tokyo is the capital of Japan.",
    "Cleverbot and Groupon were popular websites, and Javascript runs in every browser.",
    "Albert Einstein explained the photoelectric effect; Shakespeare wrote Hamlet.",
    "Examples:\n- the first step\nRemarks: none",
    "Star Wars and Harry's Bar are not people.",
    "Add Comment, Press Ctrl and Good Manga are interface labels and titles.",
    "O que é uma forma de fazer isso? Uma classe resolve o problema.",
    "However, can we do it? He said yes.",
])
def test_capitalised_phrases_that_are_no_person_stay(en, text):
    assert names(en, text) == []


@pytest.mark.parametrize("text,name", [
    ("Reviewer: Okonkwo", "Okonkwo"),
    ("Approved by: Haapasalo", "Haapasalo"),
    ("Ticket #4411\nAssigned to - Lindqvist\nStatus: open", "Lindqvist"),
    ("Emergency contact: Pellegrini", "Pellegrini"),
    ("Coach Oyelaran wants us at practice early.", "Oyelaran"),
    ("Driver Szymańska is two minutes away.", "Szymańska"),
])
def test_role_labels_and_role_titles_are_cues(en, text, name):
    assert names(en, text) == [name]


@pytest.mark.parametrize("text,found", [
    # a job title before a full name is a cue and no part of the name, even with a first name that is a
    # word (Mark) and a surname no list has
    ("Producer Mark Ronson explained the track.", ["Mark Ronson"]),
    ("CEO Dariusz Wrobel announced the merger on Monday.", ["Dariusz Wrobel"]),
    # the speaker after a quote, and verbs people do after a single word
    ('"It works," explained Oyelaran, pointing at the chart.', ["Oyelaran"]),
    ("Gunnarsson shouted at Perez to stop.", ["Gunnarsson", "Perez"]),
    # a greeting that opens the message, then the name and a comma
    ("Hi Oluwaseun, thanks for the update.", ["Oluwaseun"]),
    # lower case: a list of first names, and a name after "name:" in a form
    ("my kids are emma, noah, olivia and liam", ["emma", "noah", "olivia", "liam"]),
    ("we invited sarah, michael, jessica and tom", ["sarah", "michael", "jessica", "tom"]),
    ("name: dagny lindqvist\naddress: unknown", ["dagny lindqvist"]),
    ("name: john p smith", ["john p smith"]),
])
def test_job_titles_quotes_greetings_and_lower_case_lists(en, text, found):
    assert names(en, text) == found


@pytest.mark.parametrize("text", [
    "i like apples, pears, cherries and plums",
    "we played songs, hansel and gretel and some vivaldi",  # a list needs two first names
    "In the case of Tai Chi, you should practice breathing.",  # Tai is a word, Chi no surname
    "Hi everyone, thanks for joining.",
    "The director said the vote was close.",
])
def test_lists_greetings_and_titles_that_hold_no_name(en, text):
    assert names(en, text) == []


@pytest.mark.parametrize("text", [
    "Mentor: the senior engineer on your team",
    "Owner: Finance",
    "Author: unknown",
])
def test_a_role_label_is_no_name_and_needs_a_name_after_it(en, text):
    assert names(en, text) == []


def test_an_english_name_holds_no_chinese_characters(en):
    # Han characters have no case: they are no capitalised word, no speaker label, and not part of
    # a name spaCy tags next to them
    text = "Sources for the essay\n来源: Wikipedia and the Britannica online edition\n注意: please cite both of them"
    assert names(en, text) == []
    assert names(en, "写一首关于 Mikkel Selko 的说唱歌曲") == ["Mikkel Selko"]


# chat sentences written for this test, none of them a frame of the fine-tuning data
# (pipeline/pii/models/en_name_frames.txt); the stock model tags a person in one of them (Mwangi)
CHAT_FRAMES = [
    "Can Jerković review my pull request?", "Okonkwo will cover my shift on Sunday.", "Lunch with Tremblay tomorrow?",
    "Approved by: Haapasalo", "On call this week: Brennecke", "Host: Thorsdottir", "Escalated to Radovanović.",
    "Say hi to Thorsdottir for me!", "I owe Pellegrini twenty bucks.", "Sorry, Mwangi, I missed your call.",
]


def test_the_fine_tuned_ner_finds_names_in_chat_frames(en):
    stock = EnglishNames(fine_tuned=False)

    def tagged(nlp):
        return sum(any(e.label_ == "PERSON" for e in doc.ents) for doc in nlp.pipe(CHAT_FRAMES))

    assert tagged(stock.nlp) <= 2
    assert tagged(en.nlp) >= 7


def test_fine_tuned_weights_fit_en_core_web_sm_only():
    import spacy

    from pipeline.pii.en_ner import load_into

    nlp = spacy.blank("en")
    nlp.add_pipe("ner")
    with pytest.warns(UserWarning, match="fit en_core_web_sm"):
        assert load_into(nlp) is False


def test_personal_mode_needs_more_than_spacy_for_a_single_word(en):
    text = "I asked Cleverbot about it."
    assert names(en, text) == []
    every = EnglishNames(mode="all")
    spacy_people = [e.text for e in every.nlp(text).ents if e.label_ == "PERSON"]
    # `all` keeps what spaCy tags PERSON, `personal` wants a name list, a cue or a full name
    assert all(p in names(every, text) for p in spacy_people)


def test_gazetteers_are_latin_and_transliterated():
    assert transliterate("Ефремова") == ["Efremova", "Yefremova"]
    assert transliterate("Παπαδόπουλος") == ["Papadopoulos"]
    assert transliterate("佐藤") == []
    first, last = name_gazetteer()
    assert {"Olga", "Aiko", "Siobhan", "Tomasz"} <= first
    assert {"Kuznetsova", "Nakamura", "Papadopoulos"} <= last
    assert all(w.replace("-", "").replace("'", "").isalpha() and w[0].isupper() for w in list(first)[:500])


PLANTED = ["Szabina Gelencsér", "Tomasz Wiśniewski", "Aiko Nakamura", "Okonkwo"]


def test_planted_english_names_do_not_survive_the_stage(tmp_path):
    convs = [{"id": "e2", "messages": [
        {"role": "user", "content": f"Hello, I'm {PLANTED[0]} and my colleague {PLANTED[1]} sent the file."},
        {"role": "assistant", "content": f"Thanks {PLANTED[0]}. I will reply to {PLANTED[1]} and copy {PLANTED[2]}."},
        {"role": "user", "content": f"Also tell Mr. {PLANTED[3]} that Paris is lovely and the London Eye is open."},
        {"role": "assistant", "content": "Will do. Shakespeare would approve."}]}]
    (rec,), m = extract_then_pii(tmp_path, convs)
    text = "\n".join(msg["content"] for msg in rec["messages"])
    for v in PLANTED:
        assert v not in text, v
    # places, landmarks and public figures are content and stay
    for v in ("Paris", "London Eye", "Shakespeare"):
        assert v in text, v
    assert m["pii"]["found"]["PERSON"] >= 6 and m["pii"]["residual"] == {}


def test_names_after_job_titles_and_in_lower_case_lists_do_not_survive_the_stage(tmp_path):
    convs = [{"id": "e3", "messages": [
        {"role": "user", "content": "name: dagny lindqvist. my kids are emma, noah, olivia and liam, can you suggest "
                                    "a party theme?"},
        {"role": "assistant", "content": 'Sure! Producer Mark Ronson once said a theme needs a song. "Go '
                                         'pirates," agreed Oyelaran, my neighbour, when I asked.'}]}]
    (rec,), m = extract_then_pii(tmp_path, convs)
    text = "\n".join(msg["content"] for msg in rec["messages"])
    for v in ("dagny", "lindqvist", "emma", "noah", "olivia", "liam", "Mark", "Ronson", "Oyelaran"):
        assert not re.search(r"\b" + v + r"\b", text), v  # a pseudonym may hold it (william)
    # the job title and the list's shape stay: four lower-case words, two commas and an "and"
    assert "Producer " in text and ", can you suggest" in text
    kids = text.split("my kids are ")[1].split(", can you")[0]
    assert re.fullmatch(r"[a-z]+, [a-z]+, [a-z]+ and [a-z]+", kids), kids
    assert m["pii"]["residual"] == {}
