"""PNG figures of a run folder: accuracy per epoch and tau per PLIF layer (paper Fig. 7)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from .._io import atomic_write
from ..errors import import_extra
from .run_lock import check_writable, disk_errors

__all__ = ["plot_run"]


def _read_csv(path: Path) -> list[dict[str, float]]:
    """Rows of numbers with an ``epoch`` column; a ValueError naming ``path`` for anything else."""
    try:
        with open(path, newline="") as f:
            rows = [
                {k: float(v) for k, v in row.items() if v not in ("", None)}
                for row in csv.DictReader(f)
            ]
    except (ValueError, TypeError, csv.Error) as err:  # UnicodeDecodeError is a ValueError
        raise ValueError(
            f"{path} is not a table written by `plif-zoo train` ({err}); "
            f"pass the --out folder of a training run"
        ) from None
    if not rows or not all("epoch" in r for r in rows):
        raise ValueError(
            f"{path} holds no epochs (no rows with an `epoch` column); pass the --out folder "
            f"of a `plif-zoo train` run with at least one finished epoch"
        )
    return rows


def _save(fig, ax, ylabel: str, title: str, path: Path) -> Path:
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, dpi=120, format="png")
    with disk_errors("the figure", path):
        return atomic_write(path, png.getvalue())


def plot_run(run_dir: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """PNG plots of a run: ``accuracy.png`` (train / val / test top-1 and accuracy-A/B per epoch)
    and ``tau.png`` (tau of every PLIF layer per epoch, the paper's Fig. 7). Returns the paths."""
    import_extra("matplotlib", "train", "plotting")
    from matplotlib.figure import Figure  # not pyplot: the caller's backend stays as it is

    run_dir = Path(run_dir)
    metrics_file = run_dir / "metrics.csv"
    if not metrics_file.is_file():
        raise FileNotFoundError(
            f"{metrics_file} not found; pass the --out folder of a `plif-zoo train` run "
            f"with at least one finished epoch"
        )
    out_dir = Path(out_dir) if out_dir is not None else run_dir
    check_writable(out_dir, "plot folder")  # before reading or drawing anything
    rows = _read_csv(metrics_file)
    epochs = [r["epoch"] for r in rows]
    written = []

    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for key, label in (
        ("train_top1", "train"),
        ("val_top1", "validation"),
        ("test_top1", "test"),
        ("accuracy_a", "accuracy-A (best test)"),
        ("accuracy_b", "accuracy-B (test at best val)"),
    ):
        if any(key in r for r in rows):
            ax.plot(
                epochs,
                [100 * r.get(key, float("nan")) for r in rows],
                label=label,
                linestyle="--" if key.startswith("accuracy") else "-",
                marker="." if len(rows) < 30 else None,
            )
    written.append(
        _save(
            fig,
            ax,
            "top-1 accuracy (%)",
            f"{run_dir.name}: accuracy",
            out_dir / "accuracy.png",
        )
    )

    tau_file = run_dir / "tau.csv"
    taus = _read_csv(tau_file) if tau_file.is_file() and tau_file.stat().st_size else []
    layers = [k for k in taus[0] if k != "epoch"] if taus else []
    if layers:
        fig = Figure(figsize=(6, 4))
        ax = fig.subplots()
        for name in layers:
            ax.plot(
                [r["epoch"] for r in taus],
                [r.get(name, float("nan")) for r in taus],
                label=name,
                marker="." if len(taus) < 30 else None,
            )
        written.append(
            _save(
                fig,
                ax,
                "membrane time constant tau",
                f"{run_dir.name}: tau per PLIF layer (paper Fig. 7)",
                out_dir / "tau.png",
            )
        )
    return written
