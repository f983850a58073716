"""English and European street addresses (pipeline/pii/en_addresses.py): the forms found, what is
left alone (a town, a date, a numbered heading, chat about numbers), format-keeping pseudonyms and
the stage end to end. Every address here is invented."""
import re

from conftest import extract_then_pii
from pipeline.pii.anonymize import Pseudonymizer
from pipeline.pii.en_addresses import find_en_addresses


def found(text):
    return [text[s:e] for s, e, _ in find_en_addresses(text)]


def test_street_forms_of_several_countries():
    cases = {
        "Ship it to 42 Oak Street, Springfield, IL 62704 please.": "42 Oak Street, Springfield, IL 62704",
        "Our flat is at 56 rue de la Paix, 75002 Paris.": "56 rue de la Paix, 75002 Paris",
        "Timo lives on Via dei Serpenti 17 in the old town.": "Via dei Serpenti 17",
        "Lieferadresse: Lindenstraße 12a, 10115 Berlin": "Lindenstraße 12a, 10115 Berlin",
        "Please send it to Hämeentie 35 B, Helsinki.": "Hämeentie 35",
        "Meet me at Váci utca 19. tomorrow": "Váci utca 19.",
        "The parcel went to ul. Długa 7, 00-238 Warszawa": "ul. Długa 7, 00-238 Warszawa",
        "Mail: P.O. Box 4412, Carson City, NV 89701": "P.O. Box 4412, Carson City, NV 89701",
        "Send to PSC 1234, Box 5678\nAPO AE 09123 thanks": "PSC 1234, Box 5678\nAPO AE 09123",
    }
    for text, want in cases.items():
        assert found(text) == [want], (text, found(text))


def test_an_address_block_is_one_finding_with_its_unit_town_and_postcode():
    text = "Ines Ruiz\n\n20789 Kallaste 46\n Suite 501\n Rakvere\n\n Estonia 44310\nMobile: 555 0199"
    assert found(text) == ["20789 Kallaste 46\n Suite 501\n Rakvere\n\n Estonia 44310"]


def test_a_name_and_a_number_need_a_cue_or_a_unit():
    assert found("Her address is Sorrento 1448, next to the bakery.") == ["Sorrento 1448"]
    assert found("the corner of Dalbraut 99 and Grove Lane") == ["the corner of Dalbraut 99 and Grove Lane"]
    for text in ("The Boeing 747 and the Airbus 380 are large.", "She won 3 Grand Slams in 2019.",
                 "Windows 11 came out on October 5, 2021.", "Read Chapter 3 Review Questions first.",
                 "We moved to Texas 3 years ago.", "Katie 1 - 0 Hattie", "Apple sold 10 Million Phones in May 2020."):
        assert found(text) == [], text


def test_a_town_or_country_alone_and_general_chat_stay():
    for text in ("I grew up in Springfield, Illinois.", "Paris 2024 was a great Olympics.",
                 "i moved to utah 6 years ago", "it is like 15 minutes away", "a 2 hour drive from here",
                 "it was 50 feet away down the street"):
        assert found(text) == [], text


def test_a_message_without_capitals_is_read_capitalised():
    assert found("send it to 3911 fourth avenue suite 112, calgary ab t2p 1j9") == [
        "3911 fourth avenue suite 112, calgary ab"]
    assert found("i live at 12 elm street") == ["12 elm street"]


def test_address_pseudonyms_keep_their_parts_and_case():
    p = Pseudonymizer("salt")
    for value in ("50668 Kiannonkatu 98 Apt. 105, ISHAM, United Kingdom", "56 rue La Boétie",
                  "3911 fourth avenue suite 112 calgary"):
        fake = p.replace("LOCATION", value, "c1")
        assert fake == p.replace("LOCATION", value, "c1") and fake != value
        assert len(re.findall(r"[0-9]", fake)) == len(re.findall(r"[0-9]", value))
    fake = p.replace("LOCATION", "50668 Kiannonkatu 98 Apt. 105, ISHAM, United Kingdom", "c1")
    assert re.fullmatch(r"[0-9]{5} \S+katu [0-9]{2} Apt\. [0-9]{3}, [A-Z'-]+, .+", fake), fake
    assert "Kiannon" not in fake and "ISHAM" not in fake and "United Kingdom" not in fake
    fake = p.replace("LOCATION", "56 rue La Boétie", "c1")
    assert fake.startswith(fake[:2]) and " rue La " in fake and "Boétie" not in fake
    fake = p.replace("LOCATION", "3911 fourth avenue suite 112 calgary", "c1")
    assert " avenue suite " in fake and "calgary" not in fake and fake == fake.lower()


def test_planted_european_addresses_do_not_survive_the_stage(tmp_path):
    planted = ["Lindenstraße 12a, 10115 Berlin", "56 rue de la Paix, 75002 Paris", "P.O. Box 4412"]
    convs = [{"id": "a1", "messages": [
        {"role": "user", "content": f"Please ship my order to {planted[0]}, or to my office at {planted[1]}."},
        {"role": "assistant", "content": f"Noted: {planted[0]}. Returns go to {planted[2]}, Carson City, NV 89701."}]}]
    out, m = extract_then_pii(tmp_path, convs)
    assert m["pii"]["residual"] == {}
    text = " ".join(msg["content"] for msg in out[0]["messages"])
    for v in planted + ["Lindenstraße", "rue de la Paix", "4412"]:
        assert v not in text, v
    # the same address gets the same pseudonym in both turns
    first = re.search(r"ship my order to (.+?), or to", out[0]["messages"][0]["content"]).group(1)
    assert first in out[0]["messages"][1]["content"]
