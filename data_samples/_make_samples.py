#!/usr/bin/env python3
"""Regenerate every sample input under data_samples/ (deterministic, stdlib only).

    python3 data_samples/_make_samples.py

All dialogue text and all personal data in these files are invented for testing.
Phone numbers, ID numbers, bank cards, e-mails, IPs, API keys, QQ / WeChat ids and
names do not belong to anyone; ID numbers and card numbers are generated here so that
their checksums are valid (an anonymiser has to catch them).

The generated files are exactly what this script writes; edit the script, not the files.
"""
from __future__ import annotations

import csv
import io
import json
import random
import string
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent
TZ = timezone(timedelta(hours=8))
DAY = datetime(2026, 11, 1, tzinfo=TZ)

# --------------------------------------------------------------------------------------
# fake personal data with valid checksums
# --------------------------------------------------------------------------------------
ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK = "10X98765432"


def id_check_char(first17: str) -> str:
    return ID_CHECK[sum(int(d) * w for d, w in zip(first17, ID_WEIGHTS)) % 11]


def cn_id(first17: str) -> str:
    assert len(first17) == 17 and first17.isdigit()
    return first17 + id_check_char(first17)


def luhn_ok(number: str) -> bool:
    digits = [int(c) for c in number if c.isdigit()]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def luhn_complete(prefix: str) -> str:
    for c in "0123456789":
        if luhn_ok(prefix + c):
            return prefix + c
    raise AssertionError


def group4(s: str) -> str:
    return " ".join(s[i:i + 4] for i in range(0, len(s), 4))


# ID 1: Beijing Chaoyang, born 1990-03-07, male (17th digit odd)
ID1 = cn_id("11010519900307123")
# ID 2: Shenzhen Futian, born 1963-11-22, female (17th digit even), check char 'X'
ID2 = next(cn_id("44030419631122" + f"{s:03d}") for s in range(100, 999)
           if s % 2 == 0 and id_check_char("44030419631122" + f"{s:03d}") == "X")
# 18-digit decoy that is NOT an ID number (region 77 does not exist, checksum wrong)
DECOY18 = "773104889216534021"
assert id_check_char(DECOY18[:17]) != DECOY18[17], "decoy accidentally valid"

CARD1 = luhn_complete("622848019283746")        # 16 digits, written in groups of 4
CARD2 = luhn_complete("621700384756102938")     # 19 digits, written contiguous
CARD3 = luhn_complete("436742015538902")        # 16 digits, used in the CSV export

_rng_key = random.Random(20261101)
SK_KEY = "sk-" + "".join(_rng_key.choice(string.ascii_letters + string.digits) for _ in range(40))


# --------------------------------------------------------------------------------------
# 1. flat event log  logs/chat_events_2026-11-01.jsonl
# --------------------------------------------------------------------------------------
def U(text, dt=None, kind=None):
    return {"who": "U", "text": text, "dt": dt, "kind": kind}


def A(text, dt=None, kind=None):
    return {"who": "A", "text": text, "dt": dt, "kind": kind}


def S(text, dt=None, kind=None):
    return {"who": "S", "text": text, "dt": dt, "kind": kind}


def R(role, text, dt=None, kind=None):
    """Event with an explicit (possibly odd) role string."""
    return {"who": role, "text": text, "dt": dt, "kind": kind}


def GAP(minutes, ev):
    ev["dt"] = minutes * 60 + 17
    return ev


# exact-duplicate dialogue used by two different users
DUP_JOKES = [
    U("你好"),
    A("你好！有什么可以帮你的吗？"),
    U("给我讲个冷笑话"),
    A("Wi-Fi 和路由器为什么分手了？因为它们之间总是信号不好。"),
    U("哈哈 再来一个"),
    A("键盘为什么总是很累？因为它每天都要被人敲几千下。"),
]

