"""Training curves as a PNG (matplotlib, written atomically)."""
from __future__ import annotations

from pathlib import Path

from cvgl_ros.evaluation.figures import pyplot, save_figure


def plot_training_curves(history: list[dict], path: str | Path, title: str = "training") -> Path:
    """Loss terms per epoch (train) and validation errors per epoch, one panel each."""
    plt = pyplot()
    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    curve = [c for h in history for c in h.get("curve", [])]
    keys = (("loss", "total"), ("matching", "L_m (sum over iterations)"), ("position", "L_p"), ("nll", "volume NLL"))
    if curve:
        steps_per_epoch = max(1, history[0]["train"].get("steps", 1))
        x = [c["step"] / steps_per_epoch for c in curve]
        for i, (key, label) in enumerate(keys):
            ax.plot(x, [c[key] for c in curve], color=f"C{i}", lw=1.2, label=label)
            ax.plot(epochs, [h["train"][key] for h in history], "o", color=f"C{i}", ms=4)
        ax.set(xlabel="epoch (lines: 25-step means, dots: epoch means)")
    else:
        for key, label in keys:
            ax.plot(epochs, [h["train"][key] for h in history], marker="o", label=label)
        ax.set(xlabel="epoch")
    ax.set(ylabel="loss", title="training losses", yscale="log")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax = axes[1]
    if curve:
        ax.plot(x, [c["confidence"] for c in curve], color="C4", lw=1.2, label="L_c")
    ax.plot(epochs, [h["train"]["confidence"] for h in history], "o", color="C4", ms=4)
    ax.ticklabel_format(axis="y", useOffset=False)
    ax.set(xlabel="epoch", title="L_c (Eq. 5, sum over iterations) and learning rate")
    ax.grid(alpha=0.3)
    lr_ax = ax.twinx()
    lr_ax.plot(epochs, [h["lr"] for h in history], "s:", color="0.4", ms=4, label="learning rate at epoch end")
    lr_ax.set(ylabel="learning rate")
    lr_ax.legend(fontsize=8, loc="upper right")
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
    for a in axes:
        a.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path, dpi=100)
