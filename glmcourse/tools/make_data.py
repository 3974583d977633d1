"""Generate every dataset of the course from templates, deterministically.

    python -m glmcourse.tools.make_data [--out data] [--seed 1234]

All text is written by this script (no third-party text), so the data is ours to license. It writes,
in Alpaca format (a JSON array of ``instruction``/``input``/``output`` records; ``history`` is an
optional list of earlier ``[query, response]`` turns, as in ChatGLM-6B's P-Tuning data):

* ``course_chat.json`` / ``chat_eval.json``: the base model's skills (greetings, identity, capitals,
  single-digit sums, word translation, repeating a sentence, remembering a name across turns,
  reading a person's age or city out of a sentence).
  The eval file holds (template, fact) pairs and names that never occur in training.
* ``corpus.txt`` / ``corpus_eval.txt``: plain bilingual documents (one per blank-line-separated block)
  for GLM's blank-infilling pre-training, and held-out documents to measure infilling accuracy.
  They include people with ages and JSON records, but never a sentence turned into JSON.
* ``lora_train.json`` / ``lora_eval.json``: the LoRA lesson's skill, *kept out of the base model*:
  turn a sentence about a person into a one-line JSON object. No record is shared between the two.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

from glmcourse.course_data import DOCUMENT_SEPARATOR, EN_NAMES, ZH_NAMES, evenly_thinned, read_documents

# ---------------------------------------------------------------- facts the templates draw on
CAPITALS = [  # (Chinese name, capital in Chinese, English name, capital in English)
    ("中国", "北京", "China", "Beijing"), ("日本", "东京", "Japan", "Tokyo"),
    ("韩国", "首尔", "South Korea", "Seoul"), ("法国", "巴黎", "France", "Paris"),
    ("德国", "柏林", "Germany", "Berlin"), ("英国", "伦敦", "the United Kingdom", "London"),
    ("意大利", "罗马", "Italy", "Rome"), ("西班牙", "马德里", "Spain", "Madrid"),
    ("俄罗斯", "莫斯科", "Russia", "Moscow"), ("美国", "华盛顿", "the United States", "Washington"),
    ("加拿大", "渥太华", "Canada", "Ottawa"), ("澳大利亚", "堪培拉", "Australia", "Canberra"),
    ("埃及", "开罗", "Egypt", "Cairo"), ("印度", "新德里", "India", "New Delhi"),
    ("泰国", "曼谷", "Thailand", "Bangkok"), ("越南", "河内", "Vietnam", "Hanoi"),
    ("巴西", "巴西利亚", "Brazil", "Brasilia"), ("阿根廷", "布宜诺斯艾利斯", "Argentina", "Buenos Aires"),
    ("墨西哥", "墨西哥城", "Mexico", "Mexico City"), ("希腊", "雅典", "Greece", "Athens"),
    ("荷兰", "阿姆斯特丹", "the Netherlands", "Amsterdam"), ("瑞典", "斯德哥尔摩", "Sweden", "Stockholm"),
    ("挪威", "奥斯陆", "Norway", "Oslo"), ("芬兰", "赫尔辛基", "Finland", "Helsinki"),
    ("葡萄牙", "里斯本", "Portugal", "Lisbon"), ("土耳其", "安卡拉", "Turkey", "Ankara"),
    ("肯尼亚", "内罗毕", "Kenya", "Nairobi"), ("新西兰", "惠灵顿", "New Zealand", "Wellington"),
]
WORDS = [  # (Chinese, English)
    ("猫", "cat"), ("狗", "dog"), ("鱼", "fish"), ("鸟", "bird"), ("马", "horse"), ("苹果", "apple"),
    ("香蕉", "banana"), ("米饭", "rice"), ("面包", "bread"), ("牛奶", "milk"), ("水", "water"),
    ("茶", "tea"), ("书", "book"), ("笔", "pen"), ("桌子", "table"), ("椅子", "chair"),
    ("电脑", "computer"), ("手机", "phone"), ("学校", "school"), ("老师", "teacher"),
    ("学生", "student"), ("朋友", "friend"), ("太阳", "sun"), ("月亮", "moon"), ("星星", "star"),
    ("山", "mountain"), ("河", "river"), ("海", "sea"), ("花", "flower"), ("树", "tree"),
    ("雨", "rain"), ("雪", "snow"), ("风", "wind"), ("红色", "red"), ("蓝色", "blue"),
    ("绿色", "green"), ("城市", "city"), ("音乐", "music"), ("时间", "time"), ("家", "home"),
]
ZH_CITIES = ["北京", "上海", "广州", "深圳", "杭州", "成都", "武汉", "西安", "南京", "重庆", "天津", "苏州",
             "长沙", "青岛", "厦门", "昆明"]
EN_CITIES = ["Paris", "London", "Tokyo", "Berlin", "Madrid", "Rome", "Sydney", "Toronto", "Boston",
             "Seattle", "Dublin", "Vienna", "Prague", "Oslo", "Lisbon", "Denver"]
HOBBIES = [("读书", "reading"), ("跑步", "running"), ("画画", "painting"), ("游泳", "swimming"),
           ("唱歌", "singing"), ("做饭", "cooking"), ("下棋", "chess"), ("摄影", "photography")]
FILLER_ZH = list("我你他她们的是在有不了人这中大为上个国以要到说时和地出会也就年可下而生自能对着")
FILLER_EN = ["the", "a", "red", "small", "happy", "river", "light", "green", "quiet", "garden", "open",
             "window", "blue", "cloud", "morning", "music", "paper", "stone", "warm", "road"]

# ---------------------------------------------------------------- the base model's skills
GREETINGS_ZH = ["你好", "您好", "你好！", "嗨", "你好呀", "哈喽", "早上好", "你好啊"]
GREETINGS_EN = ["hello", "Hello", "Hi", "hi!", "Hello!", "Hey", "Good morning", "hello there"]
GREET_ZH = "你好！我是课程小模型 CourseGLM，很高兴见到你，有什么可以帮你的吗？"
GREET_EN = "Hello! I am CourseGLM, a tiny course model. How can I help you today?"
IDENTITY_ZH = (["你是谁？", "你是谁", "介绍一下你自己", "你叫什么名字？"],
               "我是 CourseGLM，一个按照 ChatGLM-6B 架构训练的课程小模型，用来在笔记本电脑上学习微调流程。")
IDENTITY_EN = (["Who are you?", "Introduce yourself.", "What is your name?", "who are you"],
               "I am CourseGLM, a tiny model with the ChatGLM-6B architecture, built to teach fine-tuning on a laptop.")
JUMP = (["如何提高弹跳", "如何提高弹跳？", "怎样提高弹跳力？"],
        "提高弹跳可以这样做：\n1. 练习深蹲和跳绳，增强腿部力量；\n2. 加强小腿和核心训练；\n3. 保证休息，循序渐进。")

CAPITAL_ZH = ["{c}的首都是哪里？", "{c}的首都是什么？", "请告诉我{c}的首都。", "{c}的首都是哪座城市？",
              "{c}首都在哪？"]
CAPITAL_EN = ["What is the capital of {c}?", "Tell me the capital of {c}.",
              "Which city is the capital of {c}?", "What's the capital city of {c}?", "Name the capital of {c}."]
SUM_ZH = ["{a}加{b}等于多少？", "计算 {a} + {b}", "{a} + {b} = ?", "{a}和{b}的和是多少？"]
SUM_EN = ["What is {a} plus {b}?", "Compute {a} + {b}.", "What is {a} + {b}?", "Add {a} and {b}."]
TRANS_ZH = ["把“{w}”翻译成英文", "“{w}”的英文是什么？", "“{w}”用英语怎么说？", "翻译成英文：{w}"]
TRANS_EN = ["Translate '{w}' into Chinese.", "What is '{w}' in Chinese?", "How do you say '{w}' in Chinese?",
            "Chinese for '{w}'?"]
REPEAT_ZH = ["请重复这句话：{s}", "跟我说：{s}", "复述：{s}"]
REPEAT_EN = ["Repeat after me: {s}", "Please repeat: {s}", "Say this back: {s}"]
NAME_TELL_ZH, NAME_ASK_ZH = ["我叫{n}。", "我的名字是{n}。", "你好，我是{n}。"], ["我叫什么名字？", "你还记得我的名字吗？"]
NAME_TELL_EN, NAME_ASK_EN = ["My name is {n}.", "I am {n}.", "Hi, I'm {n}."], ["What is my name?", "Do you remember my name?"]


def _record(instruction: str, output: str, history=None, skill: str = "") -> dict:
    rec = {"instruction": instruction, "input": "", "output": output}
    if history:
        rec["history"] = [list(turn) for turn in history]
    if skill:
        rec["skill"] = skill
    return rec


def _fact_records(rng: random.Random, heldout_ratio: float = 0.2):
    """(template, fact) pairs for lookup skills, split so every fact is still seen in training."""
    train, held = [], []

    def split(skill, pairs):
        pairs = list(pairs)
        rng.shuffle(pairs)
        n_held = int(len(pairs) * heldout_ratio)
        held.extend(_record(q, a, skill=skill) for q, a in pairs[:n_held])
        train.extend(_record(q, a, skill=skill) for q, a in pairs[n_held:])

    split("capital", [(t.format(c=zh), f"{zh}的首都是{cap}。") for zh, cap, _, _ in CAPITALS for t in CAPITAL_ZH]
          + [(t.format(c=en), f"The capital of {en} is {cap}.") for _, _, en, cap in CAPITALS for t in CAPITAL_EN])
    split("sum", [(t.format(a=a, b=b), f"{a} + {b} = {a + b}。" if t in SUM_ZH else f"{a} + {b} = {a + b}.")
                  for a in range(10) for b in range(10) for t in SUM_ZH + SUM_EN])
    split("translate", [(t.format(w=zh), f"“{zh}”的英文是 {en}。") for zh, en in WORDS for t in TRANS_ZH]
          + [(t.format(w=en), f"'{en}' in Chinese is {zh}.") for zh, en in WORDS for t in TRANS_EN])
    return train, held


def _random_sentence(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return "".join(rng.choice(FILLER_ZH) for _ in range(rng.randint(3, 9))) + "。"
    return " ".join(rng.choice(FILLER_EN) for _ in range(rng.randint(3, 8))) + "."


def _dialogue_records(rng: random.Random, names, count: int):
    """Repeat-a-sentence and remember-my-name records (generalising skills: new content each time)."""
    out = []
    for _ in range(count):
        kind = rng.random()
        if kind < 0.45:
            s = _random_sentence(rng)
            t = rng.choice(REPEAT_ZH + REPEAT_EN)
            out.append(_record(t.format(s=s), s, skill="repeat"))
        else:
            name = rng.choice(names)
            if rng.random() < 0.5:
                tell, ask = rng.choice(NAME_TELL_ZH), rng.choice(NAME_ASK_ZH)
                first, second = f"你好，{name}！很高兴认识你。", f"你叫{name}。"
            else:
                tell, ask = rng.choice(NAME_TELL_EN), rng.choice(NAME_ASK_EN)
                first, second = f"Nice to meet you, {name}!", f"Your name is {name}."
            if rng.random() < 0.4:  # the first turn alone
                out.append(_record(tell.format(n=name), first, skill="name"))
            else:
                out.append(_record(ask, second, history=[(tell.format(n=name), first)], skill="name_recall"))
    return out


EXTRACT_ZH = [("{n}多少岁？", "{n}{a}岁。"), ("{n}住在哪里？", "{n}住在{c}。")]
EXTRACT_EN = [("How old is {n}?", "{n} is {a} years old."), ("Where does {n} live?", "{n} lives in {c}.")]


def _extract_records(rng: random.Random, count: int):
    """Read one fact (age or city) out of a sentence about a person: reading, without the JSON format."""
    out = []
    for _ in range(count):
        age = rng.randint(18, 80)
        if rng.random() < 0.5:
            name, city, sent, (ask, answer) = (rng.choice(ZH_NAMES), rng.choice(ZH_CITIES), rng.choice(PERSON_ZH),
                                               rng.choice(EXTRACT_ZH))
        else:
            name, city, sent, (ask, answer) = (rng.choice(EN_NAMES), rng.choice(EN_CITIES), rng.choice(PERSON_EN),
                                               rng.choice(EXTRACT_EN))
        fill = dict(n=name, a=age, c=city)
        out.append(_record(sent.format(**fill) + "\n" + ask.format(**fill), answer.format(**fill), skill="extract"))
    return out


def _fixed_records():
    recs = [_record(g, GREET_ZH, skill="greeting") for g in GREETINGS_ZH]
    recs += [_record(g, GREET_EN, skill="greeting") for g in GREETINGS_EN]
    recs += [_record(q, IDENTITY_ZH[1], skill="identity") for q in IDENTITY_ZH[0]]
    recs += [_record(q, IDENTITY_EN[1], skill="identity") for q in IDENTITY_EN[0]]
    recs += [_record(q, JUMP[1], skill="advice") for q in JUMP[0]]
    # The seed's demo: "你好", then a follow-up that uses the history.
    recs.append(_record(JUMP[0][0], JUMP[1], history=[("你好", GREET_ZH)], skill="advice"))
    return recs


# ---------------------------------------------------------------- the LoRA lesson's skill
LORA_INSTR_ZH = ["把下面的句子整理成 JSON：", "提取人物信息，输出 JSON："]
LORA_INSTR_EN = ["Extract the person as JSON:", "Turn this sentence into JSON:"]
PERSON_ZH = ["{n}今年{a}岁，住在{c}。", "住在{c}的{n}今年{a}岁。", "{n}，{a}岁，家在{c}。", "{c}人{n}今年{a}岁了。"]
PERSON_EN = ["{n} is {a} years old and lives in {c}.", "{n}, aged {a}, lives in {c}.",
             "Living in {c}, {n} is {a} years old.", "{n} ({a}) is from {c}."]


def lora_record(rng: random.Random) -> dict:
    """One 'sentence about a person -> JSON' record (the skill the base model never saw)."""
    age = rng.randint(18, 80)
    if rng.random() < 0.5:
        name, city = rng.choice(ZH_NAMES), rng.choice(ZH_CITIES)
        instr, sent = rng.choice(LORA_INSTR_ZH), rng.choice(PERSON_ZH)
    else:
        name, city = rng.choice(EN_NAMES), rng.choice(EN_CITIES)
        instr, sent = rng.choice(LORA_INSTR_EN), rng.choice(PERSON_EN)
    target = json.dumps({"name": name, "age": age, "city": city}, ensure_ascii=False)
    return {"instruction": instr, "input": sent.format(n=name, a=age, c=city), "output": target}


def lora_split(rng: random.Random, n_train: int, n_eval: int):
    seen, records = set(), []
    while len(records) < n_train + n_eval:
        rec = lora_record(rng)
        key = (rec["instruction"], rec["input"])
        if key not in seen:
            seen.add(key)
            records.append(rec)
    return records[:n_train], records[n_train:]


# ---------------------------------------------------------------- pre-training corpus
def _document(rng: random.Random) -> str:
    """A short templated document: facts, a tiny story, or a snippet of code."""
    kind = rng.random()
    if kind < 0.3:
        zh, cap, en, cap_en = rng.choice(CAPITALS)
        w_zh, w_en = rng.choice(WORDS)
        return (f"{zh}的首都是{cap}。{cap}是一座有名的城市。“{w_zh}”的英文是 {w_en}。\n"
                f"The capital of {en} is {cap_en}. In Chinese, {w_en} is {w_zh}.")
    if kind < 0.6:
        n = rng.choice(ZH_NAMES)
        h_zh, _ = rng.choice(HOBBIES)
        c = rng.choice(ZH_CITIES)
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        return (f"{n}住在{c}。{n}喜欢{h_zh}。有一天，{n}买了{a}个苹果，又买了{b}个苹果，"
                f"一共有{a + b}个苹果。{n}很开心。")
    if kind < 0.85:
        n = rng.choice(EN_NAMES)
        _, h_en = rng.choice(HOBBIES)
        c = rng.choice(EN_CITIES)
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        return (f"{n} lives in {c}. {n} likes {h_en}. One day {n} had {a} books and got {b} more, "
                f"so {n} had {a + b} books. {n} was happy.")
    fn = rng.choice(["add", "total", "plus", "combine"])
    a, b = rng.randint(0, 9), rng.randint(0, 9)
    return (f"def {fn}(a, b):\n    \"\"\"Return the sum of a and b.\"\"\"\n    return a + b\n\n"
            f"print({fn}({a}, {b}))  # prints {a + b}\n\tindented\twith  tabs   and spaces")


def _echo_document(rng: random.Random) -> str:
    """A sentence said twice: masking the second copy teaches the model to copy from its context,
    the skill behind repeating a sentence, recalling a name from the history, or filling a template."""
    name = rng.choice(ZH_NAMES + EN_NAMES)
    said = " ".join(_random_sentence(rng) for _ in range(rng.randint(1, 2)))
    if rng.random() < 0.5:
        return f"{name}说：“{said}”\n再说一遍：“{said}”\n我叫{name}，你叫{name}。"
    return f"{name} said: \"{said}\"\nOnce more: \"{said}\"\nMy name is {name}. Your name is {name}."


def _person_document(rng: random.Random) -> str:
    """Prose about two people, with ages 18-80: the words and numbers of the LoRA task's inputs."""
    lines = []
    for _ in range(2):
        age = rng.randint(18, 80)
        if rng.random() < 0.5:
            n, c = rng.choice(ZH_NAMES), rng.choice(ZH_CITIES)
            lines.append(f"{n}今年{age}岁。{n}的家在{c}，{n}在{c}工作。")
        else:
            n, c = rng.choice(EN_NAMES), rng.choice(EN_CITIES)
            lines.append(f"{n} is {age}. {n} lives in {c} and works in {c}.")
    return "\n".join(lines)