SESSIONS = [
    # ---- u1001 -------------------------------------------------------------------------
    dict(sid="s_9c1e4a", uid="u1001", start="08:25:11", roles=dict(S="system", U="user", A="assistant"), events=[
        S("你是一个友好的中文助手，回答要简洁。"),
        U("早上好，我想做个番茄炒蛋，鸡蛋要先炒还是番茄先下锅？"),
        A("一般先炒鸡蛋：油热后倒入蛋液，炒到刚凝固就盛出。再炒番茄，出汁后把鸡蛋倒回去翻匀，加盐和少许糖调味。"),
        U("那要放多少糖？"),
        A("两个番茄配半小勺糖就够了，主要是中和酸味，不喜欢甜可以不放。"),
        U("好的"),
        U("还有，葱花什么时候放？"),
        A("出锅前撒葱花，翻两下就关火，这样香味最足。"),
        U("对了，突然想起来，python 里怎么把一个列表去重但保持原来的顺序？"),
        A("可以用 dict.fromkeys，它会保留插入顺序：\n```python\nitems = [3, 1, 3, 2, 1]\nunique = list(dict.fromkeys(items))\nprint(unique)  # [3, 1, 2]\n```"),
        U("它的时间复杂度是多少？"),
        A("平均是 O(n)，因为每个元素只做一次哈希插入。"),
        U("那如果元素是列表，不能哈希怎么办"),
        A("列表不可哈希，可以先转成元组再判断是否见过：\n```python\nrows = [[1, 2], [3, 4], [1, 2]]\nseen, out = set(), []\nfor r in rows:\n    t = tuple(r)\n    if t not in seen:\n        seen.add(t)\n        out.append(r)\n```"),
        U("明白了，谢谢！我手机号 138 2746 3910，有更新可以短信通知我吗"),
        A("抱歉，我没法发送短信，也不建议在聊天里留手机号。有问题随时回来问就行。"),
    ]),
    dict(sid="s_9c1e4b", uid="u1001", start="13:40:20", roles=dict(U="user", A="bot"), events=[
        U("帮我解个方程：3x + 7 = 22"),
        A("3x = 22 - 7 = 15，所以 x = 5。"),
        U("再来一个 2(x - 4) = x + 6"),
        A("展开得 2x - 8 = x + 6，移项得 x = 14。"),
        U("好，我先去吃饭"),
        A("好的，慢慢吃，回来继续。"),
        GAP(52, U("回来了，刚才第二题怎么验算？")),
        A("把 x = 14 代回去：左边 2 × (14 - 4) = 20，右边 14 + 6 = 20，两边相等，所以答案正确。"),
        U("那 x² - 5x + 6 = 0 呢"),
        A("因式分解成 (x - 2)(x - 3) = 0，所以 x = 2 或 x = 3。"),
        U("那么用求根公式也一样吗"),
        A("一样。判别式 Δ = 25 - 24 = 1，x = (5 ± 1) / 2，得到 3 和 2。"),
    ]),
    dict(sid="s_9c1e4c", uid="u1001", start="22:10:00", roles=dict(U="用户", A="bot"), events=[
        U("睡不着，聊会天吧"),
        A("好呀，今天过得怎么样？"),
        U("还行，就是工作有点累", kind="trailing_garbage"),
        A("辛苦了。睡前可以少看手机，听点轻音乐，或者简单拉伸一下，会容易入睡一些。"),
        U("有推荐的轻音乐吗"),
        A("可以试试钢琴曲或者雨声白噪音，音量调小一点，设个 30 分钟定时关闭。"),
        U("好 晚安"),
        A("晚安，好梦！"),
    ]),
    # ---- u1002 -------------------------------------------------------------------------
    dict(sid="s_4d77b2", uid="u1002", start="09:15:03", roles=dict(U="human", A="bot"), events=[
        U("hey, quick SQL question"),
        U("I have a table orders(id, customer_id, amount, created_at)"),
        U("how do I get total amount per customer?"),
        A("", kind="empty"),
        A("Group by the customer and sum the amount:\n```sql\nSELECT customer_id, SUM(amount) AS total\nFROM orders\nGROUP BY customer_id;\n```"),
        U("what about only customers who spent more than 1000?"),
        A("Add a HAVING clause, since the filter applies to the aggregate:\n```sql\nSELECT customer_id, SUM(amount) AS total\nFROM orders\nGROUP BY customer_id\nHAVING SUM(amount) > 1000;\n```"),
        U("and if I want it sorted, biggest first?"),
        A("Append `ORDER BY total DESC`. Most databases let you refer to the alias in ORDER BY."),
        U("does it work in sqlite too?"),
        A("Yes, SQLite supports GROUP BY, HAVING and ordering by an alias, so the same query runs unchanged."),
        U("cool. can it also show the month?"),
        A("Use strftime in SQLite:\n```sql\nSELECT customer_id, strftime('%Y-%m', created_at) AS month, SUM(amount) AS total\nFROM orders\nGROUP BY customer_id, month\nORDER BY month, total DESC;\n```"),
        U("perfect, thanks"),
        A("You're welcome!"),
    ]),
    dict(sid="s_4d77c9", uid="u1002", start="17:50:40", roles=dict(U="human", A="assistant"), events=[
        U("My friend Emily Carter is visiting this weekend, any ideas what we could do?"),
        A("A few ideas: a farmers market in the morning, a short hike if the weather is good, and a board game night at home. Does she like being outdoors?"),
        U("she does, she loves hiking"),
        A("Then pick a trail of about 8-10 km with a view at the top, pack snacks and start early to avoid the crowds."),
        U("nice. should I text her the plan? her number is (415) 555-0192"),
        A("Sure, texting her the plan is a good idea, but I can't send messages myself. You might also share a map link to the trailhead."),
        U("what about if it rains?"),
        A("Swap the hike for a museum or a cooking session together. Making dumplings is fun and keeps everyone busy.\n\nHuman: thanks, that's great!"),
    ]),
    dict(sid="s_4d77d0", uid="u1002", start="15:20:10", roles=dict(U="human", A="bot"), events=[
        U("How do I reverse a list in Python?"),
        A("Use slicing: `my_list[::-1]` returns a new reversed list, while `my_list.reverse()` reverses it in place."),
        U("which one is faster?"),
        A("`reverse()` is slightly faster and uses no extra memory because it works in place; slicing creates a copy."),
    ]),
    # ---- u1003 -------------------------------------------------------------------------
    dict(sid="s_71f0aa", uid="u1003", start="10:00:00", roles=dict(U="用户", A="bot"), events=[
        U("我想开始学 Python，应该先装什么？"),
        A("建议先安装 Python 3.11 或更新的版本，再装一个编辑器，比如 VS Code。装好后在终端输入 python3 --version 确认一下。"),
        U("装好了，显示 3.12.1"),
        A('很好。接下来可以试试交互模式：输入 python3，然后敲 print("hello")。'),
        U("打印出来了！"),
        U("下一步学什么"),
        A("先学变量和基本类型：int、float、str、bool，再学列表和字典。"),
        U("列表和元组有什么区别"),
        A("列表可以修改，用方括号；元组创建后不能改，用圆括号。元组常用来表示固定结构的数据，比如坐标 (x, y)。"),
        U("那字典呢"),
        A('字典存的是键值对，比如 {"name": "小明", "age": 12}，通过键来取值：d["name"]。'),
        U("如果键不存在会怎样"),
        A("直接用 d[key] 会抛出 KeyError。可以用 d.get(key, 默认值) 避免报错。"),
        U("how do I loop over a dict?"),
        A("Use .items() to get key and value together:\n```python\nfor k, v in d.items():\n    print(k, v)\n```"),
        U("and only the keys?"),
        A("Just iterate the dict itself: `for k in d:` yields its keys."),
        U("好的，我想读一个 txt 文件，一行一行处理"),
        A('用 with 语句打开文件，它会自动关闭：\n```python\nwith open("data.txt", encoding="utf-8") as f:\n    for line in f:\n        print(line.strip())\n```'),
        U("如果文件不存在呢？"),
        A('会抛出 FileNotFoundError，可以用 try/except 捕获：\n```python\ntry:\n    with open("data.txt", encoding="utf-8") as f:\n        text = f.read()\nexcept FileNotFoundError:\n    text = ""\n```'),
        U("except 后面可以写多个异常吗"),
        A("可以，用元组：except (ValueError, TypeError) as e:"),
        U("嗯嗯，记住了", kind="truncated"),
        U("先休息一下，晚上吃什么好呢 哈哈"),
        A("可以试试简单的家常菜，比如青椒肉丝配米饭，二十分钟就能做好。"),
        U("青椒肉丝的肉要腌吗"),
        A("要，用少许盐、料酒、淀粉抓匀腌十分钟，炒出来更嫩。"),
        U("ok 回到 python，函数怎么定义"),
        R("assistant", "用 def 关键字：\n```python\ndef add(a, b):\n    return a + b\n```"),
        U("它可以有默认参数吗"),
        R("assistant", '可以，比如 def greet(name, greeting="你好"):，调用时不传 greeting 就用默认值。注意默认值不要用可变对象，比如列表。'),
        U("为什么不能用列表"),
        R("assistant", "默认值只在函数定义时创建一次，如果是列表，多次调用会共享同一个列表，数据会越积越多。常见写法是默认 None，在函数内部再新建列表。"),
        U("明白了。what is a list comprehension?"),
        R("assistant", "A compact way to build a list: `[x * x for x in range(5)]` gives [0, 1, 4, 9, 16]."),
        U("can I add a condition?"),
        R("assistant", "Yes: `[x for x in range(10) if x % 2 == 0]` gives [0, 2, 4, 6, 8]."),
        U("换个话题，帮我算一下 17 × 23"),
        R("assistant", "17 × 23 = 391。"),
        U("那 391 除以 7 呢"),
        R("assistant", "391 ÷ 7 = 55 余 6，约等于 55.86。"),
        U("用 python 怎么同时得到商和余数"),
        R("assistant", "用内置函数 divmod：divmod(391, 7) 返回 (55, 6)。"),
        U("负数呢，divmod(-7, 2)"),
        R("assistant", "结果是 (-4, 1)。Python 的整除向负无穷取整，所以 -7 // 2 = -4，余数是 -7 - (-4 × 2) = 1。"),
        U("这个和 C 语言不一样吧"),
        R("assistant", "对，C 语言的整数除法向零截断，-7 / 2 得 -3，-7 % 2 得 -1。"),
        U("好的今天就学到这"),
        R("assistant", "今天进度很好！下次可以学类和模块。"),
        U("thanks a lot 🙏"),
        R("assistant", "不客气，加油！"),
    ]),
    dict(sid="s_71f0b3", uid="u1003", start="16:20:00", roles=dict(U="user", A="assistant"), events=[
        U(f"帮我看看这个身份证号格式对不对：{ID1}"),
        A("18 位身份证号的最后一位是校验码，由前 17 位加权求和后对 11 取余得到。你给的号码校验位是对的。不过身份证号属于敏感信息，建议不要在网上随意发送。"),
        U("那最后一位是 X 是什么意思"),
        A("X 代表数字 10。当校验计算的结果是 10 时用 X 表示，这样号码仍然保持 18 位。"),
        U(f"我妈的是 {ID2}，也帮我看下"),
        A("这个号码的校验位也正确。再次提醒，身份证号请妥善保管，不要发给陌生人。"),
        U(f"另外这个快递单号 {DECOY18} 是不是身份证？"),
        A("不是。它虽然也是 18 位数字，但校验位对不上，而且前两位 77 不是有效的省份代码，更像是物流单号。"),
    ]),
    dict(sid="s_71f0c1", uid="u1003", start="20:20:00", roles=dict(U="human", A="assistant"), events=[
        U("扔两个骰子，点数和为 7 的概率是多少？"),
        A("共有 36 种等可能结果，和为 7 的有 (1,6)(2,5)(3,4)(4,3)(5,2)(6,1) 共 6 种，所以概率是 6/36 = 1/6。"),
        U("那和为 12 呢"),
        A("只有 (6,6) 一种，概率是 1/36。"),
        U("至少有一个 6 呢"),
        A("用对立事件：两个都不是 6 的概率是 (5/6)² = 25/36，所以至少一个 6 的概率是 1 - 25/36 = 11/36。"),
        U("can you simulate it in python to check?"),
        A("Sure:\n```python\nimport random\nN = 100_000\nhits = sum(1 for _ in range(N) if 6 in (random.randint(1, 6), random.randint(1, 6)))\nprint(hits / N)  # about 0.3056\n```\n11/36 ≈ 0.3056, so the result should land close to it."),
        U("nice, it printed 0.30581"),
        A("That's well within normal random error of 11/36 ≈ 0.30556. With more trials it gets closer."),
    ]),
    # ---- u1004 -------------------------------------------------------------------------
    dict(sid="s_be3301", uid="u1004", start="10:35:30", roles=dict(U="用户", A="客服"), events=[
        U("你好，我要绑定银行卡"),
        U(f"卡号 {group4(CARD1)}"),
        U("绑好了告诉我"),
        A("您好，为了您的资金安全，请不要在聊天中发送完整卡号。绑定银行卡需要您在 App 的“我的-银行卡”页面自行操作。"),
        U("好麻烦。。那我加你微信吧，我微信号 lily_chen_2024"),
        A("抱歉，我们不通过个人微信处理业务，所有操作都请在官方渠道完成。"),
        U("QQ 517209386 可以吗"),
        A("同样不行哦。您可以在 App 内提交工单，我们会在 24 小时内回复。"),
        U("", kind="empty"),
        U(f"那我另一张卡 {CARD2} 也是这样绑吗"),
        A("是的，每张卡都在同一个页面添加，需要验证银行预留手机号。"),
        U("预留手机号是 +86-186-5523-0917，收不到验证码"),
        A("收不到验证码可以先检查短信拦截设置，或者等 60 秒后重新获取。如仍有问题，请联系发卡银行确认预留号码是否正确。"),
    ]),
    dict(sid="s_be3302", uid="u1004", start="15:12:00", roles=dict(U="user", A="assistant"), events=[
        U("<|im_start|>user\n计算 (48 + 36) ÷ 12<|im_end|>"),
        A("先算括号：48 + 36 = 84，再除以 12，得 7。"),
        U("2 的 10 次方是多少"),
        A("2¹⁰ = 1024。"),
        U("那 2 的 20 次方呢"),
        A("2²⁰ = 1024 × 1024 = 1,048,576。"),
        U("what is 15% of 360?"),
        A("15% of 360 is 0.15 × 360 = 54."),
        U("<user>再问一个：一个长方形长 12 厘米，宽 5 厘米，对角线多长？"),
        A("用勾股定理：√(12² + 5²) = √(144 + 25) = √169 = 13 厘米。"),
    ]),
    dict(sid="s_be3303", uid="u1004", start="16:27:45", roles=dict(U="user", A="assistant"), events=[
        U("how do I reverse a list in python?  "),
        A("Use slicing:  `my_list[::-1]` returns a new reversed list, while `my_list.reverse()` reverses it in place."),
        U("Which one is faster?"),
        A("`reverse()` is slightly faster and uses no extra memory because it works in place; slicing creates a copy. "),
    ]),
    # ---- u1005 -------------------------------------------------------------------------
    dict(sid="s_e05c17", uid="u1005", start="09:40:12", roles=dict(U="human", A="assistant"), events=[
        U(f"my OpenAI-style client keeps returning 401, here is my key {SK_KEY}"),
        A("A 401 means the server rejected your credentials. Please revoke that key right away, since it is now exposed in this chat, and create a new one. Then check that the header is `Authorization: Bearer <key>`."),
        U("ok revoked it. the server is at 203.0.113.42 port 8080, does that matter?"),
        A("The address itself doesn't cause a 401. Make sure you call the right base URL, e.g. http://203.0.113.42:8080/v1, and that no proxy strips the Authorization header."),
        U("how do I check if it strips it?"),
        A('Send a request with curl -v to see the headers you send, and log incoming headers on the server side:\n```bash\ncurl -v http://203.0.113.42:8080/v1/models -H "Authorization: Bearer $API_KEY"\n```'),
        GAP(41, U("back. it was nginx, fixed it")),
        A("Great! If nginx was the culprit, `proxy_set_header Authorization $http_authorization;` is usually the line that fixes it."),
        U("yep that's the one. what about rate limits, how should my python client handle 429?"),
        A('Retry with exponential backoff and respect the Retry-After header if present:\n```python\nimport random, time\n\ndef call_with_retry(fn, tries=5):\n    for i in range(tries):\n        resp = fn()\n        if resp.status_code != 429:\n            return resp\n        wait = float(resp.headers.get("Retry-After", 2 ** i))\n        time.sleep(wait + random.random())\n    return resp\n```'),
        U("and my home ip 198.51.100.23 got blocked, is that related"),
        A("Possibly. Many servers block an IP for a while after too many 429s or failed logins. Wait a bit or ask the server admin to unblock it."),
    ]),
    dict(sid="s_e05c2d", uid="u1005", start="14:30:05", roles=dict(U="user", A="assistant"), events=[
        U("What is 15% of 240?"),
        A("15% of 240 is 36."),
        U("And 20% of it?"),
        A("20% of 240 is 48."),
    ]),
    # ---- u1006 -------------------------------------------------------------------------
    dict(sid="s_3a9d01", uid="u1006", start="12:10:00", roles=dict(S="system", U="用户", A="客服"), events=[
        S("You are a helpful bilingual assistant. Answer in the user's language."),
        U("这周末想去杭州玩两天，有什么推荐"),
        A("第一天可以逛西湖，走苏堤、断桥，傍晚去湖滨看音乐喷泉；第二天去灵隐寺和龙井村，喝杯龙井茶。"),
        U("那住哪里方便"),
        A("住西湖附近或者地铁一号线沿线比较方便，去景点和火车站都近。"),
        U("11 月去会冷吗"),
        A("11 月杭州白天大概 15 度左右，早晚偏凉，带件薄外套就够了。"),
        GAP(29, U("好的")),
        U("诶对了 SQL 里 LEFT JOIN 和 INNER JOIN 有啥区别"),
        A("INNER JOIN 只保留两边都匹配上的行；LEFT JOIN 保留左表所有行，右表匹配不上的列填 NULL。\n```sql\nSELECT u.name, o.id\nFROM users u\nLEFT JOIN orders o ON o.user_id = u.id;\n```\n没有下过单的用户也会出现在结果里，o.id 为 NULL。"),
        U("那怎么找出从来没下过单的用户"),
        A("在 LEFT JOIN 之后筛选右表为空的行：\n```sql\nSELECT u.name\nFROM users u\nLEFT JOIN orders o ON o.user_id = u.id\nWHERE o.id IS NULL;\n```"),
        U("用 NOT EXISTS 写呢"),
        A("```sql\nSELECT u.name\nFROM users u\nWHERE NOT EXISTS (\n  SELECT 1 FROM orders o WHERE o.user_id = u.id\n);\n```\n两种写法结果一样，NOT EXISTS 在很多数据库里性能也不错。"),
    ]),
    dict(sid="s_3a9d03", uid="u1006", start="17:45:00", roles=dict(U="user", A="assistant"), events=[
        U("一件衣服原价 280 元，打八折后再减 20 元，最后多少钱？"),
        A("280 × 0.8 = 224，再减 20 得 204 元。"),
        R("moderator_x", "[auto] 该会话已被标记为低风险，继续服务。"),
        U("如果先减 20 再打八折呢"),
        A("(280 - 20) × 0.8 = 260 × 0.8 = 208 元，比前一种贵 4 元。"),
        A("考你一下：12 × 12 等于多少？"),
        U(144, kind="text_number"),
        A("答对了！"),
    ]),
    dict(sid="s_3a9d02", uid="u1006", start="18:50:00", roles=dict(U="user", A="assistant"), events=DUP_JOKES),
    # ---- u1007 -------------------------------------------------------------------------
    dict(sid="s_a81f3c", uid="u1007", start="10:12:00", roles=dict(U="human", A="bot"), events=[
        U("Human: how do I extract all email addresses from a string in python?"),
        A('Use the re module with a simple pattern:\n```python\nimport re\ntext = "contact: wang.fang88@example.com, j.carter@example.org"\nemails = re.findall(r"[\\w.+-]+@[\\w-]+\\.[\\w.]+", text)\nprint(emails)\n```'),
        U("[INST] does it work for chinese text too? like 联系我：84736291@qq.com 谢谢 [/INST]"),
        A("Yes, it finds 84736291@qq.com there, because the full-width colon and the space are not word characters. But \\w also matches Chinese characters, so if Chinese text touches the address directly (…qq.com谢谢) it gets swallowed; pass flags=re.ASCII to avoid that."),
        U("what about phone numbers like +1 212-555-0147?"),
        A('Something like r"\\+?1?[ -]?\\(?\\d{3}\\)?[ -]?\\d{3}-\\d{4}" covers common US formats such as +1 212-555-0147 and (415) 555-0192.'),
        U("and it should also catch 2125550147 without dashes"),
        A('Make the last dash optional: r"\\+?1?[ -]?\\(?\\d{3}\\)?[ -]?\\d{3}-?\\d{4}". Be careful, though: a bare 10-digit pattern will also match order numbers and other ids.'),
        U("thanks, that works", kind="missing_role"),
    ]),
    dict(sid="s_a81f40", uid="u1007", start="16:25:30", roles=dict(U="user", A="assistant"), events=[
        U("what is 15% of 240"),
        A("15% of 240 is 36"),
        U("and 20% of it ?"),
        A("20% of 240 is 48."),
    ]),
    # ---- u1008 -------------------------------------------------------------------------
    dict(sid="s_c4e811", uid="u1008", start="08:30:00", roles=dict(U="user", A="assistant"), events=[
        U("帮我写一封英文邮件给 Daniel Brooks，说下周二的会议改到周四下午3点"),
        A("Subject: Meeting rescheduled to Thursday 3 PM\n\nHi Daniel,\n\nI hope you're doing well. Next Tuesday's meeting has been moved to Thursday at 3:00 PM. Please let me know if the new time doesn't work for you.\n\nBest regards"),
        U("语气再正式一点"),
        A("Subject: Rescheduling of Next Week's Meeting\n\nDear Mr. Brooks,\n\nI am writing to inform you that the meeting originally scheduled for next Tuesday has been moved to Thursday at 3:00 PM. We apologise for any inconvenience and would appreciate it if you could confirm your availability.\n\nKind regards"),
        U("抄送加上 marcus.lee@example.com 和 wang.fang88@example.com"),
        A("在邮件客户端的 CC 栏填入 marcus.lee@example.com; wang.fang88@example.com 即可，正文不用改。"),
        GAP(35, U("Daniel 回复说周四不行，能不能帮我回一封问他周五可以吗")),
        A("Dear Mr. Brooks,\n\nThank you for letting us know. Would Friday at the same time, 3:00 PM, work for you instead? If not, please suggest a time that suits you.\n\nKind regards"),
        U("他的电话是 +1 212-555-0147，邮件里要不要附上我的电话 139 2841 7765"),
        A("如果对方在美国，建议写成国际格式 +86 139 2841 7765，放在签名里即可。"),
        U("ok 那签名帮我写一下，名字 Zhang Wei，职位 Product Manager"),
        A("Kind regards,\nZhang Wei\nProduct Manager\nTel: +86 139 2841 7765"),
    ]),
    dict(sid="s_d07e55", uid="u1008", start="11:12:00", roles=dict(S="system", U="human", A="assistant"), events=[
        S("You are a concise assistant for a data team. Prefer short answers with examples."),
        U("morning! coffee or tea for a long day of meetings?"),
        A("Tea if you want steady energy without the crash; coffee if you need a quick boost before a big meeting. Maybe both, at different times."),
        U("ha. ok, work question: how do I get the latest order per customer in postgres?"),
        A("Use DISTINCT ON, which is specific to PostgreSQL:\n```sql\nSELECT DISTINCT ON (customer_id) customer_id, id, created_at\nFROM orders\nORDER BY customer_id, created_at DESC;\n```"),
        U("is there a portable way?"),
        A("Yes, with a window function:\n```sql\nSELECT customer_id, id, created_at\nFROM (\n  SELECT o.*, ROW_NUMBER() OVER (PARTITION BY customer_id ORDER BY created_at DESC) AS rn\n  FROM orders o\n) t\nWHERE rn = 1;\n```"),
        U("what about ties on created_at?"),
        A("ROW_NUMBER picks one of the tied rows arbitrarily. Add a tiebreaker such as `ORDER BY created_at DESC, id DESC`, or use RANK() if you want to keep all tied rows."),
        U("and the top 3 per customer?"),
        A("Same query, change the filter to `WHERE rn <= 3`.<|im_end|>"),
    ]),
    dict(sid="s_c4e810", uid="u1008", start="18:52:00", roles=dict(U="user", A="assistant"), events=DUP_JOKES),
    dict(sid="s_c4e812", uid="u1008", start="20:25:00", roles=dict(U="用户", A="客服"), events=[
        U("家里网好慢，路由器后台怎么进"),
        A("一般在浏览器输入路由器背面标的地址，常见的是 192.168.1.1 或 192.168.31.1，再用管理员密码登录。"),
        U("进去了，看到有个设备 192.168.31.7 一直在占带宽"),
        A("可以在设备列表里查看它的名称和 MAC 地址，确认是哪台设备。如果不认识，可以先把它拉黑，再修改 Wi-Fi 密码。"),
        U("它显示叫 Xiaomi-TV"),
        A("那应该是家里的电视在后台更新或者播放高清视频。可以在路由器里给它限速，比如限制到 5 MB/s。"),
        U("那怎么限速"),
        A("在“终端设备”或“QoS”设置里找到这台设备，设置上传和下载上限，保存即可。不同品牌的菜单名称略有不同。"),
        U("好了 网快多了 谢谢", kind="pyrepr"),
        A("不客气！"),
    ]),
    # ---- u1009 -------------------------------------------------------------------------
    dict(sid="s_f2b610", uid="u1009", start="12:20:00", roles=dict(U="user", A="assistant"), events=[
        U("Solve for x: 5x - 3 = 2x + 12"),
        A("Subtract 2x from both sides: 3x - 3 = 12. Add 3: 3x = 15. So x = 5."),
        U("what if it's 5x - 3 = 2x + 13?"),
        A("Then 3x = 16, so x = 16/3 ≈ 5.33."),
        U("sorry my keyboard \ue000 glitched, what's the sum of the first 100 positive integers?", kind="bad_utf8"),
        A("Using n(n+1)/2: 100 × 101 / 2 = 5050."),
        U("and the first 100 odd numbers?"),
        A("The sum of the first n odd numbers is n², so it's 100² = 10,000."),
        U("cool. what about the squares, 1² + 2² + ... + 10²?"),
        A("Use n(n+1)(2n+1)/6 with n = 10: 10 × 11 × 21 / 6 = 385."),
    ]),
    dict(sid="s_f2b611", uid="u1009", start="20:15:00", roles=dict(U="human", A="客服"), events=[
        U("最近有什么好看的科幻电影推荐吗"),
        A("喜欢硬核一点的，可以找讲太空探索、时间或者语言学设定的片子；想轻松一些，可以选宇航员独自求生、靠幽默感撑下去的那类故事。"),
        U("求生那类讲的是什么"),
        A("通常是主角被意外困在某个星球上，靠自己的专业知识种粮食、修设备、想办法联系地球，最后获救。"),
        U("听起来不错", kind="glued"),
        U("btw how do I read a csv with pandas and skip the first 2 rows?"),
        A('Use skiprows:\n```python\nimport pandas as pd\ndf = pd.read_csv("data.csv", skiprows=2)\n```'),
        U("what if the file is GBK encoded"),
        A('Pass the encoding: `pd.read_csv("data.csv", skiprows=2, encoding="gbk")`. If some characters still fail, try encoding="gb18030", which is a superset of GBK.'),
        U("它读出来中文列名是乱码怎么办"),
        A("列名乱码通常还是编码不对，先确认文件真实编码再读；也可以用 df.columns = [...] 手动重命名。"),
    ]),
]

