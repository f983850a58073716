"""Street addresses written in Latin (and Greek) letters: English, European and military forms.

An address is found when it reaches street level (docs/stages/pii.md#names-and-addresses):

- a house number, a street name and a street type after it: ``42 Oak Street``, ``3911 Fourth Ave``;
- a street type before the name, with a number before or after: ``56 rue La Boétie``,
  ``Via dei Fiorentini 17``, ``ul. Miła 53``, ``Rua Diadema 1903``;
- a street type joined to the name or written after it, then a number: ``Kiannonkatu 98``,
  ``Friedrichstraße 12a``, ``Hansinegata 120``, ``Király u. 15.``, ``Stensås terrasse 38``;
- boxes and military addresses: ``P.O. Box 287``, ``PSC 1437, Box 3833``, ``USNS Bergman``;
- a house number, a name and a number with no type (``20789 Allika 46``), or a name and a number
  (``Dalbraut 99``), only when a unit or a postcode follows or an address cue comes before
  (address:, lives on, send it to, the corner of ...).

Then, one part per comma or line break: units (Apt. 4, Suite 501), boxes, a town, a state code, a
postcode, a country with its postcode. A town or country alone is not personal data and is never
found on its own. A message with no capital letter (case says nothing there) is read with each
word capitalised. Every street holds a number right after a word, or starts with one: matching
starts only there (a text is scanned once for numbers), so long prose costs little.
"""
from __future__ import annotations

import re
from typing import List, Tuple


def _case_class(upper: bool) -> str:
    """Upper- (or lower-) case letters of the Latin, Greek and Cyrillic blocks as a regex class."""
    test = str.isupper if upper else str.islower
    cps = [c for c in list(range(0x41, 0x530)) + list(range(0x1E00, 0x1F00)) if chr(c).isalpha() and test(chr(c))]
    ranges, start, prev = [], cps[0], cps[0]
    for c in cps[1:] + [None]:
        if c is not None and c == prev + 1:
            prev = c
            continue
        ranges.append(re.escape(chr(start)) + ("-" + re.escape(chr(prev)) if prev > start else ""))
        if c is not None:
            start = prev = c
    return "[" + "".join(ranges) + "]"


_UP, _LOW = _case_class(True), _case_class(False)
_LET = r"[^\W\d_]"
_B = r"(?<![\w.])"
_E = r"(?!\w)"
# a word of a street name: Crown, O'Connell, Saint-Denis, Þórunnar, ΣΥΓΓΡΟΥ, McKinley
_NW = "(?:" + _UP + "(?:" + _LOW + "|" + _UP + r")*(?:['’\-]" + _LET + r"+)*\.?)"
# particles inside a street or town name (rue de la Paix, Via dei Fiorentini, Avenue of the Americas)
PARTICLES = """de del della dei degli delle di da das do dos du des la le les el los las van von der den ter ten al y e
of the""".split()
_PART = "(?:" + "|".join(PARTICLES) + ")(?!" + _LET + ")"
_NUM = r"(?:[0-9]{1,6}(?:[A-Za-z](?![A-Za-z]))?(?:[-/][0-9]{1,4}[A-Za-z]?)?)"
_ORD = r"[0-9]{1,3}(?:st|nd|rd|th)"
# Street types after the name: USPS and AS/NZS 4819 street types, less natural features and
# words that end headings after a number ("3 Key Points", "5 Step Approach", "27 European Union").
EN_TYPES = """Street St Avenue Ave Road Rd Lane Ln Drive Boulevard Blvd Court Ct Way Place Pl Terrace Ter Terr
Circle Cir Parkway Pkwy Highway Hwy Square Sq Crescent Cres Close Row Alley Aly Trail Trl Plaza Plz Walk Grove Gardens
Mews Parade Pde Esplanade Promenade Quay Wharf Rise Vale Wynd Heights Hill Meadow Meadows Green Glen Dale Crest Ridge
Path Pike Turnpike Expressway Freeway Motorway Bypass Causeway Route Rte Loop Cove Coves Creek Crossing Landing Manor
Estates Park Harbor Harbour Haven Knoll Ford Forge Ferry Gateway Hollow Orchard Oval Pines Plains Shore Vista Village
Ville Viaduct Isle Canyon Cliffs Flats Mill Mills Valley Brook Bridge Arcade Circuit Fairway Grange Nook Walkway
Yard""".split()
# the types that are no everyday word: the only ones read in a message with no capitals ("a 2 hour drive")
PLAIN_TYPES = """Street St Avenue Ave Road Rd Lane Ln Boulevard Blvd Terrace Highway Hwy Parkway Pkwy Crescent""".split()
# street types before the name (rue de ..., Via ..., ul. ...)
PRE_TYPES = """rue Rue avenue boulevard Boulevard Bd bd chemin Chemin impasse Impasse allée Allée quai Quai Via Viale
Piazza Piazzale Corso Largo Vicolo Contrada Strada Str. Calle Avenida Avda. Avda Av. Av Paseo Pasaje Camino Carretera
Ronda Travesía Carrer Passeig Rua Travessa Praça Alameda Estrada Rodovia Beco Ladeira ul. ul ulica Ulica al. Aleja aleja
os. osiedle pl. plac Bulevardul Calea Piața Šetalište Trg trg Ulitsa ulitsa prospekt Prospekt Λεωφόρος Οδός οδός
Leoforos Odos""".split()
# street types joined to the name (Kiannonkatu, Hansinegata, Strickstrasse, Dalbraut)
JOINED = """straße strasse str. gasse weg allee platz damm ufer steig pfad chaussee gata gatan vägen väg gränd stig
backe torget vej vei veien vegen gade stræti vegur braut katu tie kuja polku raitti väylä tún laan straat plein gracht
kade dreef steeg singel utca útja""".split()
# street types written as a word after the name (Király u. 15, hegyalja út 98, Luite tee 87)
AFTER_TYPES = """tee mnt põik tn út utca u. útja tér körút köz sor fasor sétány terrasse gate gata vei veien vej gade allé
straße strasse weg laan straat ulica ul.""".split()
UNIT_WORDS = "Apt Apartment Suite Ste Unit Flat Floor Fl Bldg Building Rm".split()


