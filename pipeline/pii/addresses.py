"""Street-level addresses (LOCATION) in Chinese and English text.

A city, province or country name alone is not personal data and is left alone: an address is
found only when it reaches street level (a road, lane, village or compound, usually with a number).

Chinese: administrative components (省 / 自治区 / 市 / 州 / 区 / 县 / 旗 / 镇 / 乡 / 街道) followed by a
street component (路 / 街 / 大道 / 巷 / 弄 / 胡同 / 村 / 小区 ...) and numbers (号 / 栋 / 单元 / 室 / 座),
or a street with a number alone (中关村大街1号). Where the match starts is fixed with cpca's table of
the 3,500 mainland divisions: the first known division name (北京 / 海淀区) in the leading component
starts the address, so 寄到 / 住在 in front of it stay; a component that is no known name (faker's
invented ones) starts after a cue word.

English and other Latin-letter addresses (42 Oak Street, 56 rue La Boétie, Kiannonkatu 98, P.O. Box
287, with units, towns and postcodes after them): ``pipeline.pii.en_addresses``.
"""
from __future__ import annotations

import csv
import io
import re
from functools import lru_cache
from typing import List, Sequence, Tuple

from pipeline.pii.en_addresses import find_en_addresses

Span = Tuple[int, int, float]
_HAN = "\u4e00-\u9fff"
ADMIN_SUFFIXES = ("特别行政区", "自治区", "自治州", "自治县", "地区", "街道", "省", "市", "州", "盟", "区", "县", "旗", "镇", "乡")
STREET_SUFFIXES = ("大街", "大道", "胡同", "小区", "花园", "公寓", "新村", "路", "街", "巷", "弄", "村", "里")
_NUM = "[0-9０-９一二三四五六七八九十百零]+"
_ADMIN = "(?:[" + _HAN + "]{1,8}?(?:" + "|".join(ADMIN_SUFFIXES) + "))"
_STREET = "(?:[" + _HAN + "0-9]{1,10}?(?:" + "|".join(STREET_SUFFIXES) + "))"
_UNIT = ("(?:[-－]?(?:" + _NUM + "|[A-Za-z0-9]{1,4})(?:号院|号楼|号|弄|栋|幢|座|楼|单元|室|层|层楼|户))")
ZH_ADDRESS = re.compile(
    "(?:" + _ADMIN + "{1,5}" + _STREET + "(?:" + _STREET + ")?" + _UNIT + "{0,5}"
    + "|" + _STREET + _UNIT + "{1,5})"
    + r"(?:\s?[0-9]{6}(?![0-9]))?"  # a postcode after it
)
ZH_GATE = re.compile("[路街巷弄村里号道院苑园寓]")
# words that end a sentence's verb phrase right before an address: the address starts after them
_CUES = ("地址是", "地址为", "地址", "住址", "寄到", "送到", "发到", "寄往", "送往", "搬到", "住在", "位于", "家在", "家住",
         "我住", "在", "到", "是", "为", "住", "往", "于", "：", ":")

@lru_cache(maxsize=1)
def division_names() -> frozenset:
    """Names of mainland divisions from cpca's table, full (海淀区) and without suffix (海淀)."""
    import importlib.util
    import os

    # read the table without importing cpca (its import needs setuptools' pkg_resources)
    spec = importlib.util.find_spec("cpca")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("Chinese addresses need cpca's table of divisions (pip install cpca)")
    path = os.path.join(list(spec.submodule_search_locations)[0], "resources", "adcodes.csv")
    with open(path, encoding="utf-8") as f:
        raw = f.read()
    names = set()
    for row in csv.DictReader(io.StringIO(raw)):
        name = row["name"]
        names.add(name)
        for suf in ADMIN_SUFFIXES:
            if name.endswith(suf) and len(name) - len(suf) >= 2:
                names.add(name[: -len(suf)])
                break
    return frozenset(n for n in names if len(n) >= 2)


def _trim_front(text: str, s: int, e: int) -> int:
    """Start of the address in ``text[s:e]``: at the first known division name, else after cues."""
    names = division_names()
    head = text[s:e]
    for i in range(min(len(head) - 2, 10)):
        for ln in (2, 3, 4, 5, 6, 7):
            if head[i:i + ln] in names:
                return s + i
    # no known name: the address starts after the last cue word in front of its street part
    street = min((head.find(x) for x in STREET_SUFFIXES if head.find(x) > 0), default=len(head))
    start = 0
    for cue in _CUES:
        k = head.rfind(cue, 0, street)
        if k >= 0 and k + len(cue) > start and k + len(cue) < street:
            start = k + len(cue)
    return s + start


def find_addresses(texts: Sequence[str], zh_score: float = 0.85, en_score: float = 0.85) -> List[List[Span]]:
    out: List[List[Span]] = []
    for text in texts:
        found: List[Span] = []
        if text and ZH_GATE.search(text):
            for m in ZH_ADDRESS.finditer(text):
                s = _trim_front(text, m.start(), m.end())
                if m.end() - s >= 4:
                    found.append((s, m.end(), zh_score))
        found += find_en_addresses(text, en_score)
        out.append(found)
    return out
