"""The team's presidio recognizers: Chinese identifiers, CJK-safe e-mail/IP, secrets.

Every recognizer here is a presidio ``PatternRecognizer`` (or ``PhoneRecognizer`` /
``UrlRecognizer`` / ``EmailRecognizer``) subclass, so it plugs into an ``AnalyzerEngine``
registry like presidio's own.  Conventions:

* Chinese text has no word boundaries and Python's ``\\w`` / ``\\b`` treat CJK
  characters as word characters, so no pattern here uses ``\\b``.  Values are delimited
  with ASCII lookarounds instead: ``(?<![0-9A-Za-z])`` ... ``(?![0-9A-Za-z])`` (plus
  "not part of a decimal number" for digit values).  ``邮箱a@b.com谢谢`` and
  ``手机13812345678，`` are found; ``订单2026110112345678`` is one 16-digit run and never
  yields an 11-digit phone from its middle.
* Scores are graded, not presidio's binary ``validate_result`` (valid -> 1.0, invalid ->
  dropped).  A value whose checksum holds gets ``VALID_SCORE`` (1.0); a value with the
  right shape and plausible fields but a wrong checksum is still reported with
  ``BAD_CHECKSUM_SCORE`` (ID 0.6, card 0.55), because a typo'd or made-up number leaks
  as much as a real one.  ``validate_result`` still answers "does the checksum hold".
  Shapes without plausible fields (no province code, impossible birth date, unknown
  card IIN) are not reported at all.
* Each recognizer class carries ``GATE``: a cheap regex that matches every text in which
  the recognizer can report anything.  ``PiiAnalyzer``'s fast path skips the recognizer
  when its gate does not match, so a gate must stay a superset of the patterns: when you
  widen a pattern, widen its gate (the fast == slow test catches most slips).
* ``MAX_SCORE`` is the highest score a recognizer can give; the analyzer leaves out of
  its default entity set the entities that can never reach ``min_score``.
"""
from __future__ import annotations

import copy
import datetime
from collections import OrderedDict
import hashlib
import ipaddress
import os
import re
from typing import Iterable, List, Optional, Tuple
from urllib.parse import unquote, urlsplit

os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")

try:  # noqa: E402
    from importlib.metadata import version as _dist_version

    PRESIDIO_VERSION = _dist_version("presidio-analyzer")
except Exception:  # pragma: no cover
    PRESIDIO_VERSION = "unknown"

try:  # noqa: E402
    import regex  # presidio's regex engine; used where we mirror its patterns
    import tldextract
    from presidio_analyzer import (
        AnalysisExplanation,
        EntityRecognizer,
        Pattern,
        PatternRecognizer,
        RecognizerResult,
    )
    from presidio_analyzer.predefined_recognizers import (
        EmailRecognizer,
        PhoneRecognizer,
        UrlRecognizer,
    )

    PRESIDIO_IMPORT_ERROR: Optional[ImportError] = None
except ImportError as _exc:  # pragma: no cover - only without the optional dependency
    # Keep this module importable (pytest imports every module for doctests); using
    # any recognizer then raises a clear error.
    PRESIDIO_IMPORT_ERROR = _exc
    regex = re  # type: ignore  # enough to compile the module-level patterns

    class _MissingPresidio:
        PATTERNS: list = []
        SCORE = 0.0

        def __init__(self, *args, **kwargs):
            raise ImportError(
                "pipeline.pii needs presidio-analyzer (pip install presidio-analyzer)"
            ) from PRESIDIO_IMPORT_ERROR

    PatternRecognizer = EntityRecognizer = _MissingPresidio  # type: ignore
    PhoneRecognizer = UrlRecognizer = EmailRecognizer = _MissingPresidio  # type: ignore
    AnalysisExplanation = RecognizerResult = None  # type: ignore
    tldextract = None  # type: ignore

    def Pattern(name, regex, score):  # type: ignore  # noqa: N802
        return (name, regex, score)


# ----------------------------------------------------------------------------------
# Shared regex pieces and checksums
# ----------------------------------------------------------------------------------

#: not preceded by an ASCII letter/digit nor by "<digit>." (decimal numbers)
NB = r"(?<![0-9A-Za-z])(?<![0-9][.])"
#: not followed by an ASCII letter/digit nor by ".<digit>"
NA = r"(?![0-9A-Za-z])(?![.][0-9])"

#: cluster of >= n digits where consecutive digits are at most `gap` characters apart
#: (any characters).  Used as gates: every digit value fits in such a cluster.
def digit_cluster_gate(n: int, gap: int = 1) -> "re.Pattern[str]":
    """Regex matching a text iff it holds n digits each <= gap chars from the next."""
    return re.compile(r"\d(?:\D{0,%d}\d){%d}" % (gap, n - 1))


VALID_SCORE = 1.0

#: texts at least this long are scanned only on the lines where a recognizer's gate hits
LONG_TEXT = 8192

_ASCII_UPPER_RUN = re.compile("[A-Z]+")


def ascii_lower(text: str) -> str:
    """Lower-case ASCII letters only; same length and offsets as ``text``.

    Patterns listed in ``CASELESS_PATTERNS`` run on this instead of using IGNORECASE,
    which makes stdlib ``re`` give up its prefix optimisations (3-5x slower).  The
    semantics are ``re.IGNORECASE | re.ASCII``.
    """
    return _ASCII_UPPER_RUN.sub(lambda m: m.group().lower(), text)


class LowerGate:
    """A gate run on ``text.lower()`` with a case-sensitive pattern of literal alternatives.

    IGNORECASE, and a lookaround or class at the start, make stdlib ``re`` try the pattern
    at every position; plain literals keep its prefix scan (5-10x faster on Chinese text).
    The pattern must carry no lookarounds, so it stays a superset of the case-insensitive
    match it stands for (``str.lower`` maps every ASCII capital to its lower case).
    ``PiiAnalyzer`` lowers a text once for all such gates (``search_lower``).
    """

    def __init__(self, pattern: str):
        self.rx = re.compile(pattern)

    def search_lower(self, lowered: str):
        return self.rx.search(lowered)

    def search(self, text: str):
        return self.rx.search(text.lower())

    def __repr__(self) -> str:
        return f"LowerGate({self.rx.pattern!r})"


def gated_line_windows(text: str, gate) -> List[Tuple[int, int]]:
    """Spans of whole lines (without their newline) that hold a match of ``gate``.

    Scanning a single-line pattern (one that cannot match a newline) on these spans
    finds exactly what scanning the whole text finds, provided every match of the
    pattern contains a match of ``gate`` (all gates here are loosened pieces of their
    patterns): lookbehinds still see the text before the span (``finditer(text, a, b)``)
    and at the span's end every lookahead used here treats end-of-string like "\\n".
    """
    windows: List[Tuple[int, int]] = []
    n = len(text)
    pos = 0
    while pos < n:
        m = gate.search(text, pos)
        if m is None:
            break
        a = text.rfind("\n", 0, m.start()) + 1
        b = text.find("\n", m.end())
        if b < 0:
            b = n
        if windows and a <= windows[-1][1]:
            windows[-1] = (windows[-1][0], b)
        else:
            windows.append((a, b))
        pos = b + 1
    return windows

#: mainland province-level codes (first two digits of a resident ID)
CN_PROVINCE_CODES = frozenset(
    "11 12 13 14 15 21 22 23 31 32 33 34 35 36 37 41 42 43 44 45 46 "
    "50 51 52 53 54 61 62 63 64 65 71 81 82".split()
)
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK_CHARS = "10X98765432"


def cn_id_check_char(first17: str) -> str:
    """ISO 7064 MOD 11-2 check character of an 18-digit resident ID."""
    total = sum(int(d) * w for d, w in zip(first17, _ID_WEIGHTS))
    return _ID_CHECK_CHARS[total % 11]


def cn_id_checksum_ok(id18: str) -> bool:
    """True when the 18th character is the MOD 11-2 check of the first 17."""
    if len(id18) != 18 or not id18[:17].isdigit():
        return False
    return cn_id_check_char(id18[:17]) == id18[17].upper()


def _valid_birth_date(yyyymmdd: str, today: Optional[datetime.date] = None) -> bool:
    try:
        d = datetime.date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:8]))
    except ValueError:
        return False
    return datetime.date(1900, 1, 1) <= d <= (today or datetime.date.today())


def cn_id_fields_plausible(digits: str) -> bool:
    """Province code and birth date of an 18- or 15-digit resident ID are plausible."""
    if digits[:2] not in CN_PROVINCE_CODES:
        return False
    if len(digits) == 18:
        return _valid_birth_date(digits[6:14])
    if len(digits) == 15:
        return _valid_birth_date("19" + digits[6:12])
    return False


