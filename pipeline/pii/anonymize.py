"""Replace detected PII with placeholders or consistent, format-preserving pseudonyms.

A pseudonym is drawn from a generator seeded by a keyed hash of (scope, entity type, value),
so the same value becomes the same fake everywhere in its scope (one conversation, or a whole
salt-scoped corpus) and nothing of the value survives: a fake mobile number is still a valid-
looking mainland mobile, a fake resident ID has a valid birth date and check digit, a fake
card passes Luhn, an IP comes from the documentation ranges. Secrets never get a look-alike:
they become placeholders. The replacement itself is done by presidio-anonymizer.
"""
from __future__ import annotations

import hashlib
import random
import re
import string
from datetime import date, timedelta
from functools import lru_cache

from pipeline.pii import en_addresses as EA

PLACEHOLDER_ONLY = {"API_KEY", "URL_WITH_SECRET", "PRIVATE_KEY", "SECRET"}
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_REGIONS = ("110105", "310104", "440305", "330106", "510107", "420106", "320102", "610113")
_PLATE_PROV = "京沪粤浙苏川鄂陕"


def id_check_char(first17: str) -> str:
    return _ID_CHECK[sum(int(c) * w for c, w in zip(first17, _ID_WEIGHTS)) % 11]


def luhn_digit(payload: str) -> str:
    total = 0
    for i, c in enumerate(reversed(payload)):
        d = int(c)
        if i % 2 == 0:
            d *= 2
            d -= 9 if d > 9 else 0
        total += d
    return str((10 - total % 10) % 10)


def _digits_like(value: str, rng: random.Random, fixed_prefix: str = "") -> str:
    """Replace digits of `value` keeping separators; the first digits become `fixed_prefix`."""
    out, k = [], 0
    for ch in value:
        if ch.isdigit():
            out.append(fixed_prefix[k] if k < len(fixed_prefix) else str(rng.randrange(10)))
            k += 1
        else:
            out.append(ch)
    return "".join(out)


def _fake_phone(value: str, rng: random.Random) -> str:
    digits = "".join(c for c in value if c.isdigit())
    # mainland mobile, possibly after a +86 / 0086 / 86 prefix: keep the prefix, fake the rest
    for cc in ("0086", "86", ""):
        rest = digits[len(cc):] if digits.startswith(cc) else None
        if rest is not None and len(rest) == 11 and rest[0] == "1" and rest[1] in "3456789":
            prefix = cc + "1" + rng.choice("3589") + str(rng.randrange(10))
            return _digits_like(value, rng, prefix)
    if digits.startswith("0") and 10 <= len(digits) <= 12:  # landline: keep the leading 0
        return _digits_like(value, rng, "0" + str(rng.randrange(1, 10)))
    return _digits_like(value, rng, str(rng.randrange(2, 10)))


def _fake_cn_id(value: str, rng: random.Random) -> str:
    born = date(1950, 1, 1) + timedelta(days=rng.randrange(365 * 55))
    first17 = rng.choice(_REGIONS) + born.strftime("%Y%m%d") + f"{rng.randrange(1000):03d}"
    out = first17 + id_check_char(first17)
    return out.lower() if value[-1:] == "x" and out[-1] == "X" else out


def _fake_card(value: str, rng: random.Random) -> str:
    digits = [c for c in value if c.isdigit()]
    iin = "62" if digits[:2] == ["6", "2"] else ("4" if digits[:1] == ["4"] else "5" + str(rng.randrange(1, 6)))
    body = iin + "".join(str(rng.randrange(10)) for _ in range(len(digits) - len(iin) - 1))
    full = body + luhn_digit(body)
    it = iter(full)
    return "".join(next(it) if c.isdigit() else c for c in value)


def _fake_email(value: str, rng: random.Random) -> str:
    user = "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(5, 9)))
    return f"{user}{rng.randrange(100)}@example.com"


def _fake_ip(value: str, rng: random.Random) -> str:
    if ":" in value:
        return f"2001:db8::{rng.randrange(1, 0xFFFF):x}"
    net = rng.choice(("192.0.2", "198.51.100", "203.0.113"))  # RFC 5737 documentation ranges
    return f"{net}.{rng.randrange(1, 255)}"


def _fake_alnum(value: str, rng: random.Random) -> str:
    out = []
    for ch in value:
        if ch.isdigit():
            out.append(str(rng.randrange(10)))
        elif ch.isascii() and ch.isalpha():
            c = rng.choice(string.ascii_letters)
            out.append(c.upper() if ch.isupper() else c.lower())
        else:
            out.append(ch)
    s = "".join(out)
    return s if s[:1] != "0" or value[:1] == "0" else str(rng.randrange(1, 10)) + s[1:]


