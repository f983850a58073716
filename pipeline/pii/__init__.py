"""PII detection for chat turns (Chinese and English), built on presidio-analyzer.

``pipeline.pii.analyzer.PiiAnalyzer`` is the entry point; ``pipeline.pii.recognizers``
holds the team's recognizers.  Importing this package is cheap: presidio (which pulls
in torch/transformers, ~4 s) is imported only by those two modules.
"""
import os

# tldextract (used by presidio's e-mail recognizer) fetches the public-suffix list over
# the network unless this is set before it is imported; the bundled snapshot is used.
os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")

# presidio also knows these, but in chat data they are content, not personal data: every
# date, every plain link, UUIDs and MAC addresses in code. Name them in `entities` to use them.
NOT_BY_DEFAULT = {"URL", "DATE_TIME", "UUID", "MAC_ADDRESS"}
_ANALYZERS: dict = {}


def get_analyzer(entities=None, spacy: bool = True, min_score: float = 0.4, names: bool = True, name_mode: str = "personal"):
    """One analyzer per (entities, spacy, min_score, names) and process: building one compiles every
    recognizer. No entities: every entity the analyzer knows except NOT_BY_DEFAULT."""
    from .analyzer import PiiAnalyzer

    if not entities:
        key_all = ("__all__", spacy, min_score, names, name_mode)
        if key_all not in _ANALYZERS:
            _ANALYZERS[key_all] = PiiAnalyzer(entities=None, spacy=spacy, min_score=min_score, names=names,
                                              name_mode=name_mode)
        entities = [e for e in _ANALYZERS[key_all].entity_types if e not in NOT_BY_DEFAULT]
    key = (tuple(sorted(entities)), spacy, min_score, names, name_mode)
    if key not in _ANALYZERS:
        _ANALYZERS[key] = PiiAnalyzer(entities=list(entities), spacy=spacy, min_score=min_score, names=names,
                                      name_mode=name_mode)
    return _ANALYZERS[key]