def luhn_ok(digits: str) -> bool:
    """Luhn (mod 10) check over a string of digits."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


MAESTRO_IIN = ("5018", "5020", "5038", "5893", "6304", "6759", "6761", "6762", "6763", "0604", "6390")


def card_brand(digits: str) -> Optional[str]:
    """Card scheme for a 12-19 digit number from its IIN, or None when unknown. Only
    Maestro is 12-14 digits long."""
    n = len(digits)
    if digits[:4] in MAESTRO_IIN or (digits[:2] in ("56", "57", "58") and n != 16):
        return "maestro" if 12 <= n <= 19 else None
    if n < 15:
        return None
    if digits[:2] in ("34", "37"):
        return "amex" if n == 15 else None
    if n < 16 or n > 19:
        return None
    two, four = digits[:2], int(digits[:4])
    if two == "62":
        return "unionpay"
    if digits[0] == "4":
        return "visa" if n in (16, 19) else None
    if "51" <= two <= "55" or 2221 <= four <= 2720:
        return "mastercard" if n == 16 else None
    if 3528 <= four <= 3589:
        return "jcb"
    if digits.startswith("6011") or two == "65" or 644 <= int(digits[:3]) <= 649:
        return "discover"
    if two in ("36", "38") or 300 <= int(digits[:3]) <= 305:
        return "diners"
    return None


def _context_near(
    text: str, start: int, end: int, rx: "re.Pattern[str]", before: int, after: int = 0
) -> bool:
    """True when rx matches within `before` chars before start or `after` after end."""
    if rx.search(text, max(0, start - before), start):
        return True
    return bool(after) and rx.search(text, end, min(len(text), end + after)) is not None


# ----------------------------------------------------------------------------------
# Base class: graded scores instead of presidio's binary validation
# ----------------------------------------------------------------------------------

Scored = Optional[Tuple[int, int, float]]


class ScoredPatternRecognizer(PatternRecognizer):
    """PatternRecognizer whose matches are scored by ``score_match``.

    Subclasses set ``ENTITY``, ``PATTERNS`` (presidio ``Pattern`` objects, compiled with
    the stdlib ``re`` and ``REGEX_FLAGS``), ``GATE`` and ``MAX_SCORE``, and override
    ``score_match(match, text, pattern) -> (start, end, score) | None``.  The reported
    span is the named group ``v`` when the pattern has one, else the whole match.
    """

    ENTITY = ""
    PATTERNS: List = []
    CONTEXT: List[str] = []
    MAX_SCORE = 1.0
    REGEX_FLAGS = 0
    GATE: Optional["re.Pattern[str]"] = None
    #: regex found inside every single-line match (default: GATE); long texts are only
    #: scanned on the lines where it hits
    LINE_GATE: Optional["re.Pattern[str]"] = None
    #: names of patterns that can match across lines (always scanned on the whole text)
    MULTILINE_PATTERNS: frozenset = frozenset()
    #: names of patterns written in lower case and run on ``ascii_lower(text)``
    #: (ASCII-case-insensitive); match offsets are the same as in ``text``
    CASELESS_PATTERNS: frozenset = frozenset()
    #: LINE_GATE is lower case and searched in ``ascii_lower(text)``
    LINE_GATE_ON_LOWER = False

    def __init__(self, supported_language: str = "en", name: Optional[str] = None):
        patterns = [Pattern(p.name, p.regex, p.score) for p in self.PATTERNS]
        super().__init__(
            supported_entity=self.ENTITY,
            name=name or type(self).__name__,
            supported_language=supported_language,
            patterns=patterns,
            context=list(self.CONTEXT) or None,
            global_regex_flags=self.REGEX_FLAGS,
        )
        self._compiled = [re.compile(p.regex, self.REGEX_FLAGS) for p in self.patterns]

    # presidio calls analyze(text, entities, nlp_artifacts)
    def analyze(self, text, entities=None, nlp_artifacts=None, regex_flags=None):
        """Run every pattern over text; score each match with ``score_match``."""
        whole = ((0, len(text)),)
        lowered = ascii_lower(text) if (self.CASELESS_PATTERNS or self.LINE_GATE_ON_LOWER) else text
        lines = None
        line_gate = self.LINE_GATE if self.LINE_GATE is not None else self.GATE
        single_line = any(p.name not in self.MULTILINE_PATTERNS for p in self.patterns)
        if len(text) >= LONG_TEXT and line_gate is not None and single_line:
            lines = gated_line_windows(lowered if self.LINE_GATE_ON_LOWER else text, line_gate)
        results = []
        for pattern, rx in zip(self.patterns, self._compiled):
            spans = whole if lines is None or pattern.name in self.MULTILINE_PATTERNS else lines
            hay = lowered if pattern.name in self.CASELESS_PATTERNS else text
            for m in (m for a, b in spans for m in rx.finditer(hay, a, b)):
                scored = self.score_match(m, text, pattern)
                if not scored:
                    continue
                start, end, score = scored
                if end <= start or score <= 0:
                    continue
                results.append(self._make_result(start, end, score, pattern))
        if len(results) > 1:
            results = EntityRecognizer.remove_duplicates(results)
        return results

    def score_match(self, m: "re.Match[str]", text: str, pattern) -> Scored:
        """Default: the pattern's fixed score over group ``v`` (or the whole match)."""
        start, end = self.span(m)
        return start, end, pattern.score

    @staticmethod
    def span(m: "re.Match[str]") -> Tuple[int, int]:
        """Span of group ``v`` if the pattern defines it, else of the whole match."""
        if "v" in m.re.groupindex:
            return m.span("v")
        return m.span()

    def _make_result(self, start: int, end: int, score: float, pattern) -> RecognizerResult:
        explanation = AnalysisExplanation(
            recognizer=self.name,
            original_score=pattern.score,
            pattern_name=pattern.name,
            pattern=pattern.regex,
            validation_result=None,
            textual_explanation=f"Detected by `{self.name}` using pattern `{pattern.name}`",
        )
        explanation.score = score
        return RecognizerResult(
            entity_type=self.ENTITY,
            start=start,
            end=end,
            score=score,
            analysis_explanation=explanation,
            recognition_metadata={
                RecognizerResult.RECOGNIZER_NAME_KEY: self.name,
                RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
            },
        )


# ----------------------------------------------------------------------------------
# PHONE_NUMBER: mainland mobiles and landlines
# ----------------------------------------------------------------------------------

_NB_PLUS = r"(?<![0-9A-Za-z+＋])(?<![0-9][.])"
_AREA = r"0(?:10|2[0-9]|[3-9][0-9]{2})"
#: mobile number segments with no carrier allocation (or data-only): lower score
_UNALLOCATED_MOBILE = frozenset(
    "140 141 142 143 144 154 160 161 163 164 168 169 179 194".split()
)


class CnPhoneRecognizer(ScoredPatternRecognizer):
    """Mainland China phone numbers, entity ``PHONE_NUMBER`` (same as presidio's).

    Mobiles: ``1[3-9]x`` + 8 digits, optionally ``+86``/``0086``/``86``/``(+86)`` in front
    and the 3-4-4 grouping with one consistent space or dash (``138 1234 5678``,
    ``+86-139-0000-1111``, ``13812345678``).  Landlines need the area code set off by a
    separator or parentheses (``010-12345678``, ``(010) 12345678``, ``0755-1234567``,
    ``+86 10 12345678``) so bare digit runs are never read as landlines.

    Scores: mobile 0.8, 0.85 with a prefix or grouping, 0.5/0.55 for unallocated
    segments (140-144, 154, ...); landline 0.7, 0.75 with parentheses or +86.
    """

    ENTITY = "PHONE_NUMBER"
    MAX_SCORE = 0.85
    CONTEXT = ["手机", "电话", "联系方式", "phone", "mobile", "tel"]
    PATTERNS = [
        Pattern(
            "cn_mobile",
            _NB_PLUS
            + r"(?P<p>(?:[+＋]|00)?86[ \-]?|\([+＋]?86\)[ \-]?)?"
            + r"(?P<n>1[3-9][0-9](?P<s>[ \-]?)[0-9]{4}(?P=s)[0-9]{4})"
            + NA,
            0.8,
        ),
        Pattern(
            "cn_landline",
            _NB_PLUS
            + r"(?:(?P<paren>\(" + _AREA + r"\))[ \-]?"
            + r"|" + _AREA + r"[ \-]"
            + r"|(?P<intl>(?:[+＋]|00)86)[ \-]?\(?(?:10|2[0-9]|[3-9][0-9]{2})\)?[ \-]?)"
            + r"[2-9][0-9]{6,7}"
            + NA,
            0.7,
        ),
    ]
    # the shapes with looser classes and lookarounds (a match starts at +, (, 0, 8 or 1
    # with no digit before; "0086"/"86" glued to a mobile is covered by 0{0,2}86)
    # (lookarounds and the optional 0086 prefix left out: a superset the scanner can skip to)
    GATE = re.compile(
        r"1[3-9]\d[ \-]?\d{4}[ \-]?\d{4}"
        r"|0\d{2,3}\)?[ \-]?[2-9]\d{6,7}"
        r"|86[ \-]?\(?\d{2,3}\)?[ \-]?[2-9]\d{6,7}"
    )

    def score_match(self, m, text, pattern) -> Scored:
        start, end = m.span()
        if pattern.name == "cn_mobile":
            score = 0.5 if m.group("n")[:3] in _UNALLOCATED_MOBILE else 0.8
            if m.group("p") or m.group("s"):
                score += 0.05
            return start, end, round(score, 2)
        score = 0.75 if (m.group("paren") or m.group("intl")) else 0.7
        return start, end, score