def _alt(words) -> str:
    return "|".join(sorted({re.escape(w) for w in words}, key=len, reverse=True))


# words no street name is made of: the sentence around an address, read capitalised when a
# message has no capitals (Drops You Off At 74678 ...)
_FUNC = (r"(?!(?i:i|me|my|you|your|he|him|his|she|her|it|its|we|us|our|they|them|their|this|that|these|those|who|"
         r"what|where|when|which|there|here|is|are|was|were|be|been|am|have|has|had|do|does|did|will|would|can|could|"
         r"should|must|may|might|shall|not|no|at|on|in|into|onto|to|from|for|with|by|about|off|up|over|under|after|"
         r"before|and|or|but|if|so|as|than|then|please|thanks|thank|hi|hello|dear|go|get|got|take|make|send|sent|meet|"
         r"live|lives|lived|enter|drop|drops|call|ship|deliver|return|moved|visit|near|next|just|also|only|very|all|"
         r"any|some|one|ok|okay|yes|the|a|an|down|away|like|about|too)(?!" + _LET + "))")
_WORDS = ("(?:" + _FUNC + _NW + "|" + _ORD + r"|[NSEW]\.?)(?:[ \t]+(?:" + _FUNC + _NW + "|" + _PART + "|" + _ORD
          + ")){0,4}")
_PWORDS = ("(?:" + _FUNC + _NW + "|" + _PART + r")(?:[ \t]+(?:" + _FUNC + _NW + "|" + _PART + "|" + _ORD + ")){0,4}")
_UNIT = r"(?i:(?:" + _alt(UNIT_WORDS) + r")\.?[ \t]*#?[0-9]{1,5}[A-Za-z]?|#[ \t]?[0-9]{1,5})"
_BOX = (r"(?i:(?:P\.?[ \t]?O\.?|PO)[ \t]*Box[ \t]+[0-9]{1,6}|PSC[ \t]+[0-9]{1,5},?[ \t]+Box[ \t]+[0-9]{1,5}"
        r"|Unit[ \t]+[0-9]{1,5},?[ \t]+Box[ \t]+[0-9]{1,5}|(?:USNS|USS|USNV|USCGC)[ \t]+" + _NW + r"(?:[ \t]+" + _NW
        + ")?)")
_MIL = r"(?i:[AFD]PO[ \t]+A[AEP][ \t]+[0-9]{5})"
_AFTER = "(?i:" + _alt(AFTER_TYPES) + ")"
_NUMS = _NUM + r"(?:[ \t]+" + _NUM + ")?"
# a joined type ends a word of three letters or more before it; -tie (Finnish) five, not Katie or Hattie
_JOINED_WORD = ("(?:" + _NW + r"[ \t]+)?(?:" + _LET + "{3,}(?:" + _alt(w for w in JOINED if w != "tie") + ")|" + _LET
                + "{5,}tie)")