def _fake_plate(value: str, rng: random.Random) -> str:
    out = [rng.choice(_PLATE_PROV)] + [_fake_alnum(c, rng) if c.isascii() else c for c in value[1:]]
    return "".join(out)


def _fake_ssn(value: str, rng: random.Random) -> str:
    area = rng.randrange(100, 665)
    return _digits_like(value, rng, f"{area:03d}")


_HAN = re.compile("[\u4e00-\u9fff]")


@lru_cache(maxsize=2)
def _faker_for(locale: str):
    from faker import Faker

    return Faker(locale)  # building one costs about 1.5 ms: one per locale, reseeded per value


def _faker(value: str, rng: random.Random):
    f = _faker_for("zh_CN" if _HAN.search(value) else "en_US")
    f.seed_instance(rng.randrange(1 << 30))  # a fresh random state: the same names as a new instance
    return f


_NAME_TITLES = ("mr", "mrs", "ms", "miss", "dr", "prof")


def _split_title(value: str) -> tuple[list[str], list[str]]:
    """([title] or [], the name's words) of a Latin-letter name (Ms. Jane Doe)."""
    words = value.split()
    prefix = [w for w in words[:1] if w.rstrip(".").lower() in _NAME_TITLES]
    return prefix, words[len(prefix):]


def _fake_person(value: str, rng: random.Random) -> str:
    """A name of the same script and length; a title stays (张先生 -> 刘先生, Ms. Jane Doe -> Ms. Amy Lee)."""
    from .names import COMPOUND_SURNAMES, SURNAMES, TITLES

    if _HAN.search(value):
        title = next((t for t in TITLES if value.endswith(t) and len(value) > len(t)), "")
        core = value[: len(value) - len(title)] if title else value
        given_chars = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红建文辉宇鹏飞浩然子轩欣怡梓涵晨阳佳琪雨"
        common = SURNAMES[:100]
        if core[:2] in COMPOUND_SURNAMES:
            surname, rest = rng.choice(COMPOUND_SURNAMES), core[2:]
        else:
            surname, rest = rng.choice(common), core[1:]
        if core and not _HAN.match(core[0]):  # a handle inside Chinese text
            return _fake_alnum(value, rng)
        return surname + "".join(rng.choice(given_chars) for _ in rest) + title
    f = _faker(value, rng)
    prefix, rest = _split_title(value)
    if len(rest) <= 1:
        new = [f.first_name()] if not prefix else [f.last_name()]
    else:
        new = [f.first_name()] + [f.first_name() for _ in rest[1:-1]] + [f.last_name()]
    return " ".join(prefix + new)


_ZH_PART = re.compile("([\u4e00-\u9fff]+?)(特别行政区|自治区|自治州|自治县|地区|街道|省|市|州|盟|区|县|旗|镇|乡|大街|大道|胡同|"
                      "小区|花园|公寓|新村|路|街|巷|弄|村|里)")
_ZH_STEMS = ("长宁", "东湖", "青山", "南湖", "西城", "华阳", "新城", "安平", "永安", "清河", "平山", "丰泽", "江北", "城关",
             "兴华", "和平", "建设", "解放", "人民", "文化", "光明", "友谊", "胜利", "幸福", "朝阳", "天河", "滨江", "金山")


def _fake_location(value: str, rng: random.Random) -> str:
    """An address with the same parts: each named part gets another name with the same suffix
    (省 / 市 / 区 / 路 ...), numbers other digits; other scripts: every word but street types, units
    and particles replaced (a joined type stays: Kiannonkatu -> Lindqvistkatu), in its case."""
    if _HAN.search(value):
        def part(m):
            stem = rng.choice(_ZH_STEMS)
            return (stem * 2)[: max(1, min(len(m.group(1)), 4))] + m.group(2)
        out = _ZH_PART.sub(part, value)
        return _digits_like(out, rng, str(rng.randrange(1, 10)))
    f = _faker(value, rng)

    def word(m: "re.Match") -> str:
        w = m.group(0)
        low = w.lower().rstrip(".")
        if low in _ADDRESS_KEEP or w in ("u.", "ul.", "al.", "os.", "pl."):
            return w  # a street type, unit or particle: the address keeps its form
        if w.isupper() and len(w) <= 3:
            return "".join(rng.choice(string.ascii_uppercase) for _ in w)  # a state or region code
        suffix = next((s for s in EA.JOINED if low.endswith(s) and len(low) >= len(s) + (5 if s == "tie" else 3)), "")
        new = f.last_name().replace(" ", "") + (w[len(w) - len(suffix):] if suffix else "")
        return new.upper() if w.isupper() and len(w) > 1 else new.lower() if w[0].islower() else new

    out = _ADDRESS_WORD.sub(word, value)
    return _digits_like(out, rng, str(rng.randrange(1, 10)))


