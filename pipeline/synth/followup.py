"""Follow-up generators: the next user turn of a growing dialogue.

`TemplateFollowup` picks one of seven kinds that fit the previous answer (clarify, go deeper,
counter-example, apply to a new case, compare, ask for code/steps, summarise) and fills a
Chinese or English template with a short focus phrase taken from the answer's structure (a
bold term, a heading, a list item's lead, a quoted name). The focus is kept short on purpose: a
follow-up that copies long spans of the answer is knowledge leakage (checks.check_knowledge_leak).
Choices are a hash of (seed, record id, turn, attempt): deterministic, order-independent.

`model_followup_prompt` builds the prompt for a strong model that writes the follow-up from the
conversation so far; the stage sends it through a backend (backends.py).
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

from .checks import text_lang

KINDS = ("clarify", "deeper", "counterexample", "apply", "compare", "code_steps", "summarise")

# {focus} a short phrase from the answer, {a}/{b} two of them. Variants per kind rotate by hash.
TEMPLATES = {
    "zh": {
        "clarify": ["你提到的“{focus}”具体是什么意思？能说得再通俗一点吗？",
                    "关于“{focus}”，我还是不太明白，能换个说法解释一下吗？",
                    "你说的这些里面，我对“{focus}”最不理解，能举个简单的例子吗？"],
        "clarify_": ["你刚才说的我没完全看懂，能再通俗地解释一下吗？",
                     "能用更简单的话再解释一遍吗？最好举个例子。"],
        "deeper": ["能再深入讲讲“{focus}”吗？它背后的原理是什么？",
                   "“{focus}”这一点为什么成立？能展开说说原因吗？"],
        "deeper_": ["能再深入讲讲背后的原理吗？为什么会是这样？",
                    "这个结论是怎么得出来的？能展开说说原因吗？"],
        "counterexample": ["关于“{focus}”，有没有反例或者例外情况？",
                           "在什么情况下“{focus}”这一点就不适用了？能举个例子吗？"],
        "counterexample_": ["有没有反例或者例外情况？什么时候这个说法不成立？",
                            "这个说法在所有情况下都适用吗？能举一个例外吗？"],
        "apply": ["如果把“{focus}”用到一个新的具体情况里，应该怎么做？能举个例子吗？",
                  "假如换一个新的情况，“{focus}”还适用吗？请举个具体的例子。"],
        "apply_": ["如果换到一个具体的新场景，比如日常工作或生活中，应该怎么做？",
                   "能举一个实际应用的例子吗？放到一个新的情况里会是什么样？"],
        "compare": ["“{a}”和“{b}”有什么区别？各自适合什么情况？",
                    "能比较一下“{a}”和“{b}”的优缺点吗？"],
        "compare_": ["这和其他常见的做法相比有什么优缺点？",
                     "还有别的方法吗？和你说的这种相比各有什么利弊？"],
        "code": ["能给出一段示例代码来说明“{focus}”吗？", "能写一段简短的代码演示一下吗？"],
        "code_explain": ["能逐行解释一下这段代码是怎么工作的吗？", "如果输入为空或者非常大，这段代码会怎样？需要怎么改？"],
        "steps": ["能把具体的操作步骤一步一步列出来吗？", "如果我要实际去做，第一步应该做什么，接下来呢？"],
        "summarise": ["内容有点多，能用三句话概括一下要点吗？", "能简单总结一下最核心的结论吗？"],
    },
    "en": {
        "clarify": ["What exactly do you mean by \"{focus}\"? Could you put it more simply?",
                    "I'm not sure I follow the part about \"{focus}\". Could you explain it another way?",
                    "Could you give a simple example of \"{focus}\"?"],
        "clarify_": ["I didn't fully follow that. Could you explain it more simply?",
                     "Could you rephrase that in plainer words, with an example?"],
        "deeper": ["Can you go deeper into \"{focus}\"? What is the reasoning behind it?",
                   "Why does \"{focus}\" hold? Could you explain the underlying cause?"],
        "deeper_": ["Can you go deeper into why this works?", "What is the reasoning behind that conclusion?"],
        "counterexample": ["Are there exceptions or counter-examples to what you said about \"{focus}\"?",
                           "In which situations would \"{focus}\" not apply? Could you give an example?"],
        "counterexample_": ["Are there exceptions or counter-examples to this?",
                            "Does this always hold, or can you think of a case where it fails?"],
        "apply": ["How would I use \"{focus}\" in a different situation? Could you give a concrete example?",
                  "Suppose the situation were different. Would \"{focus}\" still work? Please give a concrete example."],
        "apply_": ["How would this apply to a concrete new case, for example at work?",
                   "Could you show how this works in a real situation I might run into?"],
        "compare": ["How does \"{a}\" compare with \"{b}\"? When is each the better choice?",
                    "What are the pros and cons of \"{a}\" versus \"{b}\"?"],
        "compare_": ["How does this compare with other common approaches?",
                     "Are there alternatives, and what are their trade-offs compared with this one?"],
        "code": ["Could you show a short code example of \"{focus}\"?", "Could you write a small code snippet to demonstrate this?"],
        "code_explain": ["Could you walk me through this code line by line?",
                         "What happens if the input is empty or very large? How would you change the code?"],
        "steps": ["Could you list the concrete steps, one by one?", "If I wanted to do this myself, what is the first step, and then?"],
        "summarise": ["That's a lot. Could you summarise the key points in three sentences?",
                      "Could you sum up the main takeaway briefly?"],
    },
}

# Focus phrases: at most FOCUS_MAX units, well under checks.CheckSettings.leak_span.
FOCUS_MAX = {"zh": 8, "en": 5}
_BOLD = re.compile(r"\*\*([^*\n]{2,40})\*\*")
_HEAD = re.compile(r"(?m)^#{1,6}[ \t]+(.+)$")
_ITEM = re.compile(r"(?m)^[ \t]*(?:\d+[.、)]|[-*+•])[ \t]+(.+)$")
_QUOTED = re.compile(r"[“《「]([^”》」\n]{2,12})[”》」]")
_LEAD_CUT = re.compile(r"[:：，,。;；（]|\.\s|\.$|\((?!\))")
_CODE_WORDS = re.compile(r"python|java|c\+\+|sql|函数|代码|编程|算法|function|code|script|algorithm", re.IGNORECASE)
_STEP_WORDS = re.compile(r"步骤|首先|然后|最后|第一步|step|first,|then |finally", re.IGNORECASE)


def _units(s: str, lang: str) -> int:
    return len(s.split()) if lang == "en" else len(re.sub(r"\s", "", s))


def _clean_focus(s: str, lang: str) -> str | None:
    s = re.sub(r"[*_`#]", "", s).strip()
    s = _LEAD_CUT.split(s, 1)[0].strip().strip("\"'“”")
    if not s or _units(s, lang) > FOCUS_MAX[lang]:
        return None
    if lang == "zh" and len(s) < 2:
        return None
    return s


@dataclass
class AnswerFeatures:
    foci: list           # short phrases, in order of appearance, unique
    has_code: bool
    n_items: int
    long: bool
    procedural: bool
    technical: bool


def answer_features(answer: str, lang: str, question: str = "") -> AnswerFeatures:
    no_code = re.sub(r"```.*?(?:```|$)", " ", answer, flags=re.DOTALL)
    cands = []  # structure first (list leads, headings), then emphasis, each in reading order
    for rank, rx in enumerate((_ITEM, _HEAD, _BOLD, _QUOTED)):
        cands += [(min(rank, 2), m.start(), m.group(1)) for m in rx.finditer(no_code)]
    foci = []
    for _, _, c in sorted(cands):
        f = _clean_focus(c, lang)
        if f and f not in foci:
            foci.append(f)
    items = _ITEM.findall(no_code)
    size = _units(no_code, lang)
    return AnswerFeatures(foci=foci, has_code="```" in answer, n_items=len(items),
                          long=size >= (300 if lang == "zh" else 150),
                          procedural=bool(_STEP_WORDS.search(no_code)) or len(items) >= 3,
                          technical=bool(_CODE_WORDS.search(question + "\n" + answer)))


def fitting_kinds(f: AnswerFeatures) -> list[str]:
    """The kinds that make sense after this answer (always at least four)."""
    kinds = ["clarify", "deeper", "counterexample", "apply"]
    if len(f.foci) >= 2 or f.n_items >= 2:
        kinds.append("compare")
    if f.has_code or f.procedural or f.technical:
        kinds.append("code_steps")
    if f.long:
        kinds.append("summarise")
    return kinds


def _h(*parts) -> int:
    return int.from_bytes(hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest(), "big")


def seed_lang(record: dict) -> str:
    """zh or en: the record's language, or the first user message's when the record is mixed."""
    if record.get("lang") in ("zh", "en"):
        return record["lang"]
    first = next((m["content"] for m in record["messages"] if m["role"] == "user"), "")
    return "zh" if text_lang(first) == "zh" else "en"


class TemplateFollowup:
    """Next user turn from templates that fit the previous answer."""

    def __init__(self, seed: int = 0):
        self.seed = seed

    def generate(self, rec_id: str, messages: list[dict], lang: str, turn: int, attempt: int = 0,
                 used: tuple = ()) -> tuple[str, str]:
        """(follow-up text, kind). `used`: kinds already asked in this dialogue, avoided while
        others fit."""
        answer = next((m["content"] for m in reversed(messages) if m["role"] == "assistant"), "")
        question = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        lang = lang if lang in TEMPLATES else "en"
        f = answer_features(answer, lang, question)
        kinds = [k for k in fitting_kinds(f) if k not in used] or fitting_kinds(f)
        r = _h(self.seed, rec_id, turn, attempt)
        kind = kinds[r % len(kinds)]
        return self._fill(kind, f, lang, r >> 8), kind

    @staticmethod
    def _fill(kind: str, f: AnswerFeatures, lang: str, r: int) -> str:
        t = TEMPLATES[lang]
        if kind == "code_steps":
            key = "code_explain" if f.has_code else "code" if f.technical else "steps"
            if key == "code" and not f.foci:
                key = "steps" if f.procedural else "code"
            opts = t[key]
        elif kind == "summarise":
            opts = t["summarise"]
        elif kind == "compare":
            opts = t["compare"] if len(f.foci) >= 2 else t["compare_"]
        else:
            opts = t[kind] if f.foci else t[kind + "_"]
        tpl = opts[r % len(opts)]
        if "{focus}" in tpl and not f.foci:
            tpl = next(o for o in opts if "{focus}" not in o)
        focus = f.foci[(r >> 4) % len(f.foci)] if f.foci else ""
        a, b = _pair(f.foci)
        if "{a}" in tpl and not a:
            tpl = t["compare_"][r % len(t["compare_"])]
        return tpl.format(focus=focus, a=a, b=b)


def _pair(foci: list[str]) -> tuple[str, str]:
    """The first two foci where neither contains the other ("cells" vs "cell theory" is no comparison)."""
    for i, a in enumerate(foci):
        for b in foci[i + 1:]:
            if a not in b and b not in a:
                return a, b
    return "", ""


# ------------------------------------------------------------------------------ model follow-ups
FOLLOWUP_SYSTEM = {
    "en": ("You write the next message of the USER in a conversation between a user and an AI assistant. "
           "Write only that message: one natural follow-up that builds on the assistant's last answer "
           "(ask to clarify, go deeper, a counter-example, apply it to a new case, compare, ask for steps or "
           "code, or a summary). Write in English, as a real user would: short and plain, no markdown. "
           "Do not answer it, do not copy sentences from the answers, and do not add labels such as "
           "'User:', quotes or any preamble."),
    "zh": ("你负责写出一段用户与AI助手对话中【用户】的下一句话。只输出这句话本身：一个基于助手上一条回答的、"
           "自然的追问（请求澄清、深入解释、反例、应用到新情况、比较、要步骤或代码、或者总结）。"
           "用中文，像真实用户那样简短、口语化，不用markdown。不要回答它，不要照抄回答里的句子，"
           "不要加“用户：”之类的标签、引号或任何开场白。"),
}
MAX_CONTEXT_CHARS = 2000  # per message in the transcript: enough context, bounded cost


def model_followup_prompt(messages: list[dict], lang: str) -> list[dict]:
    """Chat messages asking a model for the user's next turn. The conversation goes in as JSON
    so that no role labels appear in the prompt for the model to echo."""
    convo = [{"role": m["role"], "content": m["content"][:MAX_CONTEXT_CHARS]} for m in messages
             if m["role"] in ("user", "assistant")]
    lang = lang if lang in FOLLOWUP_SYSTEM else "en"
    ask = ("对话（JSON）：\n{c}\n\n请写出用户的下一句话。" if lang == "zh"
           else "Conversation (JSON):\n{c}\n\nWrite the user's next message.")
    return [{"role": "system", "content": FOLLOWUP_SYSTEM[lang]},
            {"role": "user", "content": ask.format(c=json.dumps(convo, ensure_ascii=False, indent=1))}]


STYLE_HINT = {
    "en": "Answer in English, in the same style and formatting as your earlier answers in this conversation.",
    "zh": "请用中文回答，保持与本对话中你之前回答一致的风格和格式。",
}


def reply_prompt(messages: list[dict], lang: str, style_hint: bool = True) -> list[dict]:
    """The conversation as chat messages for the assistant's next reply; a system hint asks for
    the seed's language and style unless the conversation brings its own system message."""
    msgs = [{"role": m["role"], "content": m["content"]} for m in messages]
    if style_hint and not any(m["role"] == "system" for m in msgs):
        msgs.insert(0, {"role": "system", "content": STYLE_HINT.get(lang, STYLE_HINT["en"])})
    return msgs
