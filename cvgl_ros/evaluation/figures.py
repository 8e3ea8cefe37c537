"""Figures as files: matplotlib on its file-only backend, and the one way a figure is written.

    from cvgl_ros.evaluation.figures import pyplot, save_figure
    plt = pyplot()
    fig, ax = plt.subplots()
    ...
    save_figure(fig, out_dir / "error_cdf.png", dpi=110)

`save_figure` writes a PNG (whatever the file is called) atomically (`cvgl_ros.atomic.atomic_path`:
a temporary file beside the target, renamed into place when complete, so an interrupted or
failed draw leaves the earlier file as it was), and closes the figure either way: pyplot
keeps every open figure alive until it is closed.
"""
from __future__ import annotations

from pathlib import Path

from cvgl_ros.atomic import atomic_path


def pyplot():
    """`matplotlib.pyplot` on the Agg backend (draws into files; needs no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, *, dpi: float | None = None, **savefig_kwargs) -> Path:
    """Write `fig` to `path` as a PNG (atomic, see the module docstring) and close it; returns the path.

    `dpi` None keeps the figure's own; `savefig_kwargs` go to `Figure.savefig` (e.g.
    bbox_inches="tight", or another format="svg")."""
    import matplotlib.pyplot as plt

    path = Path(path)
    savefig_kwargs.setdefault("format", "png")
    try:
        with atomic_path(path, suffix=path.suffix) as tmp:
            fig.savefig(tmp, dpi=dpi, **savefig_kwargs)
    finally:
        plt.close(fig)
    return path