_NOT_STREET = (r"(?!(?:Jan|January|Feb|February|Mar|March|Apr|April|May|Jun|June|Jul|July|Aug|August|Sep|Sept|"
               r"September|Oct|October|Nov|November|Dec|December|Mon|Monday|Tue|Tues|Tuesday|Wed|Wednesday|Thu|"
               r"Thur|Thurs|Thursday|Fri|Friday|Sat|Saturday|Sun|Sunday|Windows|Version|Chapter|Section|Page|Step|"
               r"Part|Level|Room|Day|Week|Year|Python|Java|Model|Series|Vol|No|Number|Top|Since|From|Until|After|"
               r"Before|Effective|Accessed)(?!" + _LET + "))")
_CORNER = r"(?P<corner>the corner of )?"


def _num_first(types) -> "re.Pattern":
    """Streets that start with their house number."""
    return re.compile(_B + _CORNER + r"(?=[0-9])" + _NUMS + "(?:"
                      + r"[ \t]+" + _WORDS + r"[ \t]+(?:" + _alt(types) + r"|Dr(?!\.?[ \t]+" + _UP + r"))\.?" + _E  # 42 Oak Street
                      + r"|,?[ \t]+(?:" + _alt(PRE_TYPES) + r")[ \t]+" + _PWORDS + r"(?:,?[ \t]+" + _NUM + ")?"
                      + _E                                                                  # 56 rue La Boétie
                      + r"|[ \t]+" + _JOINED_WORD + r"[ \t]+" + _NUM + _E                  # 27534 Þorsteinsgata 63
                      + r"|[ \t]+" + _PWORDS + r"[ \t]+" + _AFTER + r"[ \t]+" + _NUM + r"\.?" + _E  # 3 Király u. 15.
                      + r"|[ \t]+" + _BOX
                      + r"|(?P<shape>[ \t]+" + _NOT_STREET + _WORDS + r"(?:[ \t]+" + _NUM + _E + ")?))")


_NUM_FIRST, _NUM_FIRST_PLAIN = _num_first(EN_TYPES), _num_first(PLAIN_TYPES)
# streets that start with a word and have their number after it (tried where a word precedes a number)
_WORD_FIRST = re.compile(_B + _CORNER + "(?:"
                         + "(?:" + _alt(PRE_TYPES) + r")[ \t]+" + _PWORDS + r",?[ \t]+" + _NUM + _E  # Via dei Fiorentini 17
                         + "|" + _JOINED_WORD + r"[ \t]+" + _NUM + _E                       # Kiannonkatu 98
                         + "|" + _PWORDS + r"[ \t]+" + _AFTER + r"[ \t]+" + _NUM + r"\.?" + _E   # Király u. 15.
                         + "|(?P<shape>" + _NOT_STREET + _WORDS + r"[ \t]+" + _NUM + _E + "))")  # Dalbraut 99
_BOX_FIRST = re.compile(_B + _BOX)
_BOX_GATE = re.compile(r"(?i:box|usns|uss|usnv|uscgc)")
_ANCHOR = re.compile(_LET + r"[.,]?[ \t][0-9]")  # a word, then a number
_WORD_START = re.compile(r"(?<![\w.])\S")
_BULLET = r"(?:(?:[?•·*>-]{1,3}|[0-9]{1,2}[.)])[ \t]+)?"
_SEP = (r"(?:[ \t]*,[ \t]*\n?[ \t]*" + _BULLET + r",?[ \t]*|[ \t]*\n[ \t]*\n?[ \t]*" + _BULLET + r",?[ \t]*|[ \t]+)")
_POSTCODE = (r"(?:[0-9]{4,6}(?:-[0-9]{4})?|[0-9]{2}-[0-9]{3}|[0-9]{3}[ \t][0-9]{2}"
             r"|[A-Z]{1,2}[0-9][0-9A-Z]?[ \t][0-9][A-Z]{2})")  # US ZIP, 00-950, 114 55, SW1A 2AA
# a town's words: no full stop inside (Berlin. Returns ... is a town and a sentence)
_TW = "(?:" + _UP + "(?:" + _LOW + "|" + _UP + r")*(?:['’\-]" + _LET + r"+)*)"
_TOWN = ("(?:" + _TW + r"(?:[ \t]+(?:" + _TW + "|" + _PART + r"|\(" + _TW + r"(?:[ \t]+" + _TW + r")*\))){0,3})")
# one more part after a comma or line break; not a label that opens the next field (Mobile: ...)
_TAIL = re.compile(_SEP + "(?:(?P<unit>" + _UNIT + "|" + _BOX + "|" + _MIL + ")|(?P<post>" + _POSTCODE + ")(?:[ \t]+" + _TOWN + ")?"
                   + r"|(?P<town>(?:" + _TOWN + r"|nan)(?:,?[ \t]+[A-Z]{2,3})?)(?:[ \t]+(?P<tpost>" + _POSTCODE + "))?"
                   + r"|[A-Z]{2,3}(?:[ \t]+(?P<spost>" + _POSTCODE + "))?)" + r"(?!\w)(?![ \t]*:)")
