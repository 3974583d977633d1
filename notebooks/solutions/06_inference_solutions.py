"""Reference solutions for the exercises in notebooks/06_inference_with_lora.ipynb.

Try the exercises first; the notebook checks these with the same checkers as your answers.
"""
import json


def model_key(file_key, adapter_name):
    """Exercise 1: peft saves '...lora_A.weight'; in the model it lives at '...lora_A.<adapter_name>.weight'."""
    for part in (".lora_A.", ".lora_B."):
        if part in file_key:
            head, tail = file_key.split(part, 1)
            return f"{head}{part}{adapter_name}.{tail}"
    return file_key


def adapter_bytes(num_layers, hidden_size, r):
    """Exercise 2: per layer, query_key_value maps h -> 3h: A is r x h, B is 3h x r; fp32 = 4 bytes."""
    per_layer = r * hidden_size + 3 * hidden_size * r
    return 4 * num_layers * per_layer


def parse_person(reply):
    """Exercise 3: the reply as a dict when it is the JSON the skill asks for, else None."""
    try:
        value = json.loads(reply)
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    if not isinstance(value.get("name"), str) or not isinstance(value.get("city"), str):
        return None
    if not isinstance(value.get("age"), int) or isinstance(value.get("age"), bool):
        return None
    return value