MALFORMED_REASON = {
    "truncated": "not JSON: object truncated mid-line (log writer crashed)",
    "trailing_garbage": "not JSON: valid object followed by a stray '}}'",
    "pyrepr": "not JSON: Python dict repr with single quotes",
    "glued": "not JSON: two objects on one line (missing newline); carries two user messages",
    "text_number": "valid JSON, but text is the number 144, not a string",
    "missing_role": "valid JSON, but the role key is missing",
    "unknown_role": "valid JSON, unknown role 'moderator_x'",
    "empty": "valid JSON, empty text \"\"",
    "bad_utf8": "invalid UTF-8: raw bytes 0xFF 0xFE inside the text",
}


def iso(t: datetime) -> str:
    return t.isoformat(timespec="seconds")


def build_events():
    """Return (lines, notes): lines sorted by timestamp, notes for README / notes file."""
    rng = random.Random(7)
    rows = []  # (ts, order, obj, kind, extra_obj)
    order = 0
    for s_idx, sess in enumerate(SESSIONS):
        h, m, sec = map(int, sess["start"].split(":"))
        t = DAY.replace(hour=h, minute=m, second=sec)
        prev_who = None
        pending_glue = None
        for i, ev in enumerate(sess["events"]):
            who = ev["who"]
            if i > 0:
                if ev["dt"] is not None:
                    dt = ev["dt"]
                elif who == prev_who:
                    dt = rng.randint(6, 20)
                elif who == "A":
                    dt = rng.randint(4, 15)
                else:
                    dt = rng.randint(25, 95)
                t = t + timedelta(seconds=dt)
            role = sess["roles"].get(who, who)
            obj = {"session_id": sess["sid"], "user_id": sess["uid"], "timestamp": iso(t),
                   "role": role, "text": ev["text"]}
            kind = ev["kind"]
            if role == "moderator_x":
                kind = "unknown_role"
            if pending_glue is not None:
                pending_glue[4] = obj  # second half of the glued line
                pending_glue = None
            else:
                row = [t, order, obj, kind, None]
                rows.append(row)
                if kind == "glued":
                    pending_glue = row
            order += 1
            prev_who = who
    rows.sort(key=lambda r: (r[0], r[1]))

    lines, malformed = [], []
    ascii_counter = 0
    for lineno, (t, _, obj, kind, extra) in enumerate(rows, start=1):
        if kind == "missing_role":
            obj = {k: v for k, v in obj.items() if k != "role"}
        if kind in (None, "empty", "text_number", "missing_role", "unknown_role"):
            ascii_counter += 1
            # every 11th ordinary line is written with \uXXXX escapes, like some loggers do
            data = json.dumps(obj, ensure_ascii=(ascii_counter % 11 == 0)).encode("utf-8")
        elif kind == "truncated":
            full = json.dumps(obj, ensure_ascii=False)
            data = full[: full.index('"role"') + 9].encode("utf-8")
        elif kind == "trailing_garbage":
            data = (json.dumps(obj, ensure_ascii=False) + "}}").encode("utf-8")
        elif kind == "pyrepr":
            data = repr(obj).encode("utf-8")
        elif kind == "glued":
            data = (json.dumps(obj, ensure_ascii=False) + json.dumps(extra, ensure_ascii=False)).encode("utf-8")
        elif kind == "bad_utf8":
            data = json.dumps(obj, ensure_ascii=False).encode("utf-8").replace("\ue000".encode("utf-8"), b"\xff\xfe")
        else:
            raise ValueError(kind)
        if kind is not None:
            malformed.append((lineno, obj["session_id"], kind, MALFORMED_REASON[kind]))
        lines.append(data)
    return lines, malformed, rows


def session_gaps(rows, threshold_s=30 * 60):
    by_sid = {}
    for t, _, obj, kind, extra in rows:
        by_sid.setdefault(obj["session_id"], []).append(t)
        if extra is not None:
            by_sid[obj["session_id"]].append(datetime.fromisoformat(extra["timestamp"]))
    out = {}
    for sid, ts in by_sid.items():
        ts.sort()
        gaps = [(b - a).total_seconds() for a, b in zip(ts, ts[1:])]
        out[sid] = (max(gaps) if gaps else 0.0, [(ts[i], ts[i + 1]) for i, g in enumerate(gaps) if g > threshold_s])
    return out