# words of an English or European address that stay: street types, units, boxes, particles
_ADDRESS_KEEP = {w.lower().rstrip(".") for w in EA.EN_TYPES + EA.PRE_TYPES + EA.AFTER_TYPES + EA.UNIT_WORDS
                 + EA.PARTICLES} | {
    "dr", "p", "o", "po", "box", "psc", "usns", "uss", "usnv", "uscgc", "fpo", "apo", "dpo", "aa", "ae", "ap", "the",
    "corner", "and", "nan"}
_ADDRESS_WORD = re.compile(r"(?<![0-9])[^\W\d_]+(?:['’-][^\W\d_]+)*\.?")


FAKERS = {
    "PHONE_NUMBER": _fake_phone, "CN_RESIDENT_ID": _fake_cn_id, "CREDIT_CARD": _fake_card,
    "EMAIL_ADDRESS": _fake_email, "IP_ADDRESS": _fake_ip, "CN_ACCOUNT_ID": _fake_alnum,
    "CN_PASSPORT": _fake_alnum, "CN_LICENSE_PLATE": _fake_plate, "US_SSN": _fake_ssn,
    "IBAN_CODE": _fake_alnum, "PERSON": _fake_person, "LOCATION": _fake_location,
}


class Pseudonymizer:
    """value -> replacement, consistent within a scope (a conversation id, or '' for the corpus)."""

    def __init__(self, salt: str, operators: dict | None = None, default: str = "pseudonym"):
        self.salt = salt.encode()
        self.operators = operators or {}
        self.default = default

    def operator(self, entity: str) -> str:
        op = self.operators.get(entity, self.default)
        return "placeholder" if entity in PLACEHOLDER_ONLY or entity not in FAKERS else op

    def _rng(self, scope: str, entity: str, value: str) -> random.Random:
        seed = hashlib.blake2b(f"{scope}\x1f{entity}\x1f{value}".encode(), key=self.salt[:64], digest_size=8).digest()
        return random.Random(int.from_bytes(seed, "big"))

    def _latin_name(self, value: str, scope: str) -> str:
        """A Latin-letter name word by word, each word by its own value and place: the first name
        of "Daniel Brooks" is the same fake as "Daniel" alone and the surname the same as in
        "Mr. Brooks", so a conversation keeps calling one person one name. Case and initials stay."""
        prefix, rest = _split_title(value)
        out = []
        for k, w in enumerate(rest):
            if re.fullmatch(r"[A-Za-z]\.?", w):  # a middle initial: another letter
                rng = self._rng(scope, "PERSON:initial", w)
                out.append(rng.choice([c for c in "ABCDEFGHJKLMNPRSTW" if c != w[0].upper()]) + w[1:])
                continue
            last = bool(prefix) if len(rest) == 1 else k == len(rest) - 1
            kind = "last" if last else "first"
            rng = self._rng(scope, "PERSON:" + kind, w.lower())
            for _ in range(8):  # never the original word
                f = _faker(w, rng)
                fake = f.last_name() if last else f.first_name()
                if fake.lower() != w.lower():
                    break
            out.append(fake.lower() if w.islower() else fake)
        return " ".join(prefix + out)

    def replace(self, entity: str, value: str, scope: str) -> str:
        if self.operator(entity) == "placeholder":
            return f"<{entity}>"
        if entity == "PERSON" and value.split() and not _HAN.search(value) and all(
                re.fullmatch(r"[^\W\d_]+(?:['’.-][^\W\d_]*)*", w) for w in value.split()):
            return self._latin_name(value, scope)
        rng = self._rng(scope, entity, value)
        for _ in range(8):  # never hand back the original value
            fake = FAKERS[entity](value, rng)
            if fake != value:
                return fake
        return f"<{entity}>"


def anonymize_text(text: str, findings: list, pseudo: Pseudonymizer, scope: str
                   ) -> tuple[str, list[tuple[int, int, str]]]:
    """Apply presidio-anonymizer with our operators; returns (new text, [(start, end, entity)]
    of the replacements in the new text)."""
    if not findings:
        return text, []
    from presidio_anonymizer import AnonymizerEngine
    from presidio_anonymizer.entities import OperatorConfig, RecognizerResult

    eng = _engine()
    results = [RecognizerResult(f.entity_type, f.start, f.end, f.score) for f in findings]
    ops = {f.entity_type: OperatorConfig("custom", {"lambda": (lambda v, e=f.entity_type: pseudo.replace(e, v, scope))})
           for f in findings}
    out = eng.anonymize(text=text, analyzer_results=results, operators=ops)
    return out.text, [(it.start, it.end, it.entity_type) for it in out.items]


_ENGINE = None


def _engine():
    global _ENGINE
    if _ENGINE is None:
        from presidio_anonymizer import AnonymizerEngine

        _ENGINE = AnonymizerEngine()
    return _ENGINE