_CORNER_END = re.compile(r" and (?:" + _NUMS + r"[ \t]+)?" + _WORDS)
# words before an address that say one follows
_CUE = re.compile(r"(?:address(?:es)?(?: is| was| are)?|addr|live[sd]? (?:on|at)|living (?:on|at|in)|located (?:at|on|in)"
                  r"|reside[sd]? (?:at|on|in)|(?:send|sent|ship|deliver|mail|post|return|forward|bring|taxi)"
                  r"\w*(?: [\w']+){0,6} to|meet(?: \w+){0,3} at|is at|are at|was at|off at|corner of|side of"
                  r"|visit(?: \w+)? at|enter on|here they are)[\s:,]*$", re.I)
_FIRST_LETTER = re.compile(r"(?<!" + _LET + ")" + _LET)
_DIGIT = re.compile(r"[0-9]")
_POSTCODE_END = re.compile(r"(?<![0-9])[0-9]{4,6}$")

Span = Tuple[int, int, float]


def _candidates(text: str, plain: bool):
    """Street matches, by start: those that start with a number, and for each number after a word,
    the first street that starts within six words before it and reaches it."""
    found = list((_NUM_FIRST_PLAIN if plain else _NUM_FIRST).finditer(text))
    if _BOX_GATE.search(text):
        found += _BOX_FIRST.finditer(text)
    for a in _ANCHOR.finditer(text):
        n = a.end() - 1
        starts = [w.start() for w in _WORD_START.finditer(text, max(0, n - 90), n)][-6:]
        for s in starts:
            m = _WORD_FIRST.match(text, s)
            if m and m.end() > n:
                found.append(m)
                break
    found.sort(key=lambda m: (m.start(), -m.end()))
    return found


def _find(text: str, plain: bool = False) -> List[Tuple[int, int]]:
    """``plain``: the message had no capitals (read capitalised); a name and a number then need a
    unit or postcode after them, a cue is not enough (it is like 15, moved to utah 6)."""
    out: List[Tuple[int, int]] = []
    end = 0
    for m in _candidates(text, plain):
        if m.start() < end:
            continue
        s, e = m.span()
        groups = m.groupdict()  # the box pattern has neither a corner nor a shape
        corner = groups.get("corner")
        if corner:
            c = _CORNER_END.match(text, e)
            if c:
                e = c.end()
            else:
                s = m.end("corner")  # 'the corner of' belongs to the address only with its second street
        settled = False
        while True:
            t = _TAIL.match(text, e)
            if not t or t.end() == e:
                break
            if t.group("town") and t.group("town") != "nan" and not t.group("tpost") \
                    and not re.search(r"[,\n]", text[e:t.start("town")]) and not _POSTCODE_END.search(text, max(0, e - 7), e):
                break  # a capitalised word after a space goes on with the sentence, unless after a postcode (75002 Paris)
            settled = settled or any(t.group(k) for k in ("unit", "post", "tpost", "spost"))
            e = t.end()
        if groups.get("shape") is not None:
            # a name and a number with no street type: after an address cue (not in a message with
            # no capitals), or house number + name + number with a unit or postcode after it
            cued = not plain and (corner or _CUE.search(text, max(0, s - 50), s))
            if not cued and not (settled and m.re is not _WORD_FIRST and _DIGIT.search(text, m.start("shape"), m.end())):
                continue
        out.append((s, e))
        end = e
    return out


def find_en_addresses(text: str, score: float = 0.85) -> List[Span]:
    """Street-level addresses in ``text`` as (start, end, score)."""
    if not text or not _DIGIT.search(text):
        return []
    plain = text.islower()  # letters, none of them capital (a text with no cased letter has no street either)
    if plain:
        # no capital anywhere: read each word capitalised (same offsets; ß-like letters stay)
        text = _FIRST_LETTER.sub(lambda m: m.group(0).upper() if len(m.group(0).upper()) == 1 else m.group(0), text)
    return [(s, e, score) for s, e in _find(text, plain)]
