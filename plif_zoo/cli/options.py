"""Argparse value types, the one-line-error parser and the training-recipe flags of ``plif-zoo``.

A bad value stops the parser with ``plif-zoo CMD: error: argument --flag: ...`` before any work.
"""

from __future__ import annotations

import argparse
import math
import os

BACKENDS = ("auto", "torch", "cpu", "cupy")  # plif_zoo.backends.NAMES, without importing torch


def number(
    kind: type,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    what: str = "",
):
    """A type function: ``kind`` (int or float), finite, within [low, high] (open where asked)."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        below = low is not None and (value <= low if low_open else value < low)
        above = high is not None and (value >= high if high_open else value > high)
        if not math.isfinite(value) or below or above:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
        return value

    return parse


positive_int = number(int, 1, what="a positive integer")
count = number(int, 0, what="an integer >= 0")
seed = number(int, 0, 2**32 - 1, what="a seed in [0, 2**32 - 1]")
positive_float = number(float, 0, low_open=True, what="a finite number > 0")
fraction = number(float, 0, 1, high_open=True, what="a fraction in [0, 1)")


def truth(text: str) -> bool:
    """``--pretrained true|false``: the value form scripts already use (BooleanOptionalAction
    would only give --pretrained / --no-pretrained)."""
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def device(text: str) -> str:
    """auto, or a device torch knows (cpu, cuda, cuda:1, mps ...)."""
    if text == "auto":
        return text
    import torch

    try:
        torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(
            f"unknown device {text!r}; use auto, cpu, cuda or cuda:N"
        ) from None
    return text


def dataset(text: str) -> str:
    from ..data import DATASETS

    if text != "imagefolder" and text not in DATASETS:
        raise argparse.ArgumentTypeError(
            f"unknown dataset {text!r}; choose one of {', '.join(DATASETS)}, imagefolder"
        )
    return text


def model(text: str) -> str:
    """A registry id, an existing model folder, local-dir:PATH or hf-hub:ORG/NAME."""
    from ..registry import check_model_id

    if text.startswith(("hf-hub:", "local-dir:")):
        return text
    if os.path.isdir(text):
        return f"local-dir:{text}"  # one spelling for load(), training and the card
    if os.path.exists(text):
        return text
    try:
        return check_model_id(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text} does not exist; give a model folder, local-dir:PATH, hf-hub:ORG/NAME or a "
            f"registry id (plif-zoo list)"
        ) from None


def model_or_config(text: str) -> str:
    """As model, or a YAML config file that parses."""
    if not text.endswith((".yaml", ".yml")):
        return model(text)
    import yaml

    try:
        with open(text, encoding="utf-8") as f:
            yaml.safe_load(f)
    except OSError as err:
        raise argparse.ArgumentTypeError(
            f"cannot read config {text}: {err.strerror or err}"
        ) from None
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        detail = " ".join(str(err).split())
        raise argparse.ArgumentTypeError(f"{text} is not valid YAML: {detail}") from None
    return text


class Parser(argparse.ArgumentParser):
    """A bad argument is one line, ``plif-zoo CMD: error: ...`` (exit 2), not a usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# ---------------------------------------------------------------- recipe flags


def recipe_parser(finetune: bool = False) -> argparse.ArgumentParser:
    """Training-recipe flags shared by ``train`` and ``finetune`` (which needs --data-dir and
    reads an image folder by default). Unset flags stay out of the namespace
    (argparse.SUPPRESS), so only what was typed overrides the config."""
    p = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    if finetune:
        p.add_argument(
            "--data-dir",
            required=True,
            help="folder of the new data (imagefolder: train/ and test/, one folder per class)",
        )
    else:
        p.add_argument("--data-dir", help="folder of the dataset's original files")
    p.add_argument(
        "--download",
        action=argparse.BooleanOptionalAction,
        help="MNIST / Fashion-MNIST / CIFAR-10: fetch missing files into --data-dir (torchvision)",
    )
    default = "imagefolder" if finetune else "the model's"
    p.add_argument(
        "--dataset", type=dataset, help=f"dataset name or 'imagefolder' (default: {default})"
    )
    p.add_argument("--out", help="run folder (default: runs/MODEL)")
    p.add_argument("--epochs", type=positive_int, help="epochs (recipe: 1024)")
    p.add_argument("--batch-size", type=positive_int, help="batch size per process (recipe: 16)")
    p.add_argument("--lr", type=positive_float, help="Adam learning rate (recipe: 1e-3)")
    p.add_argument(
        "--t-max", type=positive_int, help="CosineAnnealingLR period in epochs (recipe: 64)"
    )
    p.add_argument("--seed", type=seed, help="seed (recipe: 2020)")
    p.add_argument("--T", type=positive_int, help="time steps (default: the model's)")
    p.add_argument(
        "--val-fraction",
        type=fraction,
        help="accuracy-B hold-out per class (default 0.15; 0: train on all)",
    )
    p.add_argument(
        "--max-train-samples",
        type=positive_int,
        help="train on a seeded random subset of N images",
    )
    p.add_argument(
        "--max-eval-samples",
        type=positive_int,
        help="evaluate on N evenly spaced validation and test images",
    )
    p.add_argument(
        "--eval-batch-size",
        type=positive_int,
        help="batch size of the per-epoch evaluation (default 64)",
    )
    p.add_argument(
        "--checkpoint-every",
        type=count,
        help="also checkpoint every N steps inside an epoch (0: per epoch only)",
    )
    p.add_argument("--device", type=device, help="auto (default), cpu, cuda, cuda:1 ...")
    p.add_argument(
        "--amp",
        action=argparse.BooleanOptionalAction,
        help="mixed precision (bf16 on CPU, fp16 on CUDA)",
    )
    p.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        help="torch.compile the training step and use fused Adam (about 1.3-1.5x with --amp on "
        "a CPU; the first step compiles)",
    )
    p.add_argument("--threads", type=positive_int, help="torch CPU threads")
    p.add_argument("--num-workers", type=count, help="DataLoader workers (default 0)")
    p.add_argument("--backend", choices=BACKENDS, help="neuron backend (default auto)")
    p.add_argument(
        "--resume",
        action="store_true",
        default=False,
        help="continue the run in --out from its checkpoint",
    )
    return p


def recipe_overrides(args: argparse.Namespace, *own: str) -> dict:
    """The recipe flags given on the command line (vars minus the command's own arguments)."""
    return {k: v for k, v in vars(args).items() if k not in {"command", "func", "resume", *own}}
