"""Training curves as a PNG (matplotlib, written atomically)."""
from __future__ import annotations

from pathlib import Path

from cvgl_ros.atomic import atomic_path


def plot_training_curves(history: list[dict], path: str | Path, title: str = "training") -> Path:
    """Loss terms per epoch (train) and validation errors per epoch, one panel each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    ax = axes[0]
    for key, label in (("loss", "total"), ("matching", "L_m (sum over iterations)"), ("position", "L_p"),
                       ("nll", "volume NLL")):
        ax.plot(epochs, [h["train"][key] for h in history], marker="o", label=label)
    ax.set(xlabel="epoch", ylabel="loss", title="training losses", yscale="log")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax = axes[1]
    ax.plot(epochs, [h["train"]["confidence"] for h in history], marker="o", color="C4")
    ax.set(xlabel="epoch", title="L_c (sum over iterations)")
    ax.grid(alpha=0.3)
    ax = axes[2]
    if any("val" in h for h in history):
        val = [h for h in history if "val" in h]
        ep = [h["epoch"] for h in val]
        ax.plot(ep, [h["val"]["position_median_m"] for h in val], marker="o", label="median position error (m)")
        ax.plot(ep, [h["val"]["volume_position_median_m"] for h in val], marker="o", ls="--",
                label="median error of the volume's best cell (m)")
        ax.plot(ep, [h["val"]["azimuth_median_deg"] for h in val], marker="s", label="median azimuth error (deg)")
        ax.set(yscale="log")
        ax.legend(fontsize=8)
    ax.set(xlabel="epoch", title=f"validation ({history[-1].get('val', {}).get('count', 0)} pairs)")
    ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path
