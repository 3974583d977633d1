"""Reference solutions for the exercises in notebooks/05_lora_finetuning.ipynb.

Try the exercises first; the notebook checks these with the same checkers as your answers.
"""


def lora_param_count(in_features, out_features, r):
    """Exercise 1: A is r x in_features, B is out_features x r; the frozen W does not count."""
    return r * in_features + out_features * r


def lora_forward(x, W, b, A, B, alpha, r):
    """Exercise 2: the frozen layer plus the low-rank branch, scaled by alpha / r."""
    frozen = x @ W.T + b
    branch = (x @ A.T) @ B.T  # down to r numbers per token, then back up to out_features
    return frozen + branch * (alpha / r)


def merge_weight(W, A, B, alpha, r):
    """Exercise 3: fold the branch into the weight (a new tensor; W is left as it was)."""
    return W + (B @ A) * (alpha / r)


def optimizer_state_bytes(trainable_params, bytes_per_value=4):
    """Exercise 4: AdamW keeps two running moments (exp_avg, exp_avg_sq) per trainable parameter."""
    return 2 * trainable_params * bytes_per_value