try:
    # the characters phonenumbers' matcher allows between digit blocks (a char-class
    # body with ranges) and its plus signs
    from phonenumbers.phonenumberutil import _PLUS_CHARS as _PN_PLUS
    from phonenumbers.phonenumberutil import _VALID_PUNCTUATION as _PN_PUNCTUATION

    _PHONE_GAP = "[" + _PN_PUNCTUATION + _PN_PLUS + "]"
except ImportError:  # pragma: no cover - other phonenumbers versions: any character
    _PHONE_GAP = r"[^\d\n]"


class WindowedPhoneRecognizer(PhoneRecognizer):
    """presidio's ``PhoneRecognizer`` (python-phonenumbers), run on windows and guarded.

    presidio scans the whole text once per region (8 regions), ~13 s per 5 MB, and in
    Chinese text it reports prices and counters as German pager numbers (``价格16400元``)
    and 11-digit runs starting ``12`` as US numbers.  Here phonenumbers runs only on
    windows around clusters of >= 7 digits whose digits are at most 4 phone punctuation
    characters apart (phonenumbers' own candidate pattern: digit blocks separated by at
    most 4 of ``-x‐―−ー－／ ()（）［］.[]/~`` and spaces, never a newline), 12 characters of
    margin each side on the same line.  A match is then dropped when its main part
    (before any extension) has fewer than 7 digits, is glued to another digit or to a
    decimal point, or is a bare digit run of 12+ digits or of 11 digits starting with 1
    (the mainland-mobile shape, left to ``CnPhoneRecognizer``).  Clusters that are such
    bare runs with no ``+``/``(`` in the 10 characters before are not even parsed, nor
    are clusters of more than ``MAX_CLUSTER_DIGITS`` digits (tables of numbers such as
    ``1234 5678 9012 ...``: phonenumbers needs ~30 ms per 1,000 such characters).
    """

    MIN_DIGITS = 7
    MAX_CLUSTER_DIGITS = 48
    WINDOW_CACHE_SIZE = 8192
    MAX_SCORE = PhoneRecognizer.SCORE
    _MARGIN = 12
    _CLUSTERS = re.compile(r"\d(?:%s{0,4}\d){%d,}" % (_PHONE_GAP, MIN_DIGITS - 1))
    _MAIN = re.compile(r"[^A-Za-z#;,]*")
    _DIGIT = re.compile(r"\d")
    _LEAD = frozenset("+＋(（[［")

    @classmethod
    def _clusters(cls, text: str):
        for m in cls._CLUSTERS.finditer(text):
            run = m.group()
            if len(cls._DIGIT.findall(run)) > cls.MAX_CLUSTER_DIGITS:
                continue
            if cls._bare_mobile_or_long(run) and not cls._LEAD.intersection(
                text[max(0, m.start() - 10) : m.start()]
            ):
                continue
            yield m

    @classmethod
    def GATE_FN(cls, text: str) -> bool:  # noqa: N802
        """Gate: the text has a window (a cluster that is not skipped)."""
        return next(cls._clusters(text), None) is not None

    def analyze(self, text, entities=None, nlp_artifacts=None):
        """Run phonenumbers on digit-cluster windows, then apply the guards."""
        windows: List[List[int]] = []
        n = len(text)
        for m in self._clusters(text):
            line_start = text.rfind("\n", 0, m.start()) + 1
            line_end = text.find("\n", m.end())
            if line_end < 0:
                line_end = n
            a = max(line_start, m.start() - self._MARGIN)
            b = min(line_end, m.end() + self._MARGIN)
            if windows and a <= windows[-1][1]:
                windows[-1][1] = max(windows[-1][1], b)
            else:
                windows.append([a, b])
        results = []
        for a, b in windows:
            for start, end, score, explanation in self._parse_window(text[a:b]):
                start += a
                end += a
                if self._keep(text, start, end):
                    results.append(
                        RecognizerResult(
                            entity_type=self.supported_entities[0],
                            start=start,
                            end=end,
                            score=score,
                            analysis_explanation=explanation,
                            recognition_metadata={
                                RecognizerResult.RECOGNIZER_NAME_KEY: self.name,
                                RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
                            },
                        )
                    )
        return EntityRecognizer.remove_duplicates(results) if len(results) > 1 else results

    def _parse_window(self, window: str) -> list:
        """phonenumbers' matches in one window, memoised (LRU) by the window's text.

        A window's matches depend only on its text, and chat data repeats windows
        (signatures, hotline numbers, templates); phonenumbers costs ~0.2 ms/window.
        """
        cache = self.__dict__.setdefault("_window_cache", OrderedDict())
        hit = cache.get(window)
        if hit is not None:
            cache.move_to_end(window)
            return hit
        found = [
            (r.start, r.end, r.score, r.analysis_explanation)
            for r in PhoneRecognizer.analyze(self, window, self.supported_entities, None)
        ]
        cache[window] = found
        if len(cache) > self.WINDOW_CACHE_SIZE:
            cache.popitem(last=False)
        return found

    @staticmethod
    def _bare_mobile_or_long(run: str) -> bool:
        return run.isdigit() and (len(run) >= 12 or (len(run) == 11 and run[0] == "1"))

    def _keep(self, text: str, start: int, end: int) -> bool:
        main = self._MAIN.match(text, start, end).group().rstrip()
        if len(self._DIGIT.findall(main)) < self.MIN_DIGITS:
            return False
        if start and (text[start - 1].isdigit() or (
            start >= 2 and text[start - 1] == "." and text[start - 2].isdigit()
        )):
            return False
        if end < len(text) and (text[end].isdigit() or (
            end + 1 < len(text) and text[end] == "." and text[end + 1].isdigit()
        )):
            return False
        return not self._bare_mobile_or_long(main)


# ----------------------------------------------------------------------------------
# CN_RESIDENT_ID
# ----------------------------------------------------------------------------------

_ID_CONTEXT = re.compile(r"身份证|身份證|证件|證件|id\s*card|identity|\bid\b|id\s*no", re.I)


class CnResidentIdRecognizer(ScoredPatternRecognizer):
    """Mainland resident identity card numbers (居民身份证号), ``CN_RESIDENT_ID``.

    18 characters: 6-digit region (province code checked), birth date YYYYMMDD (a real
    calendar date between 1900-01-01 and today), 3-digit sequence, MOD 11-2 check
    character (digit or X); optionally grouped 6-8-4 with single spaces.
    Valid check -> 1.0; wrong check but plausible region and date -> 0.6; otherwise not
    reported.  15-digit pre-1999 IDs (no check digit): 0.5 with an ID context word
    (身份证, 证件, ID card...) in the 20 characters before, else 0.3.
    """

    ENTITY = "CN_RESIDENT_ID"
    VALID_SCORE = VALID_SCORE
    BAD_CHECKSUM_SCORE = 0.6
    OLD_ID_SCORE = 0.5
    OLD_ID_NO_CONTEXT_SCORE = 0.3
    CONTEXT = ["身份证", "证件", "id card"]
    PATTERNS = [
        Pattern(
            "cn_id_18",
            NB
            + r"[1-8][0-9]{5}(?P<s>[ ]?)(?:18|19|20)[0-9]{2}(?:0[1-9]|1[0-2])"
            + r"(?:0[1-9]|[12][0-9]|3[01])(?P=s)[0-9]{3}[0-9Xx]"
            + NA,
            1.0,
        ),
        Pattern(
            "cn_id_15",
            NB + r"[1-8][0-9]{7}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])[0-9]{3}" + NA,
            0.5,
        ),
    ]
    GATE = re.compile(
        r"[1-8]\d{5} ?(?:18|19|20)\d{2}[01]\d[0-3]\d ?\d{3}[0-9Xx]|[1-8]\d{7}[01]\d[0-3]\d{4}"
    )

    def validate_result(self, pattern_text: str) -> Optional[bool]:
        """True when the MOD 11-2 check character holds (18-digit IDs only)."""
        value = pattern_text.replace(" ", "")
        return cn_id_checksum_ok(value) if len(value) == 18 else None

    def score_match(self, m, text, pattern) -> Scored:
        start, end = m.span()
        value = m.group().replace(" ", "")
        if not cn_id_fields_plausible(value):
            return None
        if len(value) == 18:
            return start, end, (
                self.VALID_SCORE if cn_id_checksum_ok(value) else self.BAD_CHECKSUM_SCORE
            )
        near = _context_near(text, start, end, _ID_CONTEXT, 20)
        return start, end, self.OLD_ID_SCORE if near else self.OLD_ID_NO_CONTEXT_SCORE


