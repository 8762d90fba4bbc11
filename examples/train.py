"""Train the paper's Fashion-MNIST network with its recipe, from a script.

    python examples/train.py                      # a taste: 1 epoch on 1,600 images
    python examples/train.py --full               # the real run (1024 epochs; resume with --resume)

Outputs land in runs/example-train/: metrics.csv (accuracy-A and -B per epoch), tau.csv,
TensorBoard events, checkpoint.pt and best/ (a zoo model folder, loadable with
plif_zoo.load("local-dir:runs/example-train/best")).
"""

import argparse

from plif_zoo.training import plot_run, train

parser = argparse.ArgumentParser()
parser.add_argument(
    "--full", action="store_true", help="the paper's recipe on all 51,000 training images"
)
parser.add_argument("--resume", action="store_true")
parser.add_argument("--out", default="runs/example-train")
args = parser.parse_args()

quick = {} if args.full else dict(epochs=1, max_train_samples=1600, max_eval_samples=500)
result = train(
    # registry id; configs/fashion-mnist-plif.yaml holds what differs from the recipe
    "fashion-mnist-plif",
    out=args.out,
    resume=args.resume,
    checkpoint_every=200,  # long CPU epochs: also checkpoint inside an epoch
    **quick,
)
if result.stopped:  # Ctrl-C or SIGTERM: a checkpoint was written
    raise SystemExit(f"stopped in epoch {result.epochs + 1}; continue with --resume")
print(
    f"accuracy-B {result.accuracy_b:.2%} (epoch {result.best_epoch}), "
    f"accuracy-A {result.accuracy_a:.2%}"
)
print("plots:", *plot_run(args.out))