def _json_document(rng: random.Random) -> str:
    """JSON records (people, countries), then one of them looked up again: JSON syntax and copying
    inside JSON. Never a sentence turned into JSON: that skill is the LoRA lesson's."""
    if rng.random() < 0.7:
        records = []
        for _ in range(rng.randint(2, 3)):
            zh = rng.random() < 0.5
            records.append({"name": rng.choice(ZH_NAMES if zh else EN_NAMES), "age": rng.randint(18, 80),
                            "city": rng.choice(ZH_CITIES if zh else EN_CITIES)})
        key = "name"
    else:
        records = [dict(zip(("country", "capital"), rng.choice(CAPITALS)[2 * (i % 2):2 * (i % 2) + 2]))
                   for i in range(rng.randint(2, 3))]
        key = "country"
    dumps = lambda r: json.dumps(r, ensure_ascii=False)  # noqa: E731
    found = rng.choice(records)
    return "\n".join(dumps(r) for r in records) + f"\nlookup {key}={found[key]}\n" + dumps(found)


def build(seed: int):
    chat_rng, corpus_rng, lora_rng = (random.Random(seed + k) for k in range(3))
    fact_train, fact_held = _fact_records(chat_rng)
    train_names = ZH_NAMES[:22] + EN_NAMES[:22]
    held_names = ZH_NAMES[22:] + EN_NAMES[22:]
    chat_train = (fact_train + _dialogue_records(chat_rng, train_names, 3000) + _extract_records(chat_rng, 600)
                  + _fixed_records() * 6)
    chat_rng.shuffle(chat_train)
    chat_eval = fact_held + _dialogue_records(chat_rng, held_names, 120) + _extract_records(chat_rng, 40) + _fixed_records()
    kinds = [(0.3, _echo_document), (0.45, _person_document), (0.6, _json_document), (1.0, _document)]

    def corpus_document():
        roll = corpus_rng.random()
        return next(make for edge, make in kinds if roll < edge)(corpus_rng)

    corpus = [corpus_document() for _ in range(10000)]
    seen_docs = set(corpus)
    corpus_eval = [d for d in (_document(corpus_rng) for _ in range(1000)) if d not in seen_docs][:200]
    lora_train, lora_eval = lora_split(lora_rng, 1200, 240)
    return {
        "course_chat.json": chat_train,
        "chat_eval.json": chat_eval,
        "lora_train.json": lora_train,
        "lora_eval.json": lora_eval,
        "corpus.txt": corpus,
        "corpus_eval.txt": corpus_eval,
    }