# ----------------------------------------------------------------------------------
# CREDIT_CARD: bank cards (UnionPay, Visa, Mastercard, Amex, JCB, ...)
# ----------------------------------------------------------------------------------

_CARD_CONTEXT = re.compile(
    r"卡号|卡號|银行卡|銀行卡|信用卡|储蓄卡|借记卡|银联|card|visa|master|amex|unionpay", re.I
)
_ORDER_CONTEXT = re.compile(
    r"订单|訂單|单号|單號|运单|快递|物流|流水|交易号|发票|工单|order|tracking|invoice|ticket|ref",
    re.I,
)


class BankCardRecognizer(ScoredPatternRecognizer):
    """Bank/credit card numbers, entity ``CREDIT_CARD`` (same as presidio's).

    15-19 digits, contiguous or in groups of 4 with one consistent space/dash (Amex
    4-6-5).  Works glued to CJK text, where presidio's ``\\b``-delimited pattern does not.
    Known IIN and length (62 UnionPay 16-19, 4 Visa 16/19, 51-55/2221-2720 Mastercard
    16, 34/37 Amex 15, JCB, Discover, Diners 16-19) + Luhn valid -> 1.0; + Luhn invalid
    -> 0.55; unknown IIN -> not reported, unless Luhn-valid with a card word (卡号,
    银行卡, card...) in the 12 characters before (0.7).  An order/tracking word (订单号,
    运单, 流水, order...) there, with no card word, suppresses the match; so does a bare
    15/18-digit run with a plausible resident-ID province and birth date (left to
    ``CnResidentIdRecognizer``) unless it is Luhn-valid after a card word.
    """

    ENTITY = "CREDIT_CARD"
    VALID_SCORE = VALID_SCORE
    BAD_CHECKSUM_SCORE = 0.55
    UNKNOWN_IIN_SCORE = 0.7
    CONTEXT = ["卡号", "银行卡", "信用卡", "card"]
    PATTERNS = [
        Pattern("card_plain", NB + r"[0-9]{15,19}" + NA, 0.55),
        # 12-14 digits: Maestro only, and only Luhn-valid (see score_match)
        Pattern("card_short", NB + r"(?:50|5[6-8]|6[0-9]|0604)[0-9]{10,12}" + NA, 0.55),
        Pattern(
            "card_grouped",
            NB
            + r"[0-9]{4}(?P<s>[ \-])[0-9]{4}(?P=s)[0-9]{4}(?P=s)[0-9]{4}(?:(?P=s)[0-9]{1,3})?"
            + r"(?!(?P=s)?[0-9])"
            + NA,
            0.55,
        ),
        Pattern(
            "card_amex_grouped",
            NB + r"3[47][0-9]{2}(?P<s>[ \-])[0-9]{6}(?P=s)[0-9]{5}" + NA,
            0.55,
        ),
    ]
    GATE = digit_cluster_gate(12, gap=1)

    def validate_result(self, pattern_text: str) -> Optional[bool]:
        """True when the Luhn check holds."""
        return luhn_ok(re.sub(r"[ \-]", "", pattern_text))

    def score_match(self, m, text, pattern) -> Scored:
        start, end = m.span()
        digits = re.sub(r"[ \-]", "", m.group())
        ok = luhn_ok(digits)
        card_word = _context_near(text, start, end, _CARD_CONTEXT, 12)
        if not card_word and _context_near(text, start, end, _ORDER_CONTEXT, 12):
            return None
        if len(digits) < 15:  # short numbers are everywhere: a Maestro IIN and Luhn, or nothing
            return (start, end, self.VALID_SCORE) if (ok and card_brand(digits) == "maestro") else None
        if card_brand(digits) is None:
            return (start, end, self.UNKNOWN_IIN_SCORE) if (ok and card_word) else None
        if len(digits) in (15, 18) and m.group().isdigit() and cn_id_fields_plausible(digits):
            # the resident-ID shape wins unless Luhn holds and a card word precedes
            if not (ok and card_word):
                return None
        return start, end, self.VALID_SCORE if ok else self.BAD_CHECKSUM_SCORE


# ----------------------------------------------------------------------------------
# CN_PASSPORT
# ----------------------------------------------------------------------------------

_PASSPORT_CONTEXT = re.compile(r"护照|護照|passport|旅行证|旅行證|证件号|證件號", re.I)


class CnPassportRecognizer(ScoredPatternRecognizer):
    """PRC passport numbers, ``CN_PASSPORT``: ``[EGPSD]`` + 8 digits or ``E`` + letter + 7.

    The shape alone is too common (product codes, presidio's own US_PASSPORT shape), so
    it scores 0.85 only with 护照/passport/证件号 in the 30 characters before or 10
    after, and 0.3 (below the default min_score 0.4) without.
    """

    ENTITY = "CN_PASSPORT"
    MAX_SCORE = 0.85
    NO_CONTEXT_SCORE = 0.3
    CONTEXT = ["护照", "passport"]
    PATTERNS = [
        Pattern("cn_passport", NB + r"(?:[EGPSD][0-9]{8}|E[A-HJ-NP-Z][0-9]{7})" + NA, 0.85)
    ]
    GATE = re.compile(r"[A-Z][0-9]{7}")

    def score_match(self, m, text, pattern) -> Scored:
        start, end = m.span()
        near = _context_near(text, start, end, _PASSPORT_CONTEXT, 30, 10)
        return start, end, pattern.score if near else self.NO_CONTEXT_SCORE


# ----------------------------------------------------------------------------------
# CN_LICENSE_PLATE
# ----------------------------------------------------------------------------------

PROVINCE_ABBREVIATIONS = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"


class CnLicensePlateRecognizer(ScoredPatternRecognizer):
    """Mainland vehicle plates, ``CN_LICENSE_PLATE``: 京A12345, 粤B·D12345, 沪A1234学.

    Province abbreviation + issuing-office letter + optional separator (· . - space) +
    5 characters with at least 3 digits (letters I and O are never used), or 6 for new
    energy vehicles (D/F first, or 5 digits + D/F), or 4 + 学/警/港/澳/挂/领.  0.8.
    """

    ENTITY = "CN_LICENSE_PLATE"
    MAX_SCORE = 0.8
    CONTEXT = ["车牌", "plate"]
    PATTERNS = [
        Pattern(
            "cn_plate",
            r"[" + PROVINCE_ABBREVIATIONS + r"][A-HJ-NP-Z][·•・.\- ]?"
            + r"(?P<b>[A-HJ-NP-Z0-9]{5,6}|[A-HJ-NP-Z0-9]{4}[学警港澳挂领])(?![A-Za-z0-9])",
            0.8,
        )
    ]
    GATE = re.compile(r"[" + PROVINCE_ABBREVIATIONS + r"][A-Z]")

    def score_match(self, m, text, pattern) -> Scored:
        body = m.group("b")
        if len(body) == 6:
            nev = (body[0] in "DF" and body[2:].isdigit()) or (
                body[:5].isdigit() and body[5] in "DF"
            )
            if not nev:
                return None
        elif sum(c.isdigit() for c in body) < 3:
            return None
        start, end = m.span()
        return start, end, pattern.score


# ----------------------------------------------------------------------------------
# CN_ACCOUNT_ID: QQ / WeChat / usernames / member numbers, only after a context word
# ----------------------------------------------------------------------------------

