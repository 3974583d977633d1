"""One helper per picture kind, each with a title, axis labels and units (lessons 01, 02, 05, 07).

Titles and axis labels are in English and 中文 (``bilingual``): the Chinese edition shows these figures too.
"""
from __future__ import annotations

import torch

from glmcourse.bilingual import bilingual
from glmcourse.masks import _as_list
from glmcourse.quant import mse, sqnr_db


def plot_mask(mask, tokens=None, title: str | None = None, ax=None, part_a_len: int | None = None):
    """Draw a mask as a heatmap (dark = may attend) with token labels; returns the matplotlib axes.

    ``part_a_len`` draws lines between Part A and Part B. Call ``plt.show()`` after it.
    """
    import matplotlib.pyplot as plt

    mask = torch.as_tensor(mask).bool()
    size = mask.shape[-1]
    if ax is None:
        side = min(8.0, 1.5 + 0.4 * size)
        _, ax = plt.subplots(figsize=(side, side))
    ax.imshow(mask.int().numpy(), cmap="Blues", vmin=0, vmax=1.25)
    labels = [str(t) for t in _as_list(tokens)] if tokens is not None else [str(i) for i in range(size)]
    if size <= 40:
        ax.set_xticks(range(size), labels, rotation=90)
        ax.set_yticks(range(size), labels)
    if part_a_len is not None:
        for edge in (ax.axhline, ax.axvline):
            edge(part_a_len - 0.5, color="tab:red", linewidth=1.5)
    ax.set_title(title or bilingual("Attention mask"))
    ax.set_xlabel(bilingual("key token: attended to (dark = may attend)"))
    ax.set_ylabel(bilingual("query token: attending"))
    return ax


def plot_error_histogram(w: torch.Tensor, w_hat: torch.Tensor, title: str | None = None, ax=None,
                         bins: int = 80, error_range: float | None = None):
    """Histogram of ``w_hat - w``, with the MSE and SQNR in the legend.

    ``error_range`` fixes the x-axis to ``[-error_range, error_range]`` (and the bins with it), so that
    histograms of different settings can be compared by their width.
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    ax = ax or plt.subplots(figsize=(6, 3.2))[1]
    err = (w_hat.double() - w.double()).flatten().numpy()
    span = (-error_range, error_range) if error_range else None
    ax.hist(err, bins=bins, range=span, color="tab:blue", alpha=0.8,
            label=f"MSE {mse(w, w_hat):.2e}, SQNR {sqnr_db(w, w_hat):.1f} dB")
    if span:
        ax.set_xlim(*span)
    ax.xaxis.set_major_locator(MaxNLocator(5))  # few ticks: labels never overlap
    ax.ticklabel_format(axis="x", style="sci", scilimits=(-2, 2))
    ax.set(title=title or bilingual("Quantization error"),
           xlabel=bilingual("dequantized - original weight (weight units)"), ylabel=bilingual("number of weights"))
    ax.legend(loc="upper right", fontsize=8)
    return ax


def plot_sqnr_vs_bits(curves: dict, ax=None):
    """``curves``: ``{label: {bits: sqnr_db}}`` -> SQNR against bit width, with the 6.02 dB/bit rule."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(6, 3.5))[1]
    for label, points in curves.items():
        bits = sorted(points)
        ax.plot(bits, [points[b] for b in bits], marker="o", label=label)
    ax.set(title=bilingual("Quantization error against bit width"), xlabel=bilingual("bits per weight"),
           ylabel=bilingual("SQNR (dB, higher is better)"))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return ax


def plot_levels(w: torch.Tensor, levels: dict, ax=None):
    """Histogram of normalized weights with each 4-bit grid's levels drawn as ticks above it."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(7, 3.5))[1]
    ax.hist((w / w.abs().max()).flatten().numpy(), bins=120, color="lightgray", density=True,
            label="weights / max|w|")
    top = ax.get_ylim()[1]
    for i, (name, values) in enumerate(levels.items()):
        y = top * (1.05 + 0.1 * i)
        ax.plot(values.numpy(), [y] * len(values), "|", markersize=14, mew=2, label=f"{name} levels")
    ax.set(title=bilingual("4-bit grids over normally distributed weights"),
           xlabel=bilingual("value / max|w| (unitless)"), ylabel=bilingual("density"))
    ax.legend(fontsize=8, loc="upper left")
    return ax


def plot_loss(log, ax=None, title: str | None = None):
    """Training loss (nats/token) against the optimizer step, from finetune's loss log."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(6, 3.2))[1]
    points = [(row["step"], row["loss"]) for row in log if "loss" in row]
    if points:
        steps, losses = zip(*points)
        ax.plot(steps, losses, marker="o", markersize=3)
    ax.set_title(title or bilingual("LoRA training loss"))
    ax.set_xlabel(bilingual("optimizer step"))
    ax.set_ylabel(bilingual("training loss (nats/token)"))
    ax.grid(alpha=0.3)
    return ax