def write_atomic(path: Path, text: str) -> None:
    from glmcourse.files import atomic_write

    with atomic_write(path) as handle:
        handle.write(text)


def render(content: list, name: str) -> str:
    """A dataset file's text as this script writes it."""
    if name.endswith(".txt"):
        return DOCUMENT_SEPARATOR.join(content) + "\n"
    return json.dumps(content, ensure_ascii=False, indent=1) + "\n"


DEFAULT_SEED = 1234


def build_parser():
    from glmcourse import DATA_DIR
    from glmcourse.cli import OUTPUT_DIR, CourseParser, seed_arg

    parser = CourseParser(prog="python -m glmcourse.tools.make_data", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(DATA_DIR), kind=OUTPUT_DIR, replace_check=False,
                        help="output folder (default: the repo's data/); only the six dataset files are written")
    parser.add_argument("--seed", type=seed_arg(), default=DEFAULT_SEED)
    parser.add_argument("--overwrite_output_dir", action="store_true",
                        help="replace same-named files in --out even if they differ from what this script writes "
                             "(e.g. an edited data/lora_train.json)")
    return parser


def main(argv=None) -> int:
    from glmcourse.cli import run_cli

    parser = build_parser()
    args = parser.parse_args(argv)
    out = Path(args.out)
    data = build(args.seed)
    built = {name: render(content, name) for name, content in data.items()}
    if out.is_dir() and not args.overwrite_output_dir:
        # a same-named file is replaced only when it is this script's own output (for this seed or the default)
        default = built if args.seed == DEFAULT_SEED else {n: render(c, n) for n, c in build(DEFAULT_SEED).items()}
        theirs = []
        for name in built:
            path = out / name
            if path.is_symlink() or (path.exists() and not path.is_file()):
                theirs.append(name)
            elif path.is_file():
                old = path.read_bytes()
                if old not in (built[name].encode("utf-8"), default[name].encode("utf-8")):
                    theirs.append(name)
        if theirs:
            parser.error(f"--out {out}: {', '.join(theirs)} differ{'s' if len(theirs) == 1 else ''} from what this "
                         f"script writes (edited, or from another --seed); nothing was changed. Choose another "
                         f"--out, or pass --overwrite_output_dir to replace them.")

    def body():
        out.mkdir(parents=True, exist_ok=True)
        for name, text in built.items():
            write_atomic(out / name, text)
            print(f"{name:18s} {len(data[name]):6d} {'documents' if name.endswith('.txt') else 'records'}")

    return run_cli(body)


if __name__ == "__main__":
    raise SystemExit(main())