# --------------------------------------------------------------------------------------
# 2. CSV export with different column names  logs/support_export.csv
# --------------------------------------------------------------------------------------
CS = [
    dict(sid="cs-20261101-001", uid="c_58213", start="09:12:00", rows=[
        ("customer", "你好，我的订单 TF202610280451 显示已发货三天了，物流一直没更新"),
        ("customer", "能帮我查一下吗"),
        ("agent", "您好，很高兴为您服务。请稍等，我帮您查询一下订单 TF202610280451 的物流信息。"),
        ("agent", "查到了，您的包裹目前在转运中心滞留，原因是当地近期件量较大，预计 1-2 天内恢复派送。"),
        ("customer", "可是我周三就要用，能不能加急？"),
        ("agent", "理解您的着急。我这边已经为您提交了催件申请，转运中心会优先处理，派送前派送员会联系您。"),
        ("customer", "派送员会打哪个电话？我下单留的是 137 0628 4519，但那个号现在不常用了"),
        ("agent", "可以帮您修改联系电话。请提供新的手机号，我们会同步给快递公司。"),
        ("customer", "新的是 18955023761"),
        ("agent", "好的，已将联系电话更新为 189****3761，派送员会联系这个号码。"),
        ("customer", "好的，谢谢"),
        ("customer", "如果周三还没到怎么办，能退吗"),
        ("agent", '如果到周三仍未送达，您可以在订单页面点击"申请退款"，原因选"未收到货"，审核通过后款项会在 1-3 个工作日原路退回。'),
        ("customer", "行，那我再等等"),
        ("agent", "好的，有任何问题随时联系我们，祝您生活愉快！"),
    ]),
    dict(sid="cs-20261101-002", uid="c_77102", start="10:03:00", rows=[
        ("customer", "我收到的杯子碎了，怎么退款"),
        ("agent", "非常抱歉给您带来不好的体验！请问是订单 TF202610300117 中的“简约陶瓷马克杯（2 只装）”吗？"),
        ("customer", "对，两个碎了一个"),
        ("agent", "麻烦您拍几张照片上传：外包装、破损的杯子，以及快递面单。"),
        ("customer", "[图片]"),
        ("customer", "[图片]"),
        ("customer", "传好了，面单那张有点糊, 将就看吧"),
        ("agent", "收到，照片可以看清破损情况。您希望补发一只，还是退款？"),
        ("customer", "退款吧，不想再等了"),
        ("agent", "好的，两只装共 59.00 元，破损一只，为您申请退款 29.50 元，另外补偿一张 5 元优惠券，您看可以吗？"),
        ("customer", "可以，退到哪里？"),
        ("agent", "原路退回到您的支付账户，一般 1-3 个工作日到账。\n退款单号：RF20261101004419\n优惠券已发放到您的账户，有效期 30 天。"),
        ("customer", "破的那个需要寄回去吗"),
        ("agent", "不需要寄回，请注意安全，小心碎片划伤手。"),
        ("customer", "好嘞，谢谢，效率挺高的"),
        ("agent", "感谢您的理解和支持！如果对本次服务满意，欢迎给个好评 😊"),
    ]),
    dict(sid="cs-20261101-003", uid="c_30967", start="10:09:00", rows=[
        ("customer", "下单地址填错了，能改吗？订单号 TF202611010032"),
        ("agent", "您好！订单还没有出库，可以修改。请提供新的收货信息：收件人、电话、详细地址。"),
        ("customer", "收件人：陈晓\n电话：13512097648\n地址：浙江省杭州市西湖区文三路 88 号, 某某大厦 12F, Room 1203"),
        ("agent", "好的，我核对一下：\n收件人：陈晓\n电话：135****7648\n地址：浙江省杭州市西湖区文三路 88 号, 某某大厦 12F, Room 1203\n请确认是否正确？"),
        ("customer", "对的"),
        ("agent", "已为您修改成功，新地址会同步到物流系统。"),
        ("customer", "另外我想问下，能开发票吗"),
        ("agent", "可以的，请问您需要个人抬头还是企业抬头？"),
        ("customer", "企业，抬头是 杭州某某科技有限公司，税号 91330106MA2H7KQ51D"),
        ("customer", "发票发到邮箱 chenxiao_work@example.com"),
        ("agent", "好的，电子发票会在发货后 24 小时内发送到 chenxiao_work@example.com，请注意查收。"),
        ("customer", "好, 那大概什么时候发货"),
        ("agent", "预计今天下午 6 点前出库，明天可以送达杭州市区。"),
        ("customer", "ok"),
        ("agent", "感谢您的耐心，祝您购物愉快！"),
    ]),
    dict(sid="cs-20261101-004", uid="c_58213", start="15:30:00", rows=[
        ("customer", "我上午刚买的耳机，下午就降价了 50，能补差价吗"),
        ("agent", "您好，请提供一下订单号，我帮您查看是否符合价格保护规则。"),
        ("customer", "TF202611010418"),
        ("agent", "查到了，该商品支持 7 天价保，购买价 399 元，当前价 349 元，可以为您申请 50 元差价补偿。"),
        ("customer", "好的，补到哪里"),
        ("agent", "差价会以余额形式退回您的账户，可用于下次购物，也可以提现到原支付方式。"),
        ("customer", f"能直接退到银行卡吗，卡号 {group4(CARD3)}"),
        ("agent", "为了您的信息安全，请不要在对话中发送银行卡号。差价会原路退回到您付款时使用的支付方式，无需提供卡号。"),
        ("customer", "哦哦，好的"),
        ("customer", "还有，耳机左耳有时候没声音"),
        ("agent", "很抱歉。请先试试：\n1. 把耳机放回充电盒，长按盒子按钮 10 秒重置;\n2. 在手机蓝牙设置里删除设备, 然后重新配对。"),
        ("customer", "重置之后好了"),
        ("agent", "太好了！如果之后再出现这个问题，7 天内可以直接申请换货。"),
        ("customer", "行，没别的了"),
        ("agent", "好的，感谢您的支持，祝您生活愉快！"),
    ]),
    dict(sid="cs-20261101-005", uid="c_91544", start="20:05:00", rows=[
        ("customer", "你们怎么回事？？"),
        ("customer", "说好今天到的，现在还没到"),
        ("customer", "我明天一早就要出差了"),
        ("agent", "非常抱歉让您久等了！麻烦提供一下订单号，我马上帮您查询。"),
        ("customer", "TF202610310977"),
        ("agent", "查到了，包裹今天下午已到达您所在的站点，派送员正在派送途中，预计晚上 9 点前送达。"),
        ("customer", "9 点前一定能到吗，到不了我就不要了"),
        ("agent", "我已经联系站点加急，派送员会先给您打电话。如果 9 点前仍未送达，您可以拒收，我们会为您全额退款。"),
        ("customer", "派送员电话多少"),
        ("agent", "派送员：刘师傅，电话 176 3908 2254。"),
        ("customer", "打通了，说 20 分钟到"),
        ("agent", "好的，那请您再稍等一下。"),
        ("customer", "到了"),
        ("customer", "东西没问题"),
        ("agent", "太好了！再次为延误向您道歉，已为您的账户发放一张 10 元无门槛优惠券。"),
        ("customer", "行吧，下次快点"),
        ("agent", "收到您的反馈，我们会持续改进，祝您出差顺利！"),
    ]),
]


def build_csv() -> bytes:
    rng = random.Random(11)
    out = []
    order = 0
    for sess in CS:
        h, m, s = map(int, sess["start"].split(":"))
        t = DAY.replace(hour=h, minute=m, second=s)
        prev = None
        for i, (speaker, msg) in enumerate(sess["rows"]):
            if i:
                t += timedelta(seconds=rng.randint(5, 20) if speaker == prev else rng.randint(20, 120))
            out.append((int(t.timestamp()), order, sess["sid"], sess["uid"], speaker, msg))
            order += 1
            prev = speaker
    out.sort(key=lambda r: (r[0], r[1]))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["sid", "uid", "ts", "speaker", "msg"])
    for ts, _, sid, uid, speaker, msg in out:
        w.writerow([sid, uid, ts, speaker, msg])
    return buf.getvalue().encode("utf-8")


# --------------------------------------------------------------------------------------
# 3./4. ShareGPT
# --------------------------------------------------------------------------------------
def conv(*turns):
    """turns: ('h'|'g'|'s'|other, value)"""
    m = {"h": "human", "g": "gpt", "s": "system"}
    return [{"from": m.get(f, f), "value": v} for f, v in turns]


