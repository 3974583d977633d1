"""Reference solutions for the exercises in notebooks/01_glm_attention_masks.ipynb.

Try the exercises first; the notebook checks these with the same checkers as your answers.
"""
import torch


def prefix_mask(n, prefix_len):
    """Exercise 1: GLM's prefix mask, bool [n, n], True = may attend."""
    rows = torch.arange(n).unsqueeze(1)  # query index, as a column
    cols = torch.arange(n).unsqueeze(0)  # key index, as a row
    return (cols <= rows) | (cols < prefix_len)  # causal, plus the whole prefix for everyone


def blank_positions(tokens, spans):
    """Exercise 2: the two position rows of a blank-infilling example."""
    # Part A: walk the text in order; each span shrinks to one [MASK]. Remember where each [MASK] lands.
    mask_index, part_a_len, cursor = {}, 0, 0
    for start, end in sorted(spans):
        part_a_len += start - cursor  # the kept tokens before this span
        mask_index[(start, end)] = part_a_len
        part_a_len += 1  # the [MASK] itself
        cursor = end
    part_a_len += len(tokens) - cursor
    position_ids = list(range(part_a_len))
    block_position_ids = [0] * part_a_len
    # Part B: spans in the given order, each as <sop> + span.
    for start, end in spans:
        span_len = end - start
        position_ids += [mask_index[(start, end)]] * (span_len + 1)
        block_position_ids += list(range(1, span_len + 2))
    return position_ids, block_position_ids


def chatglm_positions(input_ids, gmask_id, sop_id):
    """Exercise 3: ChatGLM-6B's [2, L] positions for one encoded prompt."""
    ids = list(input_ids)
    mask_at, sop_at = ids.index(gmask_id), ids.index(sop_id)
    position_ids = [i if i < sop_at else mask_at for i in range(len(ids))]
    block_position_ids = [0 if i < sop_at else i - sop_at + 1 for i in range(len(ids))]
    return torch.tensor([position_ids, block_position_ids])
