"""The course's datasets: regenerated identically from the committed script, and split cleanly."""
import json

import glmcourse
from glmcourse.tools import make_data


def _committed(name):
    text = (glmcourse.DATA_DIR / name).read_text(encoding="utf-8")
    return json.loads(text) if name.endswith(".json") else text.strip("\n").split("\n\n\n")


def test_committed_data_is_what_the_generator_makes():
    """Same seed, same files: the generator is deterministic and data/ is not stale."""
    built = make_data.build(1234)
    for name, content in built.items():
        assert _committed(name) == content, f"data/{name} is stale: run python -m glmcourse.tools.make_data"


def test_lora_eval_shares_no_record_with_train_and_meets_the_sizes():
    train, held = _committed("lora_train.json"), _committed("lora_eval.json")
    assert len(train) >= 1000 and len(held) >= 200
    key = lambda r: (r["instruction"], r["input"])  # noqa: E731
    assert not {key(r) for r in train} & {key(r) for r in held}
    for r in held:
        parsed = json.loads(r["output"])
        assert set(parsed) == {"name", "age", "city"} and str(parsed["age"]) in r["input"]


def test_lora_skill_never_appears_in_the_base_model_data():
    """The base model may see JSON records and sentences about people, never one turned into the other."""
    chat = _committed("course_chat.json")
    assert not any('{"' in r["output"] for r in chat), "a chat answer is JSON"
    lora_records = _committed("lora_train.json") + _committed("lora_eval.json")
    assert not {r["instruction"] for r in lora_records} & {r["instruction"] for r in chat}
    json_docs = [d for d in _committed("corpus.txt") if '{"name"' in d]
    assert json_docs, "the corpus should teach JSON syntax"
    for doc in json_docs:
        for line in doc.split("\n"):
            assert line.startswith("{") or line.startswith("lookup "), f"prose next to JSON: {line!r}"


def test_chat_eval_questions_are_held_out():
    def key(r):
        return (r["instruction"], r["input"], json.dumps(r.get("history", []), ensure_ascii=False))

    train = {key(r) for r in _committed("course_chat.json")}
    held = [r for r in _committed("chat_eval.json") if r["skill"] not in {"greeting", "identity", "advice"}]
    assert len(held) >= 200
    assert not any(key(r) in train for r in held)
    assert not set(_committed("corpus_eval.txt")) & set(_committed("corpus.txt"))