SHAREGPT = [
    conv(("h", "用一句话解释什么是机器学习"),
         ("g", "机器学习是让计算机从数据中自动总结规律，再用这些规律对新数据做出预测或决策的方法。"),
         ("h", "那深度学习呢"),
         ("g", "深度学习是机器学习的一个分支，用多层神经网络自动学习特征，特别擅长处理图像、语音和文本。")),
    conv(("s", "You are a patient math tutor."),
         ("h", "What is the derivative of x^3 + 2x?"),
         ("g", "The derivative is 3x^2 + 2."),
         ("h", "and the second derivative?"),
         ("g", "Differentiate again: 6x."),
         ("h", "evaluate it at x = 2"),
         ("g", "6 × 2 = 12.")),
    conv(("h", "Python 怎么读取 JSON 文件？"),
         ("g", '```python\nimport json\nwith open("config.json", encoding="utf-8") as f:\n    data = json.load(f)\n```\n`json.load` 直接从文件对象读取并解析。'),
         ("h", "写回去的时候中文变成了 \\u 转义怎么办"),
         ("g", '写入时加上 ensure_ascii=False：`json.dump(data, f, ensure_ascii=False, indent=2)`，同时打开文件时要指定 encoding="utf-8"。')),
    conv(("h", "Any tips for keeping houseplants alive?"),
         ("g", "Most houseplants die from overwatering. Check the soil with your finger and water only when the top 2-3 cm are dry, give them bright indirect light, and use pots with drainage holes."),
         ("h", "what about in winter?"),
         ("g", "Water less often, since growth slows down, keep them away from cold windows and heaters, and skip fertiliser until spring.")),
    conv(("h", "一个数的 3 倍加上 8 等于 35，这个数是多少？"),
         ("g", "设这个数为 x，则 3x + 8 = 35，3x = 27，x = 9。")),
    conv(("h", "What's the difference between WHERE and HAVING?"),
         ("g", "WHERE filters rows before grouping; HAVING filters groups after aggregation. For example, `WHERE amount > 0` drops individual rows, while `HAVING COUNT(*) > 5` keeps only groups with more than five rows."),
         ("h", "can I use both in one query?"),
         ("g", "Yes:\n```sql\nSELECT city, COUNT(*) AS n\nFROM customers\nWHERE active = 1\nGROUP BY city\nHAVING COUNT(*) > 5;\n```")),
    conv(("h", "怎么用 git 撤销最近一次 commit，但保留改动？"),
         ("g", "用 `git reset --soft HEAD~1`，提交会被撤销，改动仍然留在暂存区。"),
         ("h", "如果已经 push 了呢"),
         ("g", "已经推送的提交最好用 `git revert HEAD` 生成一个反向提交，不要改写共享分支的历史。"),
         ("h", "revert 会不会删掉我的文件"),
         ("g", "不会删除工作区里的其他文件，它只是新增一个提交，把那次提交引入的改动反过来。")),
    # starts with gpt
    conv(("g", "Hi! I'm your study buddy. What would you like to review today?"),
         ("h", "fractions. what is 3/4 + 2/3?"),
         ("g", "Use the common denominator 12: 9/12 + 8/12 = 17/12, or 1 5/12."),
         ("h", "and 3/4 × 2/3?"),
         ("g", "Multiply straight across: 6/12 = 1/2.")),
    conv(("h", "周末下雨，在家做点什么好"),
         ("g", "可以看一部一直想看的电影，做一顿稍微复杂点的饭，或者把书架整理一下。想动一动的话，跟着视频做二十分钟拉伸也不错。"),
         ("h", "推荐一道适合新手的菜"),
         ("g", "可乐鸡翅：鸡翅两面划刀，焯水后煎到金黄，倒入一罐可乐和两勺生抽，小火收汁十五分钟即可。")),
    conv(("h", "Write a Python function that checks whether a string is a palindrome."),
         ("g", '```python\ndef is_palindrome(s: str) -> bool:\n    cleaned = [c.lower() for c in s if c.isalnum()]\n    return cleaned == cleaned[::-1]\n```\nIt ignores case, spaces and punctuation, so "Never odd or even" returns True.'),
         ("h", "does it work with chinese?"),
         ("g", 'Yes. Chinese characters count as alphanumeric in Python, so "上海自来水来自海上" returns True.')),
    conv(("h", "求 1 到 50 中所有 3 的倍数之和"),
         ("g", "3 的倍数有 3, 6, ..., 48，共 16 个。和为 3 × (1 + 2 + ... + 16) = 3 × 136 = 408。"),
         ("h", "那 5 的倍数呢"),
         ("g", "5, 10, ..., 50 共 10 个，和为 5 × (1 + 2 + ... + 10) = 5 × 55 = 275。")),
    # ends with a dangling human turn
    conv(("h", "Can you recommend a way to build a reading habit?"),
         ("g", "Start tiny: read two pages every night right after brushing your teeth, keep the book on your pillow, and track the streak on a calendar."),
         ("h", "what if I keep falling asleep while reading?")),
    # unknown "from" value
    conv(("h", "讲一个很短的睡前故事"),
         ("narrator", "（此处插入背景音乐）"),
         ("g", "从前有一只小刺猬，它想抱抱月亮。它爬上最高的山，发现月亮还是很远，于是抱了抱山顶的石头，说：今天先抱你，明天再去找月亮。然后它就睡着了。")),
    # empty value
    conv(("h", "translate to English: 今天天气真好"),
         ("g", "The weather is really nice today."),
         ("h", ""),
         ("g", "It looks like your message was empty. Is there anything else you'd like me to translate?")),
    conv(("s", "你是一名资深后端工程师，回答要给出代码示例。"),
         ("h", "Redis 怎么设置一个 10 分钟过期的 key"),
         ("g", '用 SET 命令带 EX 参数：`SET session:42 "data" EX 600`。Python 里：`r.set("session:42", "data", ex=600)`。'),
         ("h", "怎么查看还剩多久过期"),
         ("g", "用 `TTL session:42`，返回剩余秒数；返回 -1 表示没有设置过期时间，-2 表示 key 不存在。")),
    conv(("h", "If a train travels 180 km in 2.5 hours, what's its average speed?"),
         ("g", "180 ÷ 2.5 = 72 km/h."),
         ("h", "how long would 300 km take at that speed?"),
         ("g", "300 ÷ 72 ≈ 4.17 hours, about 4 hours 10 minutes.")),
    conv(("h", "帮我把这句话改得更礼貌：把报告明天早上之前发我"),
         ("g", "麻烦您在明天上午之前把报告发给我，辛苦了，谢谢！")),
    conv(("h", "How do I find all .log files larger than 100MB on Linux?"),
         ("g", '```bash\nfind / -type f -name "*.log" -size +100M 2>/dev/null\n```'),
         ("h", "and delete them?"),
         ("g", 'Add -delete at the end, but run it once without -delete first to review the list:\n```bash\nfind /var/log -type f -name "*.log" -size +100M -delete\n```')),
    conv(("h", "what does 'yyds' mean in Chinese internet slang?"),
         ("g", "它是“永远的神”的拼音缩写，用来夸某人或某样东西非常厉害，类似英文里的 GOAT。"),
         ("h", "give me an example sentence"),
         ("g", "“这家店的小笼包 yyds！” It means the soup dumplings at this place are the best ever.")),
    conv(("h", "MySQL 里怎么查出重复的手机号"),
         ("g", "```sql\nSELECT phone, COUNT(*) AS cnt\nFROM users\nGROUP BY phone\nHAVING COUNT(*) > 1;\n```"),
         ("h", "只保留 id 最小的那条，删掉其他的"),
         ("g", "```sql\nDELETE u1 FROM users u1\nJOIN users u2 ON u1.phone = u2.phone AND u1.id > u2.id;\n```\n执行前建议先备份表。")),
    conv(("h", "Tell me a fun fact about octopuses."),
         ("g", "An octopus has three hearts: two pump blood through the gills and one pumps it to the rest of the body.")),
    conv(("h", "解不等式 2x - 5 > 7"),
         ("g", "2x > 12，所以 x > 6。"),
         ("h", "那 -2x - 5 > 7 呢"),
         ("g", "-2x > 12，两边同除以 -2 要变号，所以 x < -6。")),
    conv(("h", "I want to learn Chinese. where do I start?"),
         ("g", "Start with pinyin and the four tones, then learn high-frequency characters and simple phrases like 你好 (hello) and 谢谢 (thank you)."),
         ("h", "how many tones again?"),
         ("g", "Four main tones plus a neutral tone, for example mā, má, mǎ, mà."),
         ("h", "what does 妈 mean"),
         ("g", "妈 (mā) means mom."),
         ("h", "and 马?"),
         ("g", "马 (mǎ) means horse: same syllable, third tone."),
         ("h", "that's tricky lol"),
         ("g", "It is at first! Practising with pairs like these trains your ear quickly."),
         ("h", "ok thanks, 谢谢!"),
         ("g", "不客气! (You're welcome!)")),
    conv(("h", "电脑开机很慢怎么办"),
         ("g", "可以先在任务管理器的“启动”页禁用不必要的开机自启程序，再检查磁盘剩余空间。如果还是机械硬盘，换成固态硬盘提升最明显。")),
    conv(("h", "Explain Python's `with` statement in two sentences."),
         ("g", "The with statement wraps a block in a context manager that sets something up before the block and cleans it up afterwards. Its most common use is opening files so they are closed automatically, even if an exception happens.")),
    conv(("h", "JavaScript 里 == 和 === 有什么区别"),
         ("g", '== 会先做类型转换再比较，=== 要求类型和值都相同。比如 0 == "0" 是 true，0 === "0" 是 false。一般推荐用 ===。'),
         ("h", "null == undefined 呢"),
         ("g", "是 true；但 null === undefined 是 false。")),
    conv(("h", "What is 7! ?"),
         ("g", "7! = 5040."),
         ("h", "how many ways can 7 people sit in a row?"),
         ("g", "Exactly 7! = 5040 arrangements."),
         ("h", "and around a round table?"),
         ("g", "Rotations count as the same seating, so (7 - 1)! = 720.")),
    conv(("h", "帮我写一条请假短信，我叫李明，电话 13706284519"),
         ("g", "王经理您好，我是李明，因身体不适需要请假一天（11 月 3 日），工作已交接给同事，有急事可拨打 137 0628 4519 联系我。谢谢！")),
    conv(("h", "What's a good name for a grey cat?"),
         ("g", "Some ideas: Smokey, Ash, Pebble, Earl Grey or Misty."),
         ("h", "something chinese?"),
         ("g", 'You could try 灰灰 (Huīhuī, "little grey"), 汤圆 (Tāngyuán, a sweet rice ball) or 芝麻 (Zhīma, "sesame").')),
    conv(("h", "Python 的 f-string 怎么保留两位小数"),
         ("g", '`f"{3.14159:.2f}"` 得到 \'3.14\'。'),
         ("h", "加千分位呢"),
         ("g", '`f"{1234567.891:,.2f}"` 得到 \'1,234,567.89\'。')),
    conv(("s", "Answer like a friendly librarian."),
         ("h", "How do I cite a website in APA style?"),
         ("g", "A basic APA 7 reference looks like: Author, A. (Year, Month Day). Title of page. Site Name. URL. If there's no author, start with the page title.")),
    conv(("h", "sin 30° 加 cos 60° 等于多少"),
         ("g", "sin 30° = 1/2，cos 60° = 1/2，所以和为 1。"),
         ("h", "tan 45° 呢"),
         ("g", "tan 45° = 1。")),
]

SHAREGPT_ARRAY = [
    conv(("h", "What's the capital of Australia?"),
         ("g", "Canberra."),
         ("h", "why not Sydney?"),
         ("g", "Canberra was chosen as a compromise between the rival cities Sydney and Melbourne, and was built specifically to be the capital.")),
    conv(("h", "帮我写一个冒泡排序"),
         ("g", "```python\ndef bubble_sort(a):\n    n = len(a)\n    for i in range(n - 1):\n        swapped = False\n        for j in range(n - 1 - i):\n            if a[j] > a[j + 1]:\n                a[j], a[j + 1] = a[j + 1], a[j]\n                swapped = True\n        if not swapped:\n            break\n    return a\n```"),
         ("h", "时间复杂度呢"),
         ("g", "最坏和平均情况都是 O(n²)；数组已经有序时，因为有提前退出的判断，只需 O(n)。")),
    conv(("s", "You are a terse assistant."),
         ("h", "2^8?"),
         ("g", "256.")),
    conv(("h", "推荐几个适合秋天的户外活动"),
         ("g", "爬山看红叶、去郊外骑行、在公园野餐，或者去果园摘苹果。"),
         ("h", "骑行要准备什么"),
         ("g", "头盔、手套、水壶和简单的补胎工具，出发前检查一下刹车和胎压。")),
    conv(("h", "How do I convert Celsius to Fahrenheit?"),
         ("g", "F = C × 9/5 + 32. For example, 25 °C is 77 °F."),
         ("h", "and -40?"),
         ("g", "-40 × 9/5 + 32 = -40, so -40 °C equals -40 °F.")),
    conv(("h", "等差数列首项 2，公差 3，第 20 项是多少"),
         ("g", "a₂₀ = 2 + 19 × 3 = 59。"),
         ("h", "前 20 项和呢"),
         ("g", "S₂₀ = 20 × (2 + 59) / 2 = 610。")),
    conv(("h", "How to merge two dicts in Python 3.9+?"),
         ("g", "Use the | operator: `merged = a | b`. Keys in b win on conflict."),
         ("h", "如果是更早的版本呢"),
         ("g", "用 `{**a, **b}`，效果一样，Python 3.5 以上都支持。")),
    conv(("h", "早上起不来怎么办"),
         ("g", "固定起床时间，周末也一样；闹钟放远一点，必须下床才能关掉；起床后马上拉开窗帘晒晒太阳，有助于清醒。")),
    conv(("h", "How do I count distinct users per day?"),
         ("g", "```sql\nSELECT DATE(created_at) AS day, COUNT(DISTINCT user_id) AS users\nFROM events\nGROUP BY DATE(created_at)\nORDER BY day;\n```"),
         ("h", "and only days with more than 100 users?"),
         ("g", "Add `HAVING COUNT(DISTINCT user_id) > 100` after the GROUP BY.")),
]


def build_sharegpt_lines():
    items = [{"id": f"sg-{i + 1:04d}", "conversations": c} for i, c in enumerate(SHAREGPT)]
    # duplicate 1: conversation sg-0005 again under a new id (same conversations, other id)
    dup_new_id = {"id": f"sg-{len(items) + 1:04d}", "conversations": SHAREGPT[4]}
    # duplicate 2: the whole line of sg-0021 repeated verbatim (same id too)
    dup_same = items[20]
    out = items[:13] + [dup_new_id] + items[13:27] + [dup_same] + items[27:]
    return out


# --------------------------------------------------------------------------------------
# 5. Alpaca with history
# --------------------------------------------------------------------------------------
def alp(instruction, output, input_="", history=()):
    return {"instruction": instruction, "input": input_, "output": output, "history": [list(p) for p in history]}


