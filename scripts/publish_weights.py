"""Publish a training run's best model into weights/<id>/ as a zoo model folder.

    python scripts/publish_weights.py runs/fashion-mnist-plif fashion-mnist-plif \
        --command "plif-zoo train ..." [--float16]

It re-measures the stored weights (after the optional float16 rounding) in float32 on
the full validation and test splits and on the fixed test slice that
tests/test_published_weights.py checks, draws the accuracy and tau figures, writes the
folder atomically and prints the PUBLISHED_WEIGHTS line for plif_zoo/registry.py.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
from pathlib import Path

import torch

import plif_zoo
from plif_zoo import training
from plif_zoo._io import cpu_name
from plif_zoo.registry import published_entry

SLICE_SAMPLES = 1000  # evenly spaced test images checked by tests/test_published_weights.py


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("model_id")
    parser.add_argument("--out", type=Path, default=None, help="default: weights/<model_id>")
    parser.add_argument("--command", required=True, help="the training command, for the card")
    parser.add_argument("--float16", action="store_true", help="store float16 weights")
    parser.add_argument(
        "--max-eval-samples",
        type=int,
        default=None,
        help="only to try this script: evaluate on N images (the card then says so)",
    )
    args = parser.parse_args()

    run = args.run_dir
    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    best_cfg = json.loads((run / "best" / "config.json").read_text())["card"]
    model = plif_zoo.load(f"local-dir:{run / 'best'}")
    if args.float16:  # measure exactly the weights that are stored (not the unsaved buffers)
        model.load_state_dict(
            {
                k: v.half().float() if v.is_floating_point() else v
                for k, v in model.state_dict().items()
            }
        )
    model.eval()

    results = {}
    limit = args.max_eval_samples
    for split, n in (("val", limit), ("test", limit), ("test_slice", SLICE_SAMPLES)):
        r = training.evaluate(
            model,
            "fashion-mnist" if args.model_id.startswith("fashion-mnist") else None,
            split="test" if split == "test_slice" else split,
            max_samples=n,
        )
        results[split] = r
        print(
            f"{split}: top1 {100 * r['top1']:.2f}% on {r['samples']} images "
            f"({r['images_per_s']:.0f} img/s)"
        )

    accuracy_a = max(float(r["test_top1"]) for r in rows)
    metrics = {
        "accuracy_b": round(100 * results["test"]["top1"], 2),
        "val_top1": round(100 * results["val"]["top1"], 2),
        "accuracy_a": round(100 * accuracy_a, 2),
    }
    out = args.out or Path(__file__).resolve().parents[1] / "weights" / args.model_id
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    figures = [p.name for p in training.plot_run(run, tmp)]
    epochs = len(rows)
    recipe = best_cfg["recipe"]
    # the run's record: a GPU's name, or "<cpu> CPU (N cores), M threads"
    trained_on = best_cfg.get("hardware") or f"{cpu_name()} CPU ({os.cpu_count()} cores)"
    on_cpu = " CPU (" in trained_on
    card = dict(
        model_id=args.model_id,
        metrics=metrics,
        protocol=(
            f"accuracy-B: weights of epoch {best_cfg['best_epoch']} of {epochs}, "
            f"chosen by validation top-1 on the "
            f"{results['val']['samples']:,} training images held out (first 15% of each class); "
            f"trained on the other 51,000; test top-1 "
            f"on {results['test']['samples']:,} test images, "
            f"measured once in float32 on the stored "
            f"{'float16' if args.float16 else 'float32'} weights "
            f"(`plif-zoo eval {args.model_id}`). "
            f"accuracy-A (beside it): best test top-1 over the {epochs} epochs, "
            f"measured during training."
        ),
        recipe=(
            f"{epochs} epochs (the paper: 1024), batch {recipe['batch_size']}, "
            f"Adam lr {recipe['lr']}, "
            f"CosineAnnealingLR T_max {recipe['t_max']} epochs "
            f"(the paper: 64{'' if recipe['t_max'] == 64 else ', shortened to this budget'}), "
            f"MSE on firing rates, T {best_cfg.get('T', 8)}, seed {recipe['seed']}, "
            f"{'bf16' if on_cpu else 'fp16'} autocast {'on' if recipe.get('amp') else 'off'}"
        ),
        hardware=f"trained on {trained_on}; train wall time "
        f"{float(rows[-1]['train_wall_s']) / 3600:.2f} h; measured on {cpu_name()} "
        f"({os.cpu_count()} cores), torch {torch.__version__}",
        command=args.command,
        train_wall_time_s=round(float(rows[-1]["train_wall_s"]), 1),
        epochs=epochs,
        best_epoch=best_cfg["best_epoch"],
        batch_size=recipe["batch_size"],
        lr=recipe["lr"],
        T=model.T,
        slice_check={
            "split": "test",
            "samples": SLICE_SAMPLES,
            "top1": results["test_slice"]["top1"],
        },
        figures=figures,
        weights_dtype="float16" if args.float16 else "float32",
    )
    plif_zoo.save_pretrained(model.half() if args.float16 else model, tmp, **card)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    print(published_entry(out, None))


if __name__ == "__main__":
    main()
