"""Learning-curve plot."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from nesf.io.writers import atomic_write


def plot_learning_curve(history: Sequence[dict], path: str | Path, title: str = "NeSF training") -> Path:
    """Train and validation loss per epoch (log scale) to a PNG, atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    ax = axes[0]
    ax.plot(epochs, [h["train_loss"] for h in history], label="train", marker=".")
    ax.plot(epochs, [h["val_loss"] for h in history], label="validation", marker=".")
    ax.set_xlabel("epoch")
    ax.set_ylabel("total loss")
    ax.set_yscale("log")
    ax.legend()
    ax.grid(alpha=0.3)
    ax = axes[1]
    for key, label in (
        ("val_position", "position (val)"),
        ("val_species", "species (val)"),
        ("val_lattice", "lattice (val)"),
    ):
        ax.plot(epochs, [h[key] for h in history], label=label, marker=".")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss term (unweighted)")
    ax.set_yscale("log")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()

    def write(p: Path) -> None:
        fig.savefig(p, format="png", dpi=110)

    out = atomic_write(path, write)
    plt.close(fig)
    return out