ALPACA = [
    alp("将下面的句子翻译成英文", "I'm going to the library tomorrow to return a book.", "我明天要去图书馆还书。"),
    alp("Summarize the text in one sentence.",
        "The council approved a three-year, 40 km bike lane expansion that supporters see as safer and greener, though some shop owners fear losing parking.",
        "The city council voted on Tuesday to expand the bike lane network by 40 kilometres over the next three years. Supporters say it will reduce traffic and improve safety, while some shop owners worry about losing parking spaces."),
    alp("那周长是多少？", "周长 = 2 × (8 + 5) = 26 厘米。",
        history=[("一个长方形长 8 厘米，宽 5 厘米，面积是多少？", "面积 = 8 × 5 = 40 平方厘米。")]),
    alp("Now make it handle negative numbers too.",
        'Factorial is not defined for negative integers, so raise an error:\n```python\ndef factorial(n):\n    if n < 0:\n        raise ValueError("n must be non-negative")\n    result = 1\n    for i in range(2, n + 1):\n        result *= i\n    return result\n```',
        history=[("Write a Python function that returns the factorial of n.",
                  "```python\ndef factorial(n):\n    result = 1\n    for i in range(2, n + 1):\n        result *= i\n    return result\n```")]),
    alp("计算下面表达式的值", "15 - 3 = 12，12 × 4 = 48，48 ÷ 6 = 8。结果是 8。", "(15 - 3) × 4 ÷ 6"),
    alp("写一个 SQL 查询", "```sql\nSELECT id, name, score\nFROM students\nORDER BY score DESC\nLIMIT 5;\n```",
        "表 students(id, name, score)，查出分数最高的前 5 名学生"),
    alp("What about the median?", "Sorted: 3, 5, 7, 9, 11. The median is the middle value, 7.",
        history=[("What is the mean of 3, 7, 5, 11, 9?", "(3 + 7 + 5 + 11 + 9) / 5 = 35 / 5 = 7.")]),
    alp("再推荐一个不辣的", "可以试试番茄牛腩：酸甜开胃，一点都不辣，牛腩炖一个半小时就很软烂了。",
        history=[("晚饭想吃点川菜，推荐一道", "推荐麻婆豆腐，麻辣鲜香，下饭又简单。"),
                 ("麻婆豆腐要用什么豆腐", "用嫩豆腐或者南豆腐，切块后先在淡盐水里焯一下，不容易碎。")]),
    alp("Give three tips for writing clear emails.",
        '1. Put the main point or request in the first two sentences.\n2. Keep paragraphs short and use bullet points for lists.\n3. Write a specific subject line, e.g. "Budget draft due Friday" instead of "Update".'),
    alp("解释下面这段代码的作用", "它对列表中的奇数 1、3、5 先求平方再求和：1 + 9 + 25 = 35，所以会打印 35。",
        "```python\nnums = [1, 2, 3, 4, 5]\nprint(sum(x * x for x in nums if x % 2))\n```"),
    alp("And in Celsius?", "(98.6 - 32) × 5/9 = 37 °C.",
        history=[("What is normal human body temperature in Fahrenheit?", "About 98.6 °F.")]),
    alp("用一句话描述秋天", "秋天是风把树叶染成金黄，再一片片送回大地的季节。"),
    alp("Fix the bug in this function.",
        "It divides by `len(x)`, the last element, instead of `len(xs)`, and it would also fail on an empty list. Fixed:\n```python\ndef average(xs):\n    if not xs:\n        return 0.0\n    return sum(xs) / len(xs)\n```",
        "```python\ndef average(xs):\n    total = 0\n    for x in xs:\n        total += x\n    return total / len(x)\n```"),
    alp("那如果是复利呢？", "复利本息和 = 10000 × 1.05³ = 11576.25 元，利息为 1576.25 元，比单利多 76.25 元。",
        history=[("本金 10000 元，年利率 5%，存 3 年，单利利息是多少？", "单利利息 = 10000 × 5% × 3 = 1500 元。")]),
    alp("Classify the sentiment of the review as positive, negative or neutral.", "Negative",
        "The delivery was fast but the headphones stopped working after two days."),
    alp("把下面的数字从小到大排列", "1/3 ≈ 0.333，2/5 = 0.4，所以顺序是 1/3 < 2/5 < 0.45 < 0.5。", "0.5, 1/3, 0.45, 2/5"),
    alp("Can you make it a one-liner?",
        '```python\nprint(__import__("collections").Counter("the cat and the hat".split()))\n```\nIt works, but the multi-line version is easier to read.',
        history=[("Write Python code to count word frequencies in a sentence.",
                  '```python\nfrom collections import Counter\n\nsentence = "the cat and the hat"\ncounts = Counter(sentence.split())\nprint(counts)\n```')]),
    alp("帮我起一个奶茶店的名字", "“半山茶事”：听起来安静又有点诗意，适合走清新路线的小店。"),
    alp("Solve the system of equations.", "Adding the equations gives 2x = 14, so x = 7 and y = 3.", "x + y = 10\nx - y = 4"),
    alp("那第二天呢", "第二天上午登城墙，可以租自行车骑一圈；下午去博物馆（记得提前预约）；晚上去小吃街逛逛。",
        history=[("帮我规划一下西安两日游的第一天", "上午去兵马俑，下午回城逛大雁塔，晚上在回民街吃小吃。")]),
    alp("What's the time complexity of binary search, and why?",
        "O(log n): each comparison halves the remaining search range, so at most about log₂ n steps are needed."),
    alp("把这段话改写得更简洁", "因天气原因，今天下午的户外活动推迟到下周，请互相转告。",
        "由于今天天气的原因，我们原定于今天下午举行的户外活动将不得不推迟到下周举行，请大家互相转告。"),
    alp("and the probability of getting exactly two heads?", "There are C(3,2) = 3 favourable outcomes out of 8, so 3/8.",
        history=[("If I flip a fair coin 3 times, how many outcomes are possible?", "2³ = 8 outcomes."),
                 ("probability of getting all heads?", "Only HHH works, so 1/8.")]),
    alp("写一个正则表达式匹配中国大陆手机号",
        '```python\nimport re\npattern = re.compile(r"^1[3-9]\\d{9}$")\nprint(bool(pattern.match("19912340000")))  # True\n```\n以 1 开头，第二位是 3-9，总共 11 位数字。'),
    alp("Rewrite this sentence in passive voice.", "The new policy was approved by the committee.",
        "The committee approved the new policy."),
]


# --------------------------------------------------------------------------------------
# 6. OpenAI messages
# --------------------------------------------------------------------------------------
def oa(*turns):
    m = {"s": "system", "u": "user", "a": "assistant"}
    return {"messages": [{"role": m[r], "content": c} for r, c in turns]}


OPENAI = [
    oa(("s", "你是一个简洁的助手。"), ("u", "北京到上海高铁大概要多久"),
       ("a", "最快的班次大约 4 个半小时，普通班次一般 5 到 6 小时。")),
    oa(("u", "What's the difference between a list and a tuple in Python?"),
       ("a", "Lists are mutable and tuples are immutable. Use tuples for fixed collections such as coordinates, and lists for collections that change."),
       ("u", "can a tuple be a dict key?"),
       ("a", "Yes, as long as all of its elements are hashable too. (1, 2) works; (1, [2]) does not.")),
    oa(("s", "You are a math tutor. Show your steps."), ("u", "Factor x^2 + 7x + 12"),
       ("a", "Find two numbers that multiply to 12 and add to 7: 3 and 4. So x^2 + 7x + 12 = (x + 3)(x + 4)."),
       ("u", "and x^2 - 9?"), ("a", "It's a difference of squares: (x - 3)(x + 3).")),
    oa(("u", "帮我想一个周五团建的活动"),
       ("a", "可以组织剧本杀或密室逃脱，两三个小时，适合 8 到 12 人，结束后再一起吃顿饭。"),
       ("u", "预算每人 150 够吗"),
       ("a", "一般够。密室逃脱人均 80 到 120 元，剩下的可以吃个简单的晚饭，不够的话 AA 加菜。")),
    oa(("u", "Write a SQL query to find employees who earn more than their managers."),
       ("a", "```sql\nSELECT e.name\nFROM employees e\nJOIN employees m ON e.manager_id = m.id\nWHERE e.salary > m.salary;\n```")),
    oa(("s", "Always answer in English, even if the user writes in Chinese."), ("u", "今天有点累"),
       ("a", "Sorry to hear you're tired. Maybe take a short break, drink some water and step outside for a few minutes if you can.")),
    oa(("u", "为什么在 Python 里 0.1 + 0.2 不等于 0.3"),
       ("a", "因为 0.1 和 0.2 在二进制浮点数里无法精确表示，相加后得到 0.30000000000000004。比较时用 math.isclose(0.1 + 0.2, 0.3)，或者用 decimal 模块做精确计算。")),
    oa(("u", "Give me a 3-day workout plan for beginners."),
       ("a", "Day 1: 20 squats, 10 push-ups (on your knees is fine), 30 s plank, 3 rounds.\nDay 2: 30-minute brisk walk or light jog.\nDay 3: 15 lunges per leg, 12 glute bridges, 10 dumbbell rows per arm, 3 rounds.\nRest at least one day between strength days."),
       ("u", "what about stretching?"),
       ("a", "Add 5-10 minutes after each session: hamstring stretch, quad stretch, chest opener and child's pose, holding each for about 30 seconds.")),
    oa(("s", "你是一名 Python 讲师。"), ("u", "什么是装饰器"),
       ("a", '装饰器是一个接收函数、返回新函数的函数，用来在不修改原函数的情况下增加功能。\n```python\ndef log(func):\n    def wrapper(*args, **kwargs):\n        print("calling", func.__name__)\n        return func(*args, **kwargs)\n    return wrapper\n\n@log\ndef hello():\n    print("hi")\n```'),
       ("u", "wrapper 里为什么要用 *args"),
       ("a", "这样 wrapper 能接收任意参数，再原样传给被装饰的函数，同一个装饰器就能用在不同签名的函数上。")),
    oa(("u", "How many seconds are in a day?"), ("a", "24 × 60 × 60 = 86,400 seconds.")),
    oa(("u", "我想养一只猫，需要准备什么"),
       ("a", "基础的有：猫粮、猫砂和猫砂盆、食盆水盆、猫抓板、航空箱。接回家后一周内带去做体检和驱虫。"),
       ("u", "猫砂哪种好"),
       ("a", "豆腐猫砂结团好、可以冲马桶；膨润土猫砂便宜、除臭好，但灰尘大一些，可以根据家里情况选择。")),
    oa(("u", "Translate 'better late than never' into Chinese."), ("a", "晚做总比不做好。")),
    oa(("s", "You are a helpful assistant."), ("u", "what's 12.5% of 640?"), ("a", "0.125 × 640 = 80."),
       ("u", "and 640 increased by 12.5%?"), ("a", "640 + 80 = 720.")),
    oa(("u", "用 Python 写一个函数判断是否为质数"),
       ("a", "```python\ndef is_prime(n: int) -> bool:\n    if n < 2:\n        return False\n    i = 2\n    while i * i <= n:\n        if n % i == 0:\n            return False\n        i += 1\n    return True\n```"),
       ("u", "97 是质数吗"),
       ("a", "是。√97 < 10，而 97 不能被 2、3、5、7 整除，所以是质数。")),
    oa(("u", "Is it rude to leave a group chat without saying anything?"),
       ("a", 'Usually not, especially in large groups. In a small group of friends or colleagues, a quick "I\'m stepping out of this chat, message me directly if you need me" is a kind touch.')),
    oa(("s", "你是旅行顾问，回答控制在 50 字以内。"), ("u", "成都三天怎么玩"),
       ("a", "第一天宽窄巷子、人民公园喝茶；第二天熊猫基地、春熙路；第三天去都江堰或青城山。")),
    oa(("u", "Explain recursion to a 10-year-old."),
       ("a", "Recursion is when you solve a problem by solving a smaller copy of the same problem. Think of nesting dolls: to open them all, you open one, then do the same thing with the smaller doll inside, until you reach the tiniest one."),
       ("u", "show me in code"),
       ("a", '```python\ndef count_down(n):\n    if n == 0:\n        print("Liftoff!")\n        return\n    print(n)\n    count_down(n - 1)\n```')),
    oa(("u", "解方程组：2x + y = 11，x - y = 1"), ("a", "两式相加得 3x = 12，x = 4，代入得 y = 3。")),
    oa(("u", "How do I undo 'git add' for one file?"),
       ("a", "Use `git restore --staged path/to/file`. On older Git versions: `git reset HEAD path/to/file`.")),
    oa(("s", "You are a friendly chat companion."), ("u", "I finally finished my first marathon!"),
       ("a", "Congratulations! That's a huge achievement. How did it feel crossing the finish line?"),
       ("u", "exhausted but happy, 4h 32m"),
       ("a", "4:32 is a great time for a first marathon. Rest, eat well and take a few easy days before running again.")),
    oa(("u", "一年有多少周"), ("a", "平年 365 天，365 ÷ 7 = 52 周余 1 天；闰年是 52 周余 2 天。")),
    oa(("u", "What's the SQL to add a column with a default value?"),
       ("a", "```sql\nALTER TABLE users ADD COLUMN status VARCHAR(20) NOT NULL DEFAULT 'active';\n```")),
    oa(("u", "怎么礼貌地拒绝同事周末加班的请求"),
       ("a", "可以这样说：“这个周末我已经有安排了，实在抽不开身。如果比较急，我周一一早优先处理，你看可以吗？”")),
    oa(("s", "You are a concise assistant."), ("u", "Name three prime numbers greater than 50."), ("a", "53, 59 and 61.")),
]


