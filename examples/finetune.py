"""Fine-tune a pretrained zoo model on your own images with a new number of classes.

    python examples/finetune.py MY_IMAGES --model runs/example-train/best

MY_IMAGES holds train/ and test/, each with one folder of images per class (any size and
colour: they are converted to the model's input size, 1 x 28 x 28 for the default model).
The output layer is replaced, the convolutional part frozen, and the rest trained with the
paper's recipe; 15% of each training class is held out to pick the epoch (accuracy-B).
"""

import argparse
from pathlib import Path

from plif_zoo.training import finetune

parser = argparse.ArgumentParser()
parser.add_argument("images", type=Path)
parser.add_argument(
    "--model", default="fashion-mnist-plif", help="registry id with weights or a model folder"
)
parser.add_argument("--epochs", type=int, default=5)
parser.add_argument("--out", default="runs/example-finetune")
args = parser.parse_args()

classes = sorted(p.name for p in (args.images / "train").iterdir() if p.is_dir())
model = f"local-dir:{args.model}" if Path(args.model).is_dir() else args.model
result = finetune(
    model,
    args.images,
    num_classes=len(classes),
    freeze_features=True,
    epochs=args.epochs,
    out=args.out,
)
if result.stopped:  # Ctrl-C or SIGTERM: a checkpoint was written in args.out
    raise SystemExit(f"stopped in epoch {result.epochs + 1}; the checkpoint is in {args.out}")
print(
    f"{len(classes)} classes {classes}: accuracy-B {result.accuracy_b:.2%}, "
    f"model in {args.out}/best"
)
