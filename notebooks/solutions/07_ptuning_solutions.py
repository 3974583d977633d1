"""Reference solutions for the exercises in notebooks/07_ptuning_v2.ipynb.

Try the exercises first; the notebook checks these with the same checkers as your answers.
"""
import torch


def prefix_params(num_layers, hidden_size, pre_seq_len):
    """Exercise 1: one key and one value vector of hidden_size numbers, per layer and prefix position."""
    return pre_seq_len * num_layers * 2 * hidden_size


def ptuning_prompt(query, history):
    """Exercise 2: main.py's rounds, with full-width colons; the new query is round len(history)."""
    prompt = ""
    for i, (old_query, response) in enumerate(history):
        prompt += f"[Round {i}]\n问：{old_query}\n答：{response}\n"
    return prompt + f"[Round {len(history)}]\n问：{query}\n答："


def ptuning_labels(input_ids, sop_id, pad_id, length):
    """Exercise 3: -100 over the prompt, the ids from <sop> on, padding to length, and no pad id supervised."""
    context = input_ids.index(sop_id)
    labels = [-100] * context + input_ids[context:] + [pad_id] * (length - len(input_ids))
    return [-100 if t == pad_id else t for t in labels]


def with_prefix_columns(attend, pre_seq_len):
    """Exercise 4: pre_seq_len always-True key columns in front of the tokens' mask."""
    front = torch.ones(*attend.shape[:-1], pre_seq_len, dtype=torch.bool)
    return torch.cat((front, attend.bool()), dim=-1)