# --------------------------------------------------------------------------------------
# 7. topic-shift labels: null for the first message, 1 = starts a new topic, 0 = continues
# --------------------------------------------------------------------------------------
N = None
TOPIC = [
    [("u", "我想学做红烧肉", N), ("a", "先把五花肉切块焯水，再炒糖色，下肉块翻炒上色，加生抽、老抽、料酒和热水，小火炖一小时。", 0),
     ("u", "糖色怎么炒才不会苦", 0), ("a", "冰糖加少量油小火慢慢熬，变成枣红色、冒小泡时马上下肉，颜色再深就会发苦。", 0),
     ("u", "对了 Python 里怎么生成随机数", 1), ("a", "用 random 模块：random.randint(1, 10) 生成 1 到 10 的整数，random.random() 生成 0 到 1 之间的小数。", 0)],
    [("u", "What's a good beginner telescope?", N), ("a", "A 6-inch Dobsonian is a classic choice: easy to set up, gathers plenty of light and is affordable.", 0),
     ("u", "what can I see with it?", 0), ("a", "The Moon's craters, Saturn's rings, Jupiter and its four largest moons, and bright nebulae like the one in Orion.", 0),
     ("u", "and galaxies?", 0), ("a", "Bright ones like Andromeda show up as faint smudges; you'll need dark skies away from city lights.", 0)],
    [("u", "明天要面试产品经理，有点紧张", N), ("a", "正常的。可以提前准备一两个做过的项目，按“背景-目标-行动-结果”的顺序讲清楚，会踏实很多。", 0),
     ("u", "一般会问什么问题", 0), ("a", "常见的有：你最满意的产品是什么、怎么做需求优先级、和开发意见不一致怎么办。", 0),
     ("u", "顺便问下 12 乘以 15 是多少", 1), ("a", "180。", 0),
     ("u", "谢啦，那面试结束时我该问面试官什么", 1), ("a", "可以问团队目前最大的挑战是什么，或者这个岗位前三个月最需要完成什么。", 0)],
    [("u", "How do I center a div with CSS?", N), ("a", "With flexbox on the parent: display: flex; justify-content: center; align-items: center;", 0),
     ("u", "what about vertically only?", 0), ("a", "Keep display: flex and use only align-items: center, and make sure the parent has a height.", 0),
     ("u", "unrelated, but what's the capital of Canada?", 1), ("a", "Ottawa.", 0)],
    [("u", "怎么计算圆的面积", N), ("a", "S = πr²。", 0), ("u", "半径是 3 呢", 0), ("a", "S = 9π ≈ 28.27。", 0),
     ("u", "周长呢", 0), ("a", "C = 2πr = 6π ≈ 18.85。", 0)],
    [("u", "recommend a song for running", N), ("a", "Pick something around 160-180 BPM so your steps match the beat, like upbeat pop or electronic tracks.", 0),
     ("u", "中文歌呢", 0), ("a", "找节奏明快的流行歌或者摇滚就行，很多音乐 App 都有“跑步”歌单，会按步频推荐。", 0),
     ("u", "btw how do I convert a string to int in Java?", 1), ("a", 'Integer.parseInt("42") returns 42; it throws NumberFormatException if the string isn\'t a valid number.', 0),
     ("u", "and back to a string?", 0), ("a", "String.valueOf(42) or Integer.toString(42).", 0)],
    [("u", "猫为什么喜欢踩奶", N), ("a", "这是小时候吃奶留下的习惯，成年后在感到放松和安心时也会这样做。", 0),
     ("u", "那它咬我是什么意思", 0), ("a", "轻轻咬通常是在玩或者表达亲昵；如果咬得很用力，可能是玩过头了，可以停下来让它冷静一下。", 0),
     ("u", "帮我算一下 3000 元分 12 期，每期多少", 1), ("a", "3000 ÷ 12 = 250 元（不计利息）。", 0),
     ("u", "那么如果年利率是 6% 呢", 0), ("a", "按等额本息计算，月利率 0.5%，每期约 258.20 元。", 0)],
    [("u", "My laptop fan is super loud.", N), ("a", "It's usually dust or a heavy background process. Check the task manager for high CPU use and clean the vents with compressed air.", 0),
     ("u", "it's at 90% CPU from some updater", 0), ("a", "Let the update finish, or pause it and run it later when you're not using the laptop.", 0),
     ("u", "ok. Different question: how long should I boil an egg for a runny yolk?", 1), ("a", "About 6 minutes in already boiling water, then straight into cold water.", 0),
     ("u", "and hard-boiled?", 0), ("a", "Around 10 to 11 minutes.", 0)],
    [("u", "SQL 怎么统计每个部门的人数", N), ("a", "SELECT dept, COUNT(*) FROM employees GROUP BY dept;", 0),
     ("u", "只要人数超过 10 的", 0), ("a", "加上 HAVING COUNT(*) > 10。", 0),
     ("u", "按人数倒序", 0), ("a", "最后加 ORDER BY COUNT(*) DESC。", 0),
     ("u", "它能和 LIMIT 一起用吗", 0), ("a", "可以，放在 ORDER BY 后面，比如 LIMIT 3 就是人数最多的三个部门。", 0)],
    [("u", "Is it going to be cold in Tokyo in December?", N), ("a", "Cool rather than freezing: usually around 5 to 12 °C. A warm coat is enough.", 0),
     ("u", "what's 2^16?", 1), ("a", "65,536.", 0),
     ("u", "thanks. Also can you suggest a name for my bakery?", 1), ("a", 'How about "Rise & Crumb" or "Morning Loaf"?', 0)],
    [("u", "高铁上能带充电宝吗", N), ("a", "一般可以，单个容量不超过 100Wh（约 27000mAh）的都能带，具体以车站规定为准。", 0),
     ("u", "那飞机上呢", 0), ("a", "飞机更严格：一般 100Wh 以内可以随身携带，100 到 160Wh 需要航空公司同意，而且都不能托运。", 0)],
    [("u", "How do I write a for loop in Python that counts down from 10?", N), ("a", "for i in range(10, 0, -1): print(i)", 0),
     ("u", "what about in JavaScript?", 0), ("a", "for (let i = 10; i > 0; i--) { console.log(i); }", 0),
     ("u", "and in SQL lol", 0), ("a", "SQL has no loops for this, but a recursive CTE works: WITH RECURSIVE n(i) AS (SELECT 10 UNION ALL SELECT i - 1 FROM n WHERE i > 1) SELECT i FROM n;", 0)],
    [("u", "推荐一部适合周末看的电视剧", N), ("a", "想轻松可以看家庭喜剧，想烧脑可以看悬疑剧，你偏好哪种？", 0),
     ("u", "悬疑", 0), ("a", "可以选单元剧形式的悬疑剧，每个案子两三集，节奏快，不拖沓。", 0),
     ("u", "话说 x² = 49，x 等于多少", 1), ("a", "x = 7 或 x = -7。", 0)],
    [("u", "What is Rust used for?", N), ("a", "Systems programming where speed and memory safety matter: command-line tools, web servers, embedded devices and parts of browsers.", 0),
     ("u", "is it hard to learn?", 0), ("a", "It's steeper than Python, mostly because of ownership and borrowing, but the compiler's error messages help a lot.", 0),
     ("u", "how long would that take for someone who knows python?", 0), ("a", "A few weeks to write small programs comfortably, a few months to feel productive on bigger projects.", 0)],
    [("u", "明天早上 7 点的会，帮我写个提醒文案", N), ("a", "【会议提醒】明天（周二）早上 7:00 项目周会，请提前 5 分钟进入会议室，带上本周进度。", 0),
     ("u", "改成英文", 0), ("a", "[Reminder] Project weekly meeting tomorrow (Tuesday) at 7:00 AM. Please join 5 minutes early and bring your progress update.", 0),
     ("u", "对了，我家多肉叶子发软是怎么回事", 1), ("a", "多半是浇水太多或者光照不足。先停水，放到散射光充足的地方，等土干透再浇。", 0)],
    [("u", "Can you check my math: 3/8 = 0.375?", N), ("a", "Yes, 3 ÷ 8 = 0.375.", 0),
     ("u", "and 5/8?", 0), ("a", "0.625.", 0), ("u", "what about 7/8", 0), ("a", "0.875.", 0),
     ("u", "ok unrelated but my sourdough isn't rising", 1), ("a", "Your starter may be too weak or the kitchen too cold. Feed it until it doubles within 4-8 hours, and let the dough rise somewhere around 24-26 °C.", 0)],
    [("u", "怎么用 pandas 删除有空值的行", N), ("a", 'df.dropna()；只看某几列可以用 df.dropna(subset=["age", "city"])。', 0),
     ("u", "那填充成 0 呢", 0), ("a", 'df.fillna(0)；只填某一列：df["age"] = df["age"].fillna(0)。', 0),
     ("u", "这个会修改原来的 df 吗", 0), ("a", "fillna 默认返回新对象，不改原来的 df；像上面那样赋值回去才会生效。", 0)],
    [("u", "How much water should I drink per day?", N), ("a", "A common guideline is around 2 litres, more if it's hot or you exercise. Thirst is a decent everyday guide.", 0),
     ("u", "does coffee count?", 0), ("a", "Mostly yes. Moderate amounts of coffee still hydrate you overall, even though caffeine is a mild diuretic.", 0),
     ("u", "write a haiku about autumn", 1), ("a", "Maple leaves let go\nthe wind writes in red and gold\nstreets hold the slow light", 0)],
    [("u", "一个班 40 人，男生占 45%，男生多少人", N), ("a", "40 × 45% = 18 人。", 0),
     ("u", "女生呢", 0), ("a", "40 - 18 = 22 人。", 0), ("u", "男女比例是多少", 0), ("a", "18 : 22 = 9 : 11。", 0)],
    [("u", "I'm planning a trip to Iceland in March.", N), ("a", "March is a good time for northern lights, with more daylight than midwinter. Expect snow and icy roads.", 0),
     ("u", "should I rent a car?", 0), ("a", "If you're comfortable driving in winter conditions, yes. Choose a 4x4 and check road conditions every morning.", 0),
     ("u", "what's a good python library for plotting?", 1), ("a", "Matplotlib is the standard; seaborn makes statistical plots easier, and plotly is great for interactive charts.", 0),
     ("u", "which one is easiest?", 0), ("a", "For quick, good-looking charts, seaborn is usually the easiest to start with.", 0)],
    [("u", "最近总是失眠", N), ("a", "可以先固定作息，睡前一小时不看手机，下午以后少喝咖啡和浓茶。如果持续超过一个月，建议去医院睡眠科看看。", 0),
     ("u", "褪黑素有用吗", 0), ("a", "倒时差时短期用可能有帮助，但对长期失眠效果有限，长期使用前最好咨询医生。", 0),
     ("u", "再问个问题，Excel 怎么把两列合并成一列", 1), ("a", '用公式 =A2&B2，中间要加空格就写 =A2&" "&B2，然后下拉填充。', 0)],
    [("u", "What's the difference between RAM and storage?", N), ("a", "RAM is fast, temporary memory for what's running right now; storage (SSD or HDD) keeps your files when the power is off.", 0),
     ("u", "so more RAM makes it faster?", 0), ("a", "Up to a point. If you often run out of RAM, adding more helps a lot; beyond what you use, extra RAM changes little.", 0)],
    [("u", "我想在阳台种菜", N), ("a", "可以从生菜、小葱、小番茄这些好养的开始。", 0),
     ("u", "小番茄要多久能结果", 0), ("a", "从播种算大约 2 到 3 个月，每天需要至少 6 小时日照。", 0),
     ("u", "要施什么肥", 0), ("a", "开花前以氮肥为主，促进长叶；开花结果期改用磷钾肥。", 0),
     ("u", "话说你知道怎么用 git 查看某个文件的修改历史吗", 1), ("a", "git log -p -- 文件路径，会列出每次提交对这个文件的改动。", 0),
     ("u", "只看提交标题呢", 0), ("a", "git log --oneline -- 文件路径。", 0)],
    [("u", "Quick one: what's 45 × 12?", N), ("a", "540.", 0), ("u", "and divided by 9?", 0), ("a", "540 ÷ 9 = 60.", 0),
     ("u", "perfect. Also, do you know a good stretch for lower back pain?", 1), ("a", "Try a knee-to-chest stretch: lie on your back, pull one knee towards your chest, hold 20-30 seconds, then switch sides. If the pain is sharp or lasts, see a doctor.", 0)],
    [("u", "给女朋友买生日礼物，预算 500", N), ("a", "可以考虑一条简约的项链、一套她常用品牌的护肤品，或者一次双人手作体验课，比如陶艺。", 0),
     ("u", "她喜欢看书", 0), ("a", "那可以送一盏好用的阅读灯，加一本她心愿单里的书，再写张手写卡片。", 0),
     ("u", "卡片写什么好", 0), ("a", "写一件你们之间具体的小事，再加一句对她新一岁的祝福，比华丽的句子更打动人。", 0)],
    [("u", "How do I make cold brew coffee?", N), ("a", "Mix coarse ground coffee with cold water at about 1:8, steep 12-18 hours in the fridge, then strain.", 0),
     ("u", "what's the integral of 2x?", 1), ("a", "x² + C.", 0),
     ("u", "back to the coffee: can I use regular ground coffee?", 1), ("a", "You can, but finer grounds taste more bitter and are harder to strain. Shorten the steep to about 12 hours.", 0)],
    [("u", "how do I say 'nice to meet you' in Chinese?", N), ("a", "很高兴认识你 (hěn gāoxìng rènshi nǐ)。", 0),
     ("u", "那 'see you tomorrow' 呢", 0), ("a", "明天见 (míngtiān jiàn)。", 0),
     ("u", "顺便问一下，今天是 11 月 1 日，100 天后是几号", 1), ("a", "到 11 月 30 日是 29 天，再加 12 月 31 天、1 月 31 天，一共 91 天到 1 月 31 日，再过 9 天就是 2 月 9 日。", 0)],
    [("u", "Can dogs eat grapes?", N), ("a", "No. Grapes and raisins can cause kidney failure in dogs, even in small amounts. Call a vet if your dog eats some.", 0),
     ("u", "what about bananas?", 0), ("a", "Bananas are fine as an occasional treat in small pieces; they're sugary, so don't overdo it.", 0),
     ("u", "and apples?", 0), ("a", "Yes, without the core and seeds.", 0)],
    [("u", "Python 里 is 和 == 有什么区别", N), ("a", "== 比较值是否相等，is 比较是不是同一个对象。判断 None 时习惯写 is None。", 0),
     ("u", "今天午饭吃什么好，有点想吃面", 1), ("a", "可以来碗番茄鸡蛋面或者葱油拌面，十几分钟就能做好。", 0)],
    [("u", "what's the square root of 144?", N), ("a", "12.", 0), ("u", "and the cube root of 27?", 0), ("a", "3.", 0),
     ("u", "can you explain what a REST API is?", 1), ("a", "A REST API exposes resources such as /users/42 over HTTP; clients use methods like GET, POST, PUT and DELETE to read or change them, usually exchanging JSON.", 0),
     ("u", "what about GraphQL?", 0), ("a", "GraphQL uses a single endpoint where the client sends a query naming exactly the fields it wants, which avoids fetching too much or too little.", 0)],
]