# lower case: matched on ascii_lower(text), i.e. ASCII-case-insensitively
_ACCOUNT_CTX_CJK = (
    "qq号码 qq號碼 qq号 qq號 企鹅号 微信号码 微信号 微信號 微信id 微信 vx号 v信 "
    "账号 帐号 賬號 帳號 账户名 账户 帐户 賬戶 用户名 用戶名 用户id 用户编号 "
    "会员号 会员卡号 会员id 会员编号 會員號 登录名 登录账号 登陆账号"
).split()
_ACCOUNT_CTX_ASCII = (
    r"qq|wechat(?:[ _]?id)?|weixin|vx|user[ _]?name|user[ _]?id|userid|uid"
    r"|login(?:[ _]?(?:name|id))?|account(?:[ _]?(?:id|name|number|no))?|acct"
)
ACCOUNT_CONTEXT_REGEX = (
    r"(?:(?<![a-z])(?:" + _ACCOUNT_CTX_ASCII + r")(?![a-z])|"
    + "|".join(sorted(_ACCOUNT_CTX_CJK, key=len, reverse=True))
    + r")"
)
_EXPLICIT_SEP = set(":：=#＃是为為号號码碼")
_ACCOUNT_STOPWORDS = frozenset(
    "password required please settings setting details info information number name "
    "here there this that and the with your mine login logout register signup".split()
)


class CnAccountIdRecognizer(ScoredPatternRecognizer):
    """Account identifiers after a context word, ``CN_ACCOUNT_ID``.

    Reported only when a context word (QQ, 微信/微信号/wechat/vx, 账号/帐号, 用户名/
    username, user id/uid, 会员号, account ...) is followed within a few characters
    (spaces, 是/为/:/：/=/#/号码, "is") by the value: ``我的QQ是 123456789``,
    ``微信：wxid_ab12cd``, ``username: bob_99``.  QQ: 5-11 digits not starting with 0
    (0.75).  WeChat: a letter then 5-19 of letters/digits/_/- (0.75) or a 5-20 digit
    number (0.65).  Others: 5-20 digits or 3-40 of letters/digits/_/./- (0.65); a purely
    alphabetic value needs an explicit separator (``username: alice``) and is never a
    stop word, so "account settings" is not an id.
    """

    ENTITY = "CN_ACCOUNT_ID"
    MAX_SCORE = 0.75
    CONTEXT = ["QQ", "微信", "账号", "用户名", "username"]
    PATTERNS = [
        Pattern(
            "account_after_context",
            r"(?P<c>" + ACCOUNT_CONTEXT_REGEX + r")"
            + r"(?P<sep>(?:[ \t]*(?:is|:|：|=|是|为|為|#|＃|号码|號碼|号|號)){0,2}[ \t]*)"
            + r"(?P<v>[a-z0-9][a-z0-9_.\-]{2,39})(?![a-z0-9_\-])",
            0.65,
        )
    ]
    CASELESS_PATTERNS = frozenset({"account_after_context"})
    GATE = LowerGate(_ACCOUNT_CTX_ASCII + "|" + "|".join(_ACCOUNT_CTX_CJK))
    LINE_GATE = re.compile(ACCOUNT_CONTEXT_REGEX)
    LINE_GATE_ON_LOWER = True

    def score_match(self, m, text, pattern) -> Scored:
        start, end = m.span("v")
        value = m.group("v")
        stripped = value.rstrip(".-")
        end -= len(value) - len(stripped)
        value = stripped
        if len(value) < 3:
            return None
        ctx = m.group("c").lower()
        explicit = any(ch in _EXPLICIT_SEP for ch in m.group("sep"))
        ascii_ctx = ctx.isascii()
        if "qq" in ctx or "企鹅" in ctx:
            ok = value.isdigit() and value[0] != "0" and 5 <= len(value) <= 11
            return (start, end, 0.75) if ok else None
        if value.isdigit():
            return (start, end, 0.65) if 5 <= len(value) <= 20 else None
        if not explicit and (ascii_ctx or len(value) < 5) and value.isalpha():
            return None
        if value.lower() in _ACCOUNT_STOPWORDS:
            return None
        wechat = any(w in ctx for w in ("微信", "wechat", "weixin", "vx", "v信"))
        if wechat:
            ok = (
                value[0].isalpha()
                and 6 <= len(value) <= 20
                and re.fullmatch(r"[A-Za-z0-9_\-]+", value) is not None
            )
            return (start, end, 0.75) if ok else None
        return start, end, 0.65


# ----------------------------------------------------------------------------------
# EMAIL_ADDRESS and IP_ADDRESS that work glued to CJK text
# ----------------------------------------------------------------------------------


class CjkSafeEmailRecognizer(ScoredPatternRecognizer):
    """E-mail addresses delimited by ASCII lookarounds, ``EMAIL_ADDRESS``.

    presidio's pattern uses ``\\b`` and ``\\w`` (which includes CJK), so in
    ``邮箱zhang.san@example.com谢谢`` it grabs ``邮箱zhang...com谢谢`` and then drops it as
    an invalid domain.  Here local and domain parts are ASCII; 1.0 when the domain ends in
    a public suffix (tldextract's bundled list, as presidio), else 0.6.
    """

    ENTITY = "EMAIL_ADDRESS"
    CONTEXT = ["email", "邮箱", "e-mail"]
    PATTERNS = [
        Pattern(
            "email_ascii",
            r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]{1,64}@"
            r"(?P<d>(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24})"
            r"(?![A-Za-z0-9\-])",
            0.6,
        )
    ]
    GATE = re.compile("@")

    def score_match(self, m, text, pattern) -> Scored:
        start, end = m.span()
        local = m.group()[: m.start("d") - start - 1]
        if local[0] == "." or local[-1] == "." or ".." in local:
            return None
        ext = tldextract.extract(m.group("d"))
        return start, end, VALID_SCORE if (ext.suffix and ext.domain) else pattern.score


class CjkSafeIpRecognizer(ScoredPatternRecognizer):
    """IPv4 and IPv6 addresses delimited by ASCII lookarounds, ``IP_ADDRESS`` (0.6).

    IPv4 without leading zeros, optional /prefix; IPv6 candidates (hex, colons, dots,
    optional %zone and /prefix) must parse with ``ipaddress``, so times like
    ``10:30:00`` and MAC addresses are not IPs.
    """

    ENTITY = "IP_ADDRESS"
    MAX_SCORE = 0.6
    _OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
    CONTEXT = ["ip", "ipv4", "ipv6", "地址"]
    PATTERNS = [
        Pattern(
            "ipv4",
            r"(?<![0-9A-Za-z.])(?:" + _OCTET + r"\.){3}" + _OCTET
            + r"(?:/(?:3[0-2]|[12]?[0-9]))?(?![0-9A-Za-z])(?![.][0-9])",
            0.6,
        ),
        Pattern(
            "ipv6",
            r"(?<![0-9A-Za-z_:.])(?=[0-9A-Fa-f.]*:[0-9A-Fa-f.]*:)[0-9A-Fa-f:.]{2,45}"
            r"(?:%[0-9A-Za-z]{1,15})?(?:/[0-9]{1,3})?(?![0-9A-Za-z_:%/])",
            0.6,
        ),
    ]
    # IPv4 needs digit.digit; a valid IPv6 has "::" or 7 colons (6 + dotted IPv4)
    GATE = re.compile(r"\d\.\d|::|[0-9A-Fa-f]:[0-9A-Fa-f]{1,4}:")

    # Addresses that identify no one: loopback, unspecified, multicast, reserved, link-local,
    # and the documentation ranges (which the pii stage's pseudonyms also come from).
    _DOC_NETS = tuple(ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24",
                                                        "2001:db8::/32"))

    @classmethod
    def _anonymous(cls, addr: str) -> bool:
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return False
        # (IPv6 "reserved" covers most unallocated space, where real hosts may yet appear)
        return (ip.is_loopback or ip.is_unspecified or ip.is_multicast or ip.is_link_local
                or (ip.version == 4 and ip.is_reserved)
                or any(ip.version == n.version and ip in n for n in cls._DOC_NETS))

    def score_match(self, m, text, pattern) -> Scored:
        start, end = m.span()
        if pattern.name == "ipv4":
            if self._anonymous(m.group().split("/", 1)[0]):
                return None
            return start, end, pattern.score
        value = m.group()
        stripped = value.rstrip(".")
        end -= len(value) - len(stripped)
        addr = stripped.split("/", 1)[0].split("%", 1)[0]
        if addr.count(":") < 2 or addr.strip(":") == "":
            return None
        try:
            ipaddress.IPv6Address(addr)
        except ValueError:
            return None
        if self._anonymous(addr):
            return None
        return start, end, pattern.score


