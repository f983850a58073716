"""Whether a Latin word inside Chinese text is a person's name (我同事Jason说, 导演ChristopherNolan):
used by ``names.ChineseNames`` in ``personal`` mode on the words its tagger marks. The English
model's word lists and faker's name lists decide (docs/stages/pii.md#names-and-addresses)."""
from __future__ import annotations

import re

from pipeline.pii.en_names import _NOUN_NAMES as _EVERYDAY_FIRST  # given names that are everyday words
from pipeline.pii.en_names import english_first_names, english_vocabulary, name_gazetteer, place_gazetteer

_CAMEL = re.compile(r"(?:Mc|Mac|O['’])?[A-Z][a-z]+|[a-z]+|[A-Z]+(?![a-z])")


class LatinNames:
    """Whether a Latin word inside Chinese text is written like a person's name: a given name or a
    surname of faker's lists that is no English word (Jason, Svensson; not Mark, Panda, Model), or
    a given name run together with a surname (ChristopherNolan, JohnMilius, stephengarrett).
    English given names are common in Chinese office chats (我同事Jason说); products and code
    (MetaClub, ChatGPT, Jira), game handles (Sky, Grubby) and all-capital words stay."""

    _SUFFIXES = (("ies", "y"), ("es", ""), ("s", ""), ("ed", ""), ("ed", "e"), ("ing", ""), ("ing", "e"),
                 ("ly", ""), ("er", ""), ("ers", ""), ("ment", ""), ("ion", ""), ("ion", "e"))

    def __init__(self, nlp):
        common, nouns = english_vocabulary(nlp)
        first, last = name_gazetteer()
        self._words = nouns | common
        self._names = frozenset(w.lower() for w in first | last)
        english = english_first_names()
        # an English given name that is also a noun (Robert, Linda are in the model's noun list)
        # counts; one that is an everyday word (Mark, Rose, Bill) or a verb or adjective does not
        self._first = frozenset(f.lower() for f in first if f.lower() not in common and (
            not self.is_word(f) or (f in english and f.lower() not in _EVERYDAY_FIRST)))
        self._last = frozenset(n.lower() for n in last if len(n) >= 3 and not self.is_word(n))
        self._places = frozenset(p.lower() for p in place_gazetteer())

    def is_word(self, w: str) -> bool:
        """In the English model's vocabulary, inflected forms included."""
        low = w.lower()
        if low in self._words:
            return True
        return any(low.endswith(suf) and len(low) - len(suf) >= 3 and low[:-len(suf)] + base in self._words
                   for suf, base in self._SUFFIXES)

    def is_name(self, word: str) -> bool:
        tokens = re.findall(r"[A-Za-z'’]+", word)
        if not tokens or re.search(r"[0-9_]", word):
            return False
        for tok in tokens:
            parts = _CAMEL.findall(tok)
            if len(parts) == 1 and tok.islower() and len(tok) >= 7 and not self.is_word(tok):
                # run together in lower case: a given name, then a surname or a word that is no
                # English word (markbradford, not developer)
                cut = next((k for k in range(len(tok) - 3, 2, -1) if tok[:k] in self._first and (
                    tok[k:] in self._names or not self.is_word(tok[k:]))), 0)
                parts = [tok[:cut], tok[cut:]] if cut else parts
            if len(parts) == 1:
                p = parts[0]
                if not p[:1].isupper() or p.isupper() or len(p) < 3 or p.lower() in self._places or (
                        p.lower() not in self._first and p.lower() not in self._last):
                    return False
            elif parts[0].lower() not in self._first or any(
                    self.is_word(p) and p.lower() not in self._names for p in parts[1:]):
                return False
        return True

