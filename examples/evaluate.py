"""Evaluate a zoo model: top-1, loss, firing rate of every spiking layer, spikes and synaptic
operations per sample.

    python examples/evaluate.py                                   # published weights
    python examples/evaluate.py runs/example-train/best           # a model folder you trained
    python examples/evaluate.py fashion-mnist-plif --untrained    # architecture only
"""

import argparse

from plif_zoo.training import evaluate

parser = argparse.ArgumentParser()
parser.add_argument(
    "model", nargs="?", default="fashion-mnist-plif", help="registry id or model folder"
)
parser.add_argument("--untrained", action="store_true")
parser.add_argument("--samples", type=int, default=1000, help="N evenly spaced test images")
args = parser.parse_args()

r = evaluate(args.model, pretrained=not args.untrained, max_samples=args.samples)
print(
    f"top-1 {r['top1']:.2%} on {r['samples']} test images, loss {r['loss']:.4f}, "
    f"{r['images_per_s']:.0f} images/s"
)
print(
    f"{r['spikes_per_sample']:.0f} spikes and {r['synops_per_sample']:.3g} "
    f"synaptic operations per image"
)
for layer, rate in r["firing_rates"].items():
    print(f"  {layer:<14} fires {rate:.2%} of the time")
