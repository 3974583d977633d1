"""Reference solutions for the exercises in notebooks/03_deploy_and_chat.ipynb.

Try the exercises first; the notebook checks these with the same checkers as your answers.
"""
import re


def build_prompt(query, history):
    """Exercise 1: ChatGLM-6B's prompt for a query after some (query, response) turns."""
    if not history:
        return query
    prompt = ""
    for i, (old_query, old_response) in enumerate(history):
        prompt += f"[Round {i}]\n问：{old_query}\n答：{old_response}\n"
    return prompt + f"[Round {len(history)}]\n问：{query}\n答："


FULL_WIDTH = {",": "，", "!": "！", ":": "：", ";": "；", "?": "？"}


def process_response(text):
    """Exercise 2: strip, then make , ! : ; ? full-width when they touch a CJK character."""
    text = text.strip()
    cjk = "[\u4e00-\u9fff]"
    text = re.sub(rf"(?<={cjk})[,!:;?]", lambda m: FULL_WIDTH[m.group()], text)  # CJK before
    text = re.sub(rf"[,!:;?](?={cjk})", lambda m: FULL_WIDTH[m.group()], text)  # CJK after
    return text


def fit_history(tokenizer, query, history, max_length, reply_room):
    """Exercise 3: drop the oldest turns until prompt + reply room fits; return (kept, dropped)."""
    def prompt_len(turns):
        return len(tokenizer(build_prompt(query, turns))["input_ids"])

    for dropped in range(len(history) + 1):
        kept = history[dropped:]
        if prompt_len(kept) + reply_room <= max_length:
            return kept, dropped
    raise ValueError(f"the query alone does not fit in max_length={max_length}")


def whole_chars(data):
    """Exercise 4: the complete UTF-8 characters at the start of ``data`` (bytes)."""
    for end in range(len(data), max(len(data) - 4, -1), -1):  # an incomplete tail is at most 3 bytes
        try:
            return data[:end].decode("utf-8")
        except UnicodeDecodeError:
            continue
    return data.decode("utf-8", errors="ignore")
