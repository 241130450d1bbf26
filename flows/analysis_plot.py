"""The convergence (ridgeline) view of an influence series, drawn as a PNG with matplotlib (Agg).

Each term of the series w A + w A^2 + ... gives every node a share of influence carried by paths
of one length. One ridge per term shows how those shares are distributed over the nodes (a
smoothed histogram of log10 influence, nodes with zero left out), top to bottom in path length,
labelled with the term's part of the total influence. Later ridges shift left and flatten as the
series converges: longer paths carry less.

Figures are made with `matplotlib.figure.Figure` and the Agg canvas: no display, no pyplot state.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

BINS = 80
SMOOTHING = 1.5  # gaussian kernel width, in bins
OVERLAP = 1.6  # ridge height relative to the spacing between ridges


def _smoothed_density(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    counts, _ = np.histogram(values, bins=edges)
    reach = int(np.ceil(3 * SMOOTHING))
    kernel = np.exp(-0.5 * (np.arange(-reach, reach + 1) / SMOOTHING) ** 2)
    smooth = np.convolve(counts.astype(float), kernel / kernel.sum(), mode="same")
    return smooth / smooth.max() if smooth.max() > 0 else smooth


def ridgeline_png(trace: np.ndarray, path: str | Path, title: str) -> Path:
    """Draw `trace` (n_steps, M), an array or tensor: one ridge per term. Returns the path."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    terms = np.asarray(trace, dtype=np.float64)
    if terms.ndim != 2 or terms.shape[0] == 0:
        raise ValueError(f"a trace of shape (n_steps, nodes) is needed, got {terms.shape}")
    positive = terms[terms > 0]
    if positive.size == 0:
        raise ValueError("the trace holds no positive influence to draw")
    logs = np.log10(positive)
    edges = np.linspace(logs.min() - 0.25, logs.max() + 0.25, BINS + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    shares = terms.sum(axis=1) / terms.sum()

    n_steps = terms.shape[0]
    figure = Figure(figsize=(8, 1.2 + 0.55 * n_steps), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    cmap = colormaps["viridis"]
    for step in range(n_steps):
        row = terms[step]
        density = _smoothed_density(np.log10(row[row > 0]), edges) if (row > 0).any() else None
        base = n_steps - 1 - step
        colour = cmap(step / max(1, n_steps - 1))
        if density is not None:
            top = base + OVERLAP * density
            # Lower ridges stand in front of the ones above them.
            axes.fill_between(centres, base, top, color=colour, alpha=0.85, zorder=step + 1)
            axes.plot(centres, top, color="black", linewidth=0.6, zorder=step + 1)
        axes.text(
            edges[0],
            base + 0.15,
            f"term {step + 1}: {shares[step]:.1%}",
            fontsize=8,
            zorder=2 * n_steps,
        )
    axes.set_yticks([])
    axes.set_xlabel("log10 influence of a node (nodes with zero left out)")
    axes.set_title(title, fontsize=10)
    axes.set_ylim(-0.2, n_steps - 1 + OVERLAP + 0.3)
    for side in ("left", "right", "top"):
        axes.spines[side].set_visible(False)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, format="png")
    return path