# ----------------------------------------------------------------------------------
# URL_WITH_SECRET and API_KEY
# ----------------------------------------------------------------------------------

#: URL query/fragment/matrix parameter names (split on _ - . and camelCase) whose values
#: are secrets.  Every entry contains one of _SECRET_NEEDLES (the gate relies on it).
SECRET_PARAM_PARTS = frozenset(
    "token key secret sig sign signature password passwd pass pwd credential credentials "
    "apikey accesskey accesstoken authtoken sessionid session sessid phpsessid "
    "jsessionid auth authorization".split()
)
_SECRET_NEEDLES = r"token|key|secret|sig|pass|pwd|credential|sess|auth"
_URL_CHARS = r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]"
_PARAM = re.compile(r"[?&#;]([A-Za-z0-9_.\-\[\]]{1,64})=([^&#;]*)")
_CAMEL = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")


def _is_placeholder(value: str) -> bool:
    v = value.lower()
    return (
        len(set(v)) <= 2
        or v[0] in "<{$%*["
        or any(p in v for p in ("xxxx", "****", "your", "example", "placeholder", "redacted"))
        or v in ("null", "none", "true", "false", "undefined", "string", "changeme")
    )


def _param_is_secret(name: str) -> bool:
    parts = set()
    for chunk in re.split(r"[_\-.\[\]]+", name):
        parts.add(chunk.lower())
        parts.update(p.lower() for p in _CAMEL.findall(chunk))
    return bool(parts & SECRET_PARAM_PARTS)


class UrlWithSecretRecognizer(ScoredPatternRecognizer):
    """URLs that carry credentials, ``URL_WITH_SECRET`` (span: the whole URL).

    ``scheme://user:password@host`` -> 1.0; a token-like user name alone
    (``https://ghp_xxx@github.com``, 16+ chars with a digit) -> 0.95; a query, fragment or
    ``;`` parameter whose name has a secret part (token, access_token, api_key, apiKey,
    sig, sign, signature, X-Amz-Signature, password, sessionid, auth ...) and a value of
    6+ characters that is not a placeholder -> 0.95.  Other URLs are left to presidio's
    ``URL``.  Trailing punctuation and unbalanced ``)``/``]`` are not part of the URL.
    """

    ENTITY = "URL_WITH_SECRET"
    CONTEXT = ["url", "link", "链接"]
    PATTERNS = [
        Pattern(
            "url",
            r"(?<![A-Za-z0-9+.\-])[A-Za-z][A-Za-z0-9+.\-]{1,15}://" + _URL_CHARS + r"+",
            0.95,
        )
    ]
    _NEEDLES = re.compile(_SECRET_NEEDLES, re.IGNORECASE)
    LINE_GATE = re.compile("://")

    @classmethod
    def GATE_FN(cls, text: str) -> bool:  # noqa: N802
        """Gate: '://' and either '@' or a secret-ish parameter word anywhere."""
        return "://" in text and ("@" in text or cls._NEEDLES.search(text) is not None)

    def score_match(self, m, text, pattern) -> Scored:
        start = m.start()
        url = m.group()
        while url and url[-1] in ".,;:!?'\"":
            url = url[:-1]
        while url and url[-1] in ")]" and url.count(url[-1]) > url.count(
            "(" if url[-1] == ")" else "["
        ):
            url = url[:-1]
            while url and url[-1] in ".,;:!?'\"":
                url = url[:-1]
        end = start + len(url)
        try:
            netloc = urlsplit(url).netloc
        except ValueError:
            return None
        if "@" in netloc:
            userinfo = netloc.rsplit("@", 1)[0]
            user, _, password = userinfo.partition(":")
            if password:
                return start, end, VALID_SCORE
            if len(user) >= 16 and any(c.isdigit() for c in user) and not _is_placeholder(user):
                return start, end, 0.95
        after_host = url.find(netloc) + len(netloc) if netloc else 0
        for pm in _PARAM.finditer(url, after_host):
            value = unquote(pm.group(2))
            if len(value) >= 6 and not _is_placeholder(value) and _param_is_secret(pm.group(1)):
                return start, end, pattern.score
        return None


_KEY_NAMES = (
    r"api[_\-]?key|app[_\-]?(?:key|secret)|access[_\-]?key(?:[_\-]?id)?"
    r"|secret[_\-]?(?:access[_\-]?)?key|client[_\-]?secret|private[_\-]?key"
    r"|(?:access|auth|refresh|api|bearer|session)[_\-]?token|token|secret"
    r"|password|passwd|pwd|密码|密碼|口令|密钥|密鑰|秘钥|令牌"
)
_SECRET_VALUE_STOP = frozenset(
    "true false null none undefined required optional string number boolean "
    "password secret token hidden empty".split()
)


class ApiKeyRecognizer(ScoredPatternRecognizer):
    """API keys, tokens and private keys in free text, ``API_KEY``.

    Provider formats (1.0): OpenAI/Anthropic ``sk-``/``sk-proj-``... (20+ chars with
    letters and digits), Stripe ``sk_live_``/``rk_live_``, AWS ``AKIA``/``ASIA`` + 16,
    GitHub ``ghp_``/``gho_``/``ghu_``/``ghs_``/``ghr_`` + 36+ and ``github_pat_``, Slack
    ``xox[abposre]-``, Google ``AIza`` + 35, PEM ``-----BEGIN ... PRIVATE KEY-----``
    blocks through the END line.  JWTs (``eyJ...``, 0.95), ``Bearer <token>`` (the token,
    0.9), a BEGIN line with its base64 lines but no END (0.9), and assignments such as
    ``api_key=...``, ``"client_secret": "..."``, ``password: ...``, ``密码：...`` (the value:
    0.85 with letters and digits and 8+ chars, 0.75 for 6-7, 0.5 for 12+ letters only;
    placeholders and stop words such as ``<your-key>``, ``xxxx``, ``true`` are skipped).
    """

    ENTITY = "API_KEY"
    CONTEXT = ["key", "token", "secret", "密钥"]
    MULTILINE_PATTERNS = frozenset({"private_key_block", "private_key_truncated"})
    PATTERNS = [
        Pattern(
            "openai_like",
            r"sk-(?<![A-Za-z0-9_\-]sk-)(?:proj-|svcacct-|admin-|ant-(?:[a-z]{3}[0-9]{2}-)?)?"
            r"(?P<v2>[A-Za-z0-9_\-]{20,})",
            1.0,
        ),
        Pattern("stripe", r"[sr]k_(?<![A-Za-z0-9_]..._)(?:live|test)_[A-Za-z0-9]{16,}", 1.0),
        Pattern(
            "aws_access_key",
            r"A(?:KIA|SIA|BIA|CCA)(?<![A-Za-z0-9]....)[A-Z0-9]{16}(?![A-Za-z0-9])",
            1.0,
        ),
        Pattern(
            "github",
            r"g(?<![A-Za-z0-9_]g)(?:h[pousr]_[A-Za-z0-9]{36,255}|ithub_pat_[A-Za-z0-9_]{22,255})"
            r"(?![A-Za-z0-9_])",
            1.0,
        ),
        Pattern("slack", r"xox(?<![A-Za-z0-9]xox)[abposre]-[A-Za-z0-9\-]{10,}", 1.0),
        Pattern("google", r"AIza(?<![A-Za-z0-9_\-]AIza)[0-9A-Za-z_\-]{35}(?![A-Za-z0-9_\-])", 1.0),
        Pattern(
            "jwt",
            r"eyJ(?<![A-Za-z0-9_\-]eyJ)[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",
            0.95,
        ),
        Pattern(
            "private_key_block",
            r"-----BEGIN (?:[A-Z0-9]+ ){0,3}PRIVATE KEY(?: BLOCK)?-----[\s\S]{0,16384}?"
            r"-----END (?:[A-Z0-9]+ ){0,3}PRIVATE KEY(?: BLOCK)?-----",
            1.0,
        ),
        Pattern(
            "private_key_truncated",
            r"-----BEGIN (?:[A-Z0-9]+ ){0,3}PRIVATE KEY(?: BLOCK)?-----"
            r"(?:\r?\n(?:[A-Za-z0-9+/=]{8,120}|[A-Za-z][A-Za-z\-]*: [^\r\n]{1,100}|[ \t]*)){0,400}",
            0.9,
        ),
        # the next two are matched on ascii_lower(text): lower-case literals
        Pattern(
            "bearer",
            r"bearer(?<![a-z]bearer)[ \t]+(?P<v>[a-z0-9\-._~+/]{16,}=*)",
            0.9,
        ),
        Pattern(
            "assignment",
            r"(?<![a-z0-9])(?:" + _KEY_NAMES + r")[\"']?[ \t]*(?::|=|：|是|为|為)[ \t]*[\"']?"
            r"(?P<v>[a-z0-9!#$%()*+\-./:<=>?@\[\]^_{|}~]{6,200})",
            0.85,
        ),
    ]
    CASELESS_PATTERNS = frozenset({"bearer", "assignment"})
    _NEEDLES = (
        r"sk-|sk_|rk_|akia|asia|abia|acca|gh[pousr]_|github_pat_|xox|aiza|eyj|bearer|begin"
        r"|(?:api|app|access|private)[_\-]?key|token|secret|passw|pwd"
        r"|密码|密碼|口令|密钥|密鑰|秘钥|令牌"
    )
    GATE = LowerGate(_NEEDLES)
    LINE_GATE = re.compile(_NEEDLES)
    LINE_GATE_ON_LOWER = True

    def score_match(self, m, text, pattern) -> Scored:
        name = pattern.name
        if name == "openai_like":
            body = m.group("v2")
            if not (re.search(r"[A-Za-z]", body) and re.search(r"[0-9]", body)):
                return None
            return m.start(), m.end(), pattern.score
        if name == "bearer":
            token = m.group("v")
            if not (re.search(r"[A-Za-z]", token) and re.search(r"[0-9]", token)):
                return None
            return m.start("v"), m.end("v"), pattern.score
        if name == "assignment":
            start, end = m.span("v")
            value = m.group("v")
            stripped = value.rstrip(".,:;!?)]}>'\"")
            end -= len(value) - len(stripped)
            value = stripped
            if len(value) < 6 or _is_placeholder(value) or value.lower() in _SECRET_VALUE_STOP:
                return None
            has_alpha = re.search(r"[A-Za-z]", value) is not None
            has_digit = re.search(r"[0-9]", value) is not None
            if has_alpha and has_digit:
                return start, end, 0.85 if len(value) >= 8 else 0.75
            if has_alpha and len(value) >= 12:
                return start, end, 0.5
            return None
        return m.start(), m.end(), pattern.score