def build_topic_lines():
    role = {"u": "user", "a": "assistant"}
    return [{"messages": [{"role": role[r], "content": c, "topic_shift": lab} for r, c, lab in d]} for d in TOPIC]


# --------------------------------------------------------------------------------------
# writers
# --------------------------------------------------------------------------------------
def jsonl(objs) -> bytes:
    return "".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objs).encode("utf-8")


def write(rel: str, data: bytes):
    p = ROOT / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)


def main():
    lines, malformed, rows = build_events()
    write("logs/chat_events_2026-11-01.jsonl", b"".join(l + b"\n" for l in lines))
    gaps = session_gaps(rows)
    gap_sessions = {sid: [(iso(a), iso(b)) for a, b in g] for sid, (_, g) in gaps.items() if g}
    near_miss = {sid: round(mx / 60, 1) for sid, (mx, g) in gaps.items() if not g and mx > 20 * 60}
    sess_sizes = {}
    for _, _, obj, _, extra in rows:
        sess_sizes[obj["session_id"]] = sess_sizes.get(obj["session_id"], 0) + (2 if extra else 1)
    notes = {
        "file": "chat_events_2026-11-01.jsonl",
        "lines": len(lines),
        "sessions": len(SESSIONS),
        "users": sorted({s["uid"] for s in SESSIONS}),
        "malformed_lines": [{"line": n, "session_id": sid, "kind": k, "why": why} for n, sid, k, why in malformed],
        "gap_over_30min": [{"session_id": sid, "gap_from": g[0][0], "gap_to": g[0][1]} for sid, g in sorted(gap_sessions.items())],
        "gap_near_miss_under_30min": [{"session_id": sid, "max_gap_minutes": m} for sid, m in sorted(near_miss.items())],
        "long_session": {"session_id": "s_71f0aa", "exchanges": 25, "lines": sess_sizes["s_71f0aa"]},
        "exact_duplicate_sessions": [["s_3a9d02", "s_c4e810"]],
        "near_duplicate_sessions": [["s_e05c2d", "s_a81f40"], ["s_4d77d0", "s_be3303"]],
        "fake_pii": {
            "cn_id_valid_checksum": [ID1, ID2], "cn_id_decoy_invalid": DECOY18,
            "bank_cards_luhn_valid": [group4(CARD1), CARD2], "api_key": SK_KEY,
            "cn_mobiles": ["138 2746 3910", "+86-186-5523-0917", "139 2841 7765"],
            "us_phones": ["(415) 555-0192", "+1 212-555-0147"],
            "emails": ["wang.fang88@example.com", "j.carter@example.org", "84736291@qq.com", "marcus.lee@example.com"],
            "ipv4": ["203.0.113.42", "198.51.100.23", "192.168.1.1", "192.168.31.1", "192.168.31.7"],
            "qq": "517209386", "wechat": "lily_chen_2024",
            "names": ["Emily Carter", "Daniel Brooks", "Marcus Lee", "Zhang Wei"],
        },
    }
    write("logs/chat_events_2026-11-01.notes.json", (json.dumps(notes, ensure_ascii=False, indent=2) + "\n").encode("utf-8"))
    write("logs/support_export.csv", build_csv())
    write("sharegpt/sharegpt_mixed.jsonl", jsonl(build_sharegpt_lines()))
    write("sharegpt/sharegpt_array.json",
          (json.dumps([{"conversations": c} for c in SHAREGPT_ARRAY], ensure_ascii=False, indent=2) + "\n").encode("utf-8"))
    write("alpaca/alpaca_history.json", (json.dumps(ALPACA, ensure_ascii=False, indent=2) + "\n").encode("utf-8"))
    write("openai/openai_chat.jsonl", jsonl(OPENAI))
    write("topic_shift/labelled_turns.jsonl", jsonl(build_topic_lines()))
    sg = build_sharegpt_lines()
    sg_lines = [json.dumps(o, ensure_ascii=False) for o in sg]
    stats = {
        "csv_rows": len(list(csv.reader(io.StringIO(build_csv().decode("utf-8"))))) - 1,
        "sg_n": len(sg),
        "sg_dup_lines": [i + 1 for i, l in enumerate(sg_lines) if sg_lines.count(l) > 1],
        "sg_same_conv": [i + 1 for i, o in enumerate(sg) if o["conversations"] == SHAREGPT[4]],
        "arr_n": len(SHAREGPT_ARRAY), "alp_n": len(ALPACA), "oa_n": len(OPENAI),
        "oa_sys": sum(1 for o in OPENAI if o["messages"][0]["role"] == "system"),
        "tp_n": len(TOPIC), "tp_min": min(map(len, TOPIC)), "tp_max": max(map(len, TOPIC)),
    }
    write("README.md", readme(notes, stats).encode("utf-8"))
    print(json.dumps({k: notes[k] for k in ("lines", "malformed_lines", "gap_over_30min", "gap_near_miss_under_30min")},
                     ensure_ascii=False, indent=1))


def readme(notes, st) -> str:
    mal = "\n".join(f"| {m['line']} | `{m['session_id']}` | {m['why']} |" for m in notes["malformed_lines"])
    gaps = "\n".join(f"- `{g['session_id']}`: silent from {g['gap_from'][11:16]} to {g['gap_to'][11:16]}"
                     for g in notes["gap_over_30min"])
    near = ", ".join(f"`{g['session_id']}` ({g['max_gap_minutes']} min)" for g in notes["gap_near_miss_under_30min"])
    return f"""# data_samples

Small, hand-written sample inputs for turnforge's readers, extractor, anonymiser, de-duplicator
and topic-shift discriminator. Chinese and English are mixed throughout.

**All content is invented, and all personal data in it is fake** (names, phone numbers, ID
numbers, bank cards, e-mails, IPs, API keys, QQ / WeChat ids, order numbers, addresses). ID and
card numbers are generated with valid checksums on purpose, so that an anonymiser has to catch
them; they belong to nobody. Nothing here is copied from any dataset.

Every file is written by `_make_samples.py` (stdlib only, deterministic):
`python3 data_samples/_make_samples.py`. Edit the script, not the files.

## logs/chat_events_2026-11-01.jsonl — flat event log
One event per line: `session_id`, `user_id`, `timestamp` (ISO 8601, `+08:00`), `role`, `text`.
{notes['lines']} lines, {notes['sessions']} session ids, {len(notes['users'])} users (`u1001`-`u1009`), lines
ordered by timestamp across all users, so sessions interleave.

Messy cases:
- roles: `user`, `用户`, `human`, `assistant`, `bot`, `客服`, `system`; the long session switches
  from `bot` to `assistant` half way.
- consecutive messages by the same role (2-3 user lines in a row) to be merged.
- long session `s_71f0aa` (25 exchanges) with topic switches and a return to the first topic,
  so tail selection matters.
- topic switches in mid-session (cooking -> Python, travel -> SQL, movies -> pandas) and real
  follow-ups (它/那/还有/那么, "what about", "it").
- chat markup leaking into text: `<|im_start|>user`, `<|im_end|>`, `Human:`, `<user>`, `[INST]`.
- exact duplicate sessions `s_3a9d02` = `s_c4e810` (two users); near duplicates differing only in
  case / punctuation / whitespace: `s_e05c2d` ~ `s_a81f40`, `s_4d77d0` ~ `s_be3303`.
- every 11th ordinary line is written with `\\uXXXX` escapes instead of raw UTF-8 (still valid).
- fake PII: Chinese mobiles (`138 2746 3910`, `+86-186-5523-0917`, `139 2841 7765`), two
  18-digit resident ID numbers with valid checksums (one ends in `X`), one 18-digit decoy with a
  wrong checksum and no valid region (a parcel number, must NOT count as an ID), two Luhn-valid
  bank cards (16 digits grouped, 19 digits contiguous), e-mails, IPv4 addresses, an `sk-` API
  key, a QQ number, a WeChat id, English names, US phone numbers.

Sessions with an inactivity gap of more than 30 minutes inside one `session_id` (the extractor
must split each into two sessions):
{gaps}

Near miss, must NOT be split at a 30-minute threshold: {near}.

Intentionally malformed lines (1-based line numbers):

| line | session | problem |
|---|---|---|
{mal}

`logs/chat_events_2026-11-01.notes.json` holds the same facts in machine-readable form
(malformed lines, gaps, duplicates, the fake PII values) for tests.

## logs/support_export.csv — CSV event log with other column names
Columns `sid,uid,ts,speaker,msg`; `ts` is unix epoch seconds (integer); speaker is `customer` or
`agent`. {st['csv_rows']} rows, 5 Chinese customer-support sessions (late delivery, refund for a broken cup,
address change + invoice, price protection, angry late-delivery customer), rows sorted by `ts`
so two sessions interleave. `c_58213` has two sessions. Texts contain commas, ASCII double
quotes and embedded newlines (standard CSV quoting), consecutive customer rows, fake phone
numbers, order ids (`TF...`), a refund id, an e-mail, a tax id and a Luhn-valid bank card.

## sharegpt/sharegpt_mixed.jsonl — ShareGPT, one conversation per line
`{{"id": ..., "conversations": [{{"from": "human"|"gpt"|"system", "value": ...}}]}}`; {st['sg_n']} lines,
1-6 exchanges each, zh and en, code and math. Special cases:
- exact duplicates: `sg-0033` has the same conversation as `sg-0005` (other id; lines
  {st['sg_same_conv'][0]} and {st['sg_same_conv'][1]}); the line of `sg-0021` appears twice verbatim (lines
  {st['sg_dup_lines'][0]} and {st['sg_dup_lines'][1]}).
- `sg-0008` starts with a `gpt` turn; `sg-0012` ends with a dangling `human` turn;
  `sg-0013` has an unknown `from` value `narrator`; `sg-0014` has an empty `value`.

## sharegpt/sharegpt_array.json — ShareGPT as one pretty-printed JSON array
{st['arr_n']} conversations, no `id` fields, one with a `system` turn.

## alpaca/alpaca_history.json — Alpaca with history
JSON array of {st['alp_n']} objects `instruction`, `input` (often ""), `output`, `history` (list of
`[question, answer]` pairs, often empty). zh and en, math and code; several items are follow-ups
that only make sense with their history ("那周长是多少？", "What about the median?").

## openai/openai_chat.jsonl — OpenAI chat format
`{{"messages": [{{"role": "system"|"user"|"assistant", "content": ...}}]}}`; {st['oa_n']} lines, {st['oa_sys']} with a
system prompt, zh and en, 1-2 exchanges each.

## topic_shift/labelled_turns.jsonl — labelled topic shifts
{st['tp_n']} dialogues, {st['tp_min']}-{st['tp_max']} messages each: `{{"messages": [{{"role", "content", "topic_shift"}}]}}`.
`topic_shift` is `null` on the first message, `1` when that message starts a new topic, `0` when it
continues the current one (assistant replies are `0`). Returning to an earlier topic after a
detour counts as a shift (`1`). Note the polarity: SPEC R5 calls a *continuing* turn label 1
("true multi-turn"), so a reader must invert `topic_shift` to get R5 labels.
"""


if __name__ == "__main__":
    main()
