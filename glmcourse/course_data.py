"""Reading the course's data files (``data/``, written by ``glmcourse.tools.make_data``) for the lessons,
the benchmarks and the model build: one place, so every lesson sees the same held-out records.
"""
from __future__ import annotations

import json
from pathlib import Path

# The person names make_data draws from (evaluation checks that its unseen names are in neither list).
ZH_NAMES = ["张伟", "王芳", "李娜", "刘洋", "陈静", "杨帆", "赵磊", "黄敏", "周杰", "吴倩", "徐明", "孙丽",
            "马超", "朱琳", "胡斌", "郭涛", "何雪", "林峰", "高原", "罗丹", "梁晨", "宋雨", "郑凯", "谢婷",
            "韩冰", "唐宁", "冯晓", "董洁", "萧然", "程远"]
EN_NAMES = ["Alice", "Bob", "Carol", "David", "Emma", "Frank", "Grace", "Henry", "Irene", "Jack",
            "Kate", "Leo", "Mia", "Noah", "Olivia", "Peter", "Quinn", "Rosa", "Sam", "Tina", "Uma",
            "Victor", "Wendy", "Xavier", "Yara", "Zack", "Lucy", "Oscar", "Nina", "Ethan"]

DOCUMENT_SEPARATOR = "\n\n\n"  # documents in corpus*.txt are separated by two blank lines


def read_documents(path) -> list[str]:
    """The documents of a corpus file written by glmcourse.tools.make_data."""
    return Path(path).read_text(encoding="utf-8").strip("\n").split(DOCUMENT_SEPARATOR)


def evenly_thinned(items: list, limit: int | None) -> list:
    """``limit`` items spread evenly over ``items`` (all of them when ``limit`` is None or larger)."""
    if not limit or limit >= len(items):
        return list(items)
    step = len(items) / limit
    return [items[int(i * step)] for i in range(limit)]




def heldout_records(path=None, limit: int | None = None) -> list[dict]:
    """Single-turn Alpaca records of the held-out chat set (data/chat_eval.json), evenly thinned to ``limit``."""
    import json

    import glmcourse

    path = path or glmcourse.DATA_DIR / "chat_eval.json"
    with open(path, encoding="utf-8") as handle:
        records = [r for r in json.load(handle) if not r.get("history")]
    return evenly_thinned(records, limit)


def heldout_documents(path=None, limit: int | None = None) -> list[str]:
    """Held-out documents (data/corpus_eval.txt), evenly thinned to ``limit``: the lesson's loss set."""
    import glmcourse

    return evenly_thinned(read_documents(path or glmcourse.DATA_DIR / "corpus_eval.txt"), limit)


def lora_records(name: str, limit: int | None = None) -> list[dict]:
    """data/lora_<name>.json ('train' or 'eval'), evenly thinned to ``limit`` records."""
    import glmcourse
    from glmcourse.data import load_alpaca

    return evenly_thinned(load_alpaca(glmcourse.DATA_DIR / f"lora_{name}.json"), limit)


def alpaca_style_records() -> list[dict]:
    """data/alpaca_style_sample.json: 60 hand-written records in the style of real Alpaca data."""
    import glmcourse
    from glmcourse.data import load_alpaca

    return load_alpaca(glmcourse.DATA_DIR / "alpaca_style_sample.json")


def base_training_texts() -> list[str]:
    """The text the course model was trained on: data/corpus.txt and data/course_chat.json's records."""
    import glmcourse

    chat = json.loads((glmcourse.DATA_DIR / "course_chat.json").read_text(encoding="utf-8"))
    turns = [text for r in chat for text in [r["instruction"], r.get("input", ""), r["output"]]
             + [t for pair in r.get("history", []) for t in pair] if text]
    return read_documents(glmcourse.DATA_DIR / "corpus.txt") + turns


def load_course_data(data_dir: Path) -> dict:
    needed = ["course_chat.json", "chat_eval.json", "lora_eval.json", "corpus.txt", "corpus_eval.txt"]
    missing = [n for n in needed if not (data_dir / n).exists()]
    if missing:
        raise SystemExit(f"{data_dir} lacks {', '.join(missing)}: run `python -m glmcourse.tools.make_data` first.")
    read = lambda n: (data_dir / n).read_text(encoding="utf-8")  # noqa: E731
    return {
        "chat": json.loads(read("course_chat.json")),
        "chat_eval": json.loads(read("chat_eval.json")),
        "lora_eval": json.loads(read("lora_eval.json")),
        "lora_train": json.loads(read("lora_train.json")),
        "corpus": read_documents(data_dir / "corpus.txt"),
        "corpus_eval": read_documents(data_dir / "corpus_eval.txt"),
    }