# ----------------------------------------------------------------------------------
# presidio recognizers made window-aware (same results, far less scanning)
# ----------------------------------------------------------------------------------

_WS = regex.compile(r"\s")
_WS_REVERSE = regex.compile(r"\s", getattr(regex, "REVERSE", 0))


def whitespace_free_windows(text: str, hint: "regex.Pattern") -> List[Tuple[int, int]]:
    """Maximal runs of non-whitespace characters that contain a match of ``hint``."""
    windows = []
    pos = 0
    while True:
        m = hint.search(text, pos)
        if m is None:
            return windows
        before = _WS_REVERSE.search(text, 0, m.start())
        after = _WS.search(text, m.end())
        a = before.end() if before else 0
        b = after.start() if after else len(text)
        windows.append((a, b))
        pos = b


class _WhitespaceFreeWindowsMixin:
    """Run a presidio pattern recognizer only on whitespace-free runs containing HINT.

    Exact when no pattern can match whitespace and every match contains a HINT match:
    a match then lies inside one run, and at a run's edges ``\\b`` and the lookarounds
    see whitespace in the full text exactly as they see the string's edge in the window.
    """

    HINT: "regex.Pattern"

    def analyze(self, text, entities=None, nlp_artifacts=None, regex_flags=None):  # noqa: D102
        results = []
        for a, b in whitespace_free_windows(text, self.HINT):
            for r in super().analyze(text[a:b], entities, nlp_artifacts, regex_flags):
                r.start += a
                r.end += a
                results.append(r)
        return results


#: CJK ideographs, kana, hangul, CJK and full-width punctuation
_CJK = re.compile(r"[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef]")


class WindowedUrlRecognizer(_WhitespaceFreeWindowsMixin, UrlRecognizer):
    """presidio's ``UrlRecognizer`` on runs holding ``x.tld``; cut at glued CJK text.

    presidio's path part ``[^\\s()<>"']*`` runs on into the Chinese text after a URL
    (``见https://a.com/x谢谢`` -> ``...x谢谢``); a match is cut before its first CJK or
    full-width character (CJK paths are usually percent-encoded in shared links).
    """

    # every URL pattern holds [a-z0-9.-] '.' <tld>, and all TLD alternatives start
    # with a letter; same engine and flags as presidio (regex, IGNORECASE)
    HINT = regex.compile(r"[a-z0-9.\-]\.[a-z]", regex.IGNORECASE | regex.DOTALL | regex.MULTILINE)

    def analyze(self, text, entities=None, nlp_artifacts=None, regex_flags=None):  # noqa: D102
        results = []
        for r in super().analyze(text, entities, nlp_artifacts, regex_flags):
            cjk = _CJK.search(text, r.start, r.end)
            if cjk is not None:
                r.end = cjk.start()
            if r.end > r.start:
                results.append(r)
        return results


class WindowedEmailRecognizer(_WhitespaceFreeWindowsMixin, EmailRecognizer):
    """presidio's ``EmailRecognizer`` on runs holding ``@``; leading CJK text dropped.

    presidio's local part uses ``\\w``, which includes CJK, so ``邮箱wang@163.com`` is
    matched from ``邮``; a leading run of CJK characters is cut off the match when an
    ASCII local part remains (internationalised addresses stay as presidio reports them).
    """

    HINT = regex.compile("@")

    def analyze(self, text, entities=None, nlp_artifacts=None, regex_flags=None):  # noqa: D102
        results = []
        for r in super().analyze(text, entities, nlp_artifacts, regex_flags):
            start = r.start
            while start < r.end and _CJK.match(text, start):
                start += 1
            at = text.find("@", start, r.end)
            if start > r.start and at > start and text[start:at].isascii():
                r.start = start
            results.append(r)
        return results


# ----------------------------------------------------------------------------------
# Fast-path gates for presidio's own pattern recognizers
# ----------------------------------------------------------------------------------


def presidio_base_class(cls: type) -> type:
    """The presidio predefined recognizer class a (possibly windowed) class derives from."""
    for c in cls.__mro__:
        if c.__module__.startswith("presidio_analyzer.predefined_recognizers"):
            return c
    return cls


def presidio_fingerprint(recognizer) -> str:
    """Hash of presidio's version and a recognizer's class, patterns and flags.

    The gates below were derived by reading presidio 2.2.366's patterns (and code); a
    recognizer whose fingerprint differs (presidio upgraded) gets no gate and is not
    windowed, i.e. it runs exactly as presidio ships it, on every text.
    """
    h = hashlib.sha256(f"{PRESIDIO_VERSION}\0{presidio_base_class(type(recognizer)).__name__}".encode())
    for p in getattr(recognizer, "patterns", []):
        h.update(f"\0{p.name}\0{p.regex}\0{p.score}".encode())
    h.update(str(int(getattr(recognizer, "global_regex_flags", 0) or 0)).encode())
    return h.hexdigest()[:16]


def _rx(src: str) -> "regex.Pattern":
    return regex.compile(src, regex.IGNORECASE | regex.DOTALL | regex.MULTILINE)


def _tight(n: int) -> "regex.Pattern":
    # n digits, each at most one character from the next: every digit pattern of
    # these recognizers allows at most one separator ([- ]?, [- .]) between digits
    return regex.compile(r"\d(?:\D?\d){%d}" % (n - 1))


#: presidio class name -> gate (a compiled regex that every reportable match implies).
PRESIDIO_GATES = {
    # \b(?!1\d{12}(?!\d))(4|5[0-5]|6|1|3)ddd[- ]?ddd(d)[- ]?ddd(d)[- ]?ddd(dd)\b
    "CreditCardRecognizer": _rx(r"(?<!\d)[13456]\d{3}[\- ]?\d{3}"),
    "UsBankRecognizer": _tight(8),  # [0-9]{8,17}
    "UsLicenseRecognizer": regex.compile(r"\d"),  # every alternative holds a digit
    "UsItinRecognizer": _rx(r"(?<!\d)9\d{2}[\- ]?\d{2}[\- ]?\d{4}(?!\d)"),
    "UsPassportRecognizer": _tight(8),  # [0-9]{9} or [A-Z][0-9]{8}
    "UsSsnRecognizer": _rx(
        r"(?<!\d)(?:\d{3}[\- .]\d{2}[\- .]\d{4}|\d{5}-\d{4}|\d{3}-\d{6}|\d{9})(?!\d)"
    ),
    "NhsRecognizer": _rx(r"(?<!\d)\d{3}[\- ]?\d{3}[\- ]?\d{4}(?!\d)"),
    "CryptoRecognizer": _rx(r"[0-9a-z]{26}"),  # (bc1|[13]) + 25..59 alnum
    # each date pattern, loosened: d/d, yyyy-d, d-d-yyyy, d.d.yy, MMM next to -d / d-
    "DateRecognizer": _rx(
        r"\d/\d|\d{4}-\d|\d-\d{1,2}-\d{4}|\d\.\d{1,2}\.\d{2}"
        r"|(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)-\d"
        r"|\d-(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)"
    ),
    "EmailRecognizer": regex.compile("@"),
    "IbanRecognizer": _rx(r"[a-z]{2}[0-9]{2}"),
    # IPv4 (and the mapped/embedded forms) hold d.d; IPv6 forms hold "::" or h:h:
    "IpRecognizer": _rx(r"\d\.\d|::|[0-9a-f]:[0-9a-f]{1,4}:"),
    "MedicalLicenseRecognizer": _rx(r"[a-z][a-z9]\d{7}"),
    "MacAddressRecognizer": _rx(
        r"[0-9a-f]{2}([:\-])(?:[0-9a-f]{2}\1){4}[0-9a-f]{2}|[0-9a-f]{4}\.[0-9a-f]{4}\.[0-9a-f]{4}"
    ),
    "UuidRecognizer": _rx(r"[0-9a-f]{8}-[0-9a-f]{4}"),
    "UrlRecognizer": WindowedUrlRecognizer.HINT,
}

#: fingerprints of the presidio 2.2.366 recognizers the gates above were derived from
PRESIDIO_FINGERPRINTS = {
    "CreditCardRecognizer": "5bf70e774fe64a26",
    "UsBankRecognizer": "8f03e6a590d431e5",
    "UsLicenseRecognizer": "ab6d52040479d3ca",
    "UsItinRecognizer": "0b27b5bb79c0a0ec",
    "UsPassportRecognizer": "d8d306168c4fff58",
    "UsSsnRecognizer": "481091a355d6b8c6",
    "NhsRecognizer": "1009750f9fd07bac",
    "CryptoRecognizer": "226ffd6433c545bf",
    "DateRecognizer": "913bfb2c6c8149d1",
    "EmailRecognizer": "5180227a7f71bab7",
    "IbanRecognizer": "63f6556011dd7a41",
    "IpRecognizer": "8fd20d7125228ab4",
    "MedicalLicenseRecognizer": "06c7e26516c1a9b8",
    "MacAddressRecognizer": "0f5ba439dafc2215",
    "UuidRecognizer": "5830c009cbfc67e2",
    "UrlRecognizer": "d526015e060daace",
}


class CuePhoneRecognizer(ScoredPatternRecognizer):
    """Phone numbers in any national layout, ``PHONE_NUMBER`` (0.6), reported only next to
    a cue: a word before the number (Phone:, Tel, Mobile, Desk, call me on, answering at,
    电话, 手机 ...; within 25 characters) or a label right after it, as address blocks write
    them (``781 1704 office``, ``+447700 208 815-Fax``). Catches the short international
    layouts libphonenumber cannot place without a region (``467 3395``, ``(37) 788-063``,
    ``60-56-85-91``). 7-15 digits; dates (2023-10-05, 05.10.2023) are never phones.
    """

    ENTITY = "PHONE_NUMBER"
    MAX_SCORE = 0.6
    CUE = re.compile(r"(?<![A-Za-z])(?:phone|tel\b|tel[.:]|telephone|mobile|cell\b|fax|desk\b|call(?:ed)?\b|dial"
                     r"|whatsapp|sms|registered\b|(?:answering|reach|text|message[sd]?|contact)(?: me| us)? (?:at|on|to)\b)"
                     r"|电话|手机|致电|拨打", re.IGNORECASE | re.ASCII)
    # a label after the number: "-Office", " fax", ", mobile" (address-block style)
    AFTER = re.compile(r"[ \t]*[-,\\]?[ \t]*(?:office|fax|mobile|cell|home|work|desk|phone|tel)(?![A-Za-z])",
                       re.IGNORECASE | re.ASCII)
    PATTERNS = [
        Pattern(
            "cue_phone",
            r"(?<![0-9A-Za-z+])(?:\+\d{1,3}[ .-]?)?(?:\(0?\d{1,4}\)[ .-]?)?\d{2,12}(?:[ .-]\d{2,8}){0,4}"
            r"(?:\s?(?:x|ext\.?)\s?\d{1,5})?(?![0-9A-Za-z])",
            0.6,
        ),
    ]
    MULTILINE_PATTERNS = frozenset({"cue_phone"})  # the cue may sit on the line before
    # every match needs a cue in the text: a CUE word or an AFTER label (superset: no lookarounds)
    GATE = LowerGate(r"phone|tel|mobile|cell|fax|desk|call|dial|whatsapp|sms|registered|answering|reach|text"
                     r"|message|contact|电话|手机|致电|拨打|office|home|work")
    _DATE = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4}")

    def score_match(self, m, text, pattern) -> Scored:
        start, end = m.span()
        value = m.group()
        core = re.split(r"\s?(?:x|ext\.?)\s?", value)[0]
        n = sum(c.isdigit() for c in core)
        if not 7 <= n <= 15 or self._DATE.fullmatch(core):
            return None
        if not (self.CUE.search(text, max(0, start - 25), start) or self.AFTER.match(text, end)):
            return None
        return start, end, pattern.score


def team_recognizers(supported_language: str = "en") -> List[EntityRecognizer]:
    """One instance of every team recognizer for ``supported_language``."""
    return [
        cls(supported_language=supported_language)
        for cls in (
            CnPhoneRecognizer,
            CnResidentIdRecognizer,
            BankCardRecognizer,
            CnPassportRecognizer,
            CnLicensePlateRecognizer,
            CnAccountIdRecognizer,
            CjkSafeEmailRecognizer,
            CjkSafeIpRecognizer,
            UrlWithSecretRecognizer,
            ApiKeyRecognizer,
            CuePhoneRecognizer,
        )
    ]


def recognizer_gate(recognizer):
    """The fast-path gate of a recognizer, or None when it must always run.

    A gate is a compiled regex (open when ``gate.search(text)`` matches) or a callable
    ``gate(text) -> bool``; gates are shared objects so a caller can evaluate each one
    once per text.
    """
    cls = type(recognizer)
    if isinstance(recognizer, (ScoredPatternRecognizer, WindowedPhoneRecognizer)):
        gate_fn = getattr(cls, "GATE_FN", None)
        return gate_fn if gate_fn is not None else getattr(cls, "GATE", None)
    name = presidio_base_class(cls).__name__
    if PRESIDIO_FINGERPRINTS.get(name) != presidio_fingerprint(recognizer):
        return None
    return PRESIDIO_GATES.get(name)


def recognizer_max_score(recognizer) -> float:
    """Highest score a recognizer can report (no context enhancement: no-op NLP)."""
    declared = getattr(type(recognizer), "MAX_SCORE", None)
    if declared is not None and isinstance(recognizer, (ScoredPatternRecognizer, WindowedPhoneRecognizer)):
        return float(declared)
    if isinstance(recognizer, PhoneRecognizer):
        return float(recognizer.SCORE)
    if isinstance(recognizer, PatternRecognizer):
        overridden = type(recognizer).validate_result is not PatternRecognizer.validate_result
        if overridden:
            return 1.0
        return max((p.score for p in recognizer.patterns), default=1.0)
    return 1.0


def clone_for_language(recognizer, language: str):
    """A copy of a recognizer that answers for ``language`` (its own id)."""
    clone = copy.deepcopy(recognizer)
    clone.supported_language = language
    clone._id = f"{clone.name}_{id(clone)}"
    return clone


__all__: Iterable[str] = [
    "ApiKeyRecognizer",
    "BankCardRecognizer",
    "CjkSafeEmailRecognizer",
    "CjkSafeIpRecognizer",
    "CnAccountIdRecognizer",
    "CnLicensePlateRecognizer",
    "CnPassportRecognizer",
    "CnPhoneRecognizer",
    "CnResidentIdRecognizer",
    "ScoredPatternRecognizer",
    "UrlWithSecretRecognizer",
    "WindowedEmailRecognizer",
    "WindowedPhoneRecognizer",
    "WindowedUrlRecognizer",
    "card_brand",
    "cn_id_check_char",
    "cn_id_checksum_ok",
    "cn_id_fields_plausible",
    "luhn_ok",
    "team_recognizers",
]
