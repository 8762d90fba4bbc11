"""The ``plif-zoo`` command line: thin commands over the package modules.

Each command is a ``cmd_<name>(args)`` function registered in ``_build_parser``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

BACKENDS = ("auto", "torch", "cpu", "cupy")  # plif_zoo.backends.NAMES, without importing torch


# ---------------------------------------------------------------- argparse type functions
# A bad value stops the parser with `plif-zoo CMD: error: argument --flag: ...` before any work.


def _number(
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


_positive_int = _number(int, 1, what="a positive integer")
_count = _number(int, 0, what="an integer >= 0")
_seed = _number(int, 0, 2**32 - 1, what="a seed in [0, 2**32 - 1]")
_positive_float = _number(float, 0, low_open=True, what="a finite number > 0")
_fraction = _number(float, 0, 1, high_open=True, what="a fraction in [0, 1)")


def _truth(text: str) -> bool:
    """``--pretrained true|false``: the value form scripts already use (BooleanOptionalAction
    would only give --pretrained / --no-pretrained)."""
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _device(text: str) -> str:
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


def _dataset(text: str) -> str:
    from .data import DATASETS

    if text != "imagefolder" and text not in DATASETS:
        raise argparse.ArgumentTypeError(
            f"unknown dataset {text!r}; choose one of {', '.join(DATASETS)}, imagefolder"
        )
    return text


def _model(text: str) -> str:
    """A registry id, an existing model folder, local-dir:PATH or hf-hub:ORG/NAME."""
    from .registry import check_model_id

    if text.startswith(("hf-hub:", "local-dir:")) or os.path.exists(text):
        return text
    try:
        return check_model_id(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text} does not exist; give a model folder, local-dir:PATH, hf-hub:ORG/NAME or a "
            f"registry id (plif-zoo list)"
        ) from None


def _model_or_config(text: str) -> str:
    """As _model, or a YAML config file that parses."""
    if not text.endswith((".yaml", ".yml")):
        return _model(text)
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


class _Parser(argparse.ArgumentParser):
    """A bad argument is one line, ``plif-zoo CMD: error: ...`` (exit 2), not a usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# ---------------------------------------------------------------- recipe flags


def _recipe_parser() -> argparse.ArgumentParser:
    """Training-recipe flags shared by ``train`` and ``finetune``. Unset flags stay out of the
    namespace (argparse.SUPPRESS), so only what was typed overrides the config."""
    p = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    p.add_argument("--data-dir", help="folder of the dataset's original files")
    p.add_argument(
        "--download",
        action=argparse.BooleanOptionalAction,
        help="MNIST / Fashion-MNIST / CIFAR-10: fetch missing files into --data-dir (torchvision)",
    )
    p.add_argument(
        "--dataset", type=_dataset, help="dataset name (default: the model's) or 'imagefolder'"
    )
    p.add_argument("--out", help="run folder (default: runs/MODEL)")
    p.add_argument("--epochs", type=_positive_int, help="epochs (recipe: 1024)")
    p.add_argument("--batch-size", type=_positive_int, help="batch size per process (recipe: 16)")
    p.add_argument("--lr", type=_positive_float, help="Adam learning rate (recipe: 1e-3)")
    p.add_argument(
        "--t-max", type=_positive_int, help="CosineAnnealingLR period in epochs (recipe: 64)"
    )
    p.add_argument("--seed", type=_seed, help="seed (recipe: 2020)")
    p.add_argument("--T", type=_positive_int, help="time steps (default: the model's)")
    p.add_argument(
        "--val-fraction",
        type=_fraction,
        help="accuracy-B hold-out per class (default 0.15; 0: train on all)",
    )
    p.add_argument(
        "--max-train-samples",
        type=_positive_int,
        help="train on a seeded random subset of N images",
    )
    p.add_argument(
        "--max-eval-samples",
        type=_positive_int,
        help="evaluate on N evenly spaced validation and test images",
    )
    p.add_argument(
        "--eval-batch-size",
        type=_positive_int,
        help="batch size of the per-epoch evaluation (default 64)",
    )
    p.add_argument(
        "--checkpoint-every",
        type=_count,
        help="also checkpoint every N steps inside an epoch (0: per epoch only)",
    )
    p.add_argument("--device", type=_device, help="auto (default), cpu, cuda, cuda:1 ...")
    p.add_argument(
        "--amp",
        action=argparse.BooleanOptionalAction,
        help="mixed precision (bf16 on CPU, fp16 on CUDA)",
    )
    p.add_argument("--threads", type=_positive_int, help="torch CPU threads")
    p.add_argument("--num-workers", type=_count, help="DataLoader workers (default 0)")
    p.add_argument("--backend", choices=BACKENDS, help="neuron backend (default auto)")
    p.add_argument(
        "--resume",
        action="store_true",
        default=False,
        help="continue the run in --out from its checkpoint",
    )
    return p


def _recipe_overrides(args: argparse.Namespace, *own: str) -> dict:
    """The recipe flags given on the command line (vars minus the command's own arguments)."""
    return {k: v for k, v in vars(args).items() if k not in {"command", "func", "resume", *own}}


def cmd_list(args: argparse.Namespace) -> int:
    from .registry import list_models, model_info

    ids = list_models(args.pattern, pretrained=args.pretrained)
    if not ids:
        print(
            f"no model matches {args.pattern!r}" + (" with weights" if args.pretrained else ""),
            file=sys.stderr,
        )
        return 1
    print(f"{'id':<28} {'input':<17} {'T':>3} {'params':>8} {'paper A':>8} {'ours':>7}  weights")
    for model_id in ids:
        info = model_info(model_id)
        paper = f"{info.paper_accuracy_a:.2f}" if info.paper_accuracy_a is not None else "-"
        ours = f"{info.accuracy:.2f}" if info.accuracy is not None else "-"
        shape = "x".join(map(str, info.input_shape))
        print(
            f"{model_id:<28} {shape:<17} {info.T:>3} {info.num_params / 1e6:>7.2f}M {paper:>8} "
            f"{ours:>7}  {'yes' if info.has_weights else 'no'}"
        )
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    import json

    from .registry import model_info

    row = model_info(args.model).as_dict()
    if args.json:
        print(json.dumps(row, indent=2))
        return 0
    width = max(map(len, row))
    for key, value in row.items():
        if isinstance(value, list) and key == "label_names":
            value = ", ".join(value)
        elif isinstance(value, list):
            value = " x ".join(map(str, value))
        elif key == "num_params":
            value = f"{value:,}"
        elif value is None:
            value = "-"
        print(f"{key:<{width}}  {value}")
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from .factory import load

    model = load(args.model, revision=args.revision, cache_dir=args.cache_dir)
    print(
        f"{args.model}: weights verified (sha256), available offline now; "
        f"{sum(p.numel() for p in model.parameters()):,} parameters"
    )
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .factory import push_to_hub
    from .model_folder import read_config
    from .registry import published_entry

    folder = Path(args.folder)
    model_id = read_config(folder).get("card", {}).get("model_id") or folder.name
    repo = args.repo or f"plif-zoo/{model_id}"
    info = push_to_hub(folder, repo, revision=args.revision, private=args.private)
    print(f"pushed {folder} to {repo} at commit {info.oid}")
    print("register it with this line in PUBLISHED_WEIGHTS (plif_zoo/registry.py):")
    print(published_entry(folder, info.oid, hf_repo=repo))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import DemoUnavailable, run_demo

    try:
        r = run_demo(args.model, out=args.out, device=args.device, T=args.T, backend=args.backend)
    except DemoUnavailable as err:
        print(f"plif-zoo demo: {err}", file=sys.stderr)
        return 2
    print(f"{r.model_id}: {len(r.labels)} sample images")
    for i, (pred, true, conf) in enumerate(zip(r.predictions, r.labels, r.confidence, strict=True)):
        mark = "ok" if pred == true else "WRONG"
        if r.rates[i].sum() == 0:
            mark += " (no output spikes)"
        print(f"  {i}: {pred:<12} {100 * conf:5.1f}%  (true: {true}) {mark}")
    print("tau per layer: " + ", ".join(f"{k} {v:.3g}" for k, v in r.taus.items()))
    if r.png is not None:
        print(f"figure: {r.png}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .training import train

    result = train(args.model, resume=args.resume, **_recipe_overrides(args, "model"))
    return 3 if result.stopped else 0


def cmd_eval(args: argparse.Namespace) -> int:
    import json

    from .training import evaluate

    r = evaluate(
        args.model,
        args.dataset,
        data_dir=args.data_dir,
        split=args.split,
        pretrained=args.pretrained,
        max_samples=args.max_eval_samples,
        batch_size=args.batch_size,
        device=args.device,
        amp=args.amp,
        T=args.T,
        backend=args.backend,
    )
    if args.json:
        print(json.dumps(r))
        return 0
    print(
        f"{args.model} on {r['samples']} {r['split']} samples ({r['device']}): top-1 {100 * r['top1']:.2f}%, "
        f"loss {r['loss']:.4f}, {r['images_per_s']:.1f} images/s"
    )
    print(
        f"spikes/sample {r['spikes_per_sample']:.0f}, SynOps/sample {r['synops_per_sample']:.4g}, "
        f"MACs/sample of the real-valued encoder input {r['dense_macs_per_sample']:.4g}"
    )
    for name, rate in r["firing_rates"].items():
        print(f"  firing rate {name:<16} {rate:.4f}")
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    from .training import finetune

    overrides = _recipe_overrides(args, "model", "num_classes", "freeze_features")
    overrides.setdefault("dataset", "imagefolder")
    result = finetune(
        args.model,
        num_classes=args.num_classes,
        freeze_features=args.freeze_features,
        resume=args.resume,
        **overrides,
    )
    return 3 if result.stopped else 0


def cmd_plot(args: argparse.Namespace) -> int:
    from .training import plot_run

    for path in plot_run(args.run_dir, args.out):
        print(path)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from ._io import sha256_file
    from .export import MissingExtraError, require_nir, to_nir, write_nir
    from .factory import load
    from .registry import model_info

    def fail(message: str) -> int:
        print(f"plif-zoo export: error: {message}", file=sys.stderr)
        return 1

    out = Path(args.output)
    if not out.parent.is_dir() or not os.access(out.parent, os.W_OK) or out.is_dir():
        return fail(
            f"cannot write {out}: {out.parent} is not a writable folder"
            if not out.is_dir()
            else f"cannot write {out}: it is a folder; give a file name"
        )
    try:
        require_nir()
    except MissingExtraError as err:
        return fail(str(err))
    folder = Path(args.model.removeprefix("local-dir:"))
    if folder.is_dir() and (folder / "model.safetensors").is_file():
        model = load(f"local-dir:{folder}", backend="torch")
        card = json.loads((folder / "config.json").read_text()).get("card", {})
        model_id, sha256 = (
            card.get("model_id") or folder.name,
            sha256_file(folder / "model.safetensors"),
        )
    else:
        model = load(args.model, backend="torch")
        weights = None if args.model.startswith("hf-hub:") else model_info(args.model).weights
        model_id, sha256 = args.model, weights.sha256 if weights else None
    graph = to_nir(model, dt=args.dt, T=args.T, model_id=model_id, weights_sha256=sha256)
    try:
        write_nir(graph, out)
    except OSError as err:
        return fail(f"cannot write {out}: {err.strerror or err}")
    T = graph.metadata["T"]
    print(
        f"wrote {out}: {model_id}, {len(graph.nodes)} NIR nodes; run it {T} steps per sample "
        f"with dt={args.dt} in the consumer (see the README's NIR section)"
    )
    return 0


def _zoo_commands(sub) -> None:
    """list, info, download, push, demo: the registry and the Hub."""
    p = sub.add_parser("list", help="registry ids with input, T, parameters, accuracy, weights")
    p.add_argument(
        "pattern", nargs="?", default="*", metavar="PATTERN", help="shell wildcard, e.g. 'cifar10*'"
    )
    p.add_argument("--pretrained", action="store_true", help="only models with weights")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser(
        "info", help="everything known about one model (architecture, accuracy, weights)"
    )
    p.add_argument("model", metavar="MODEL", help="registry id, e.g. fashion-mnist-plif")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser(
        "download", help="fetch and verify a model's weights into the Hugging Face cache"
    )
    p.add_argument("model", metavar="MODEL", help="registry id or hf-hub:ORG/NAME[@REV]")
    p.add_argument(
        "--revision", help="Hub branch, tag or commit (default: the registry's pinned one)"
    )
    p.add_argument("--cache-dir", help="Hugging Face cache folder (default: $HF_HOME/hub)")
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("push", help="upload a model folder to the Hub; print its registry line")
    p.add_argument("folder", metavar="MODEL_DIR", help="folder written by save_pretrained / train")
    p.add_argument("--repo", help="Hub repo ORG/NAME (default plif-zoo/MODEL_ID)")
    p.add_argument("--revision", help="branch to push to (created if missing; default main)")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.set_defaults(func=cmd_push)

    p = sub.add_parser(
        "demo", help="classify the sample images shipped in the package; write a PNG"
    )
    p.add_argument("--model", help="registry id (default: the best model with weights)")
    p.add_argument(
        "--out", default="plif-zoo-demo.png", help="PNG path (default plif-zoo-demo.png)"
    )
    p.add_argument("--device", type=_device, help="cpu (default), cuda ...")
    p.add_argument("--T", type=_positive_int, help="time steps (default: the model's)")
    p.add_argument(
        "--backend", default="auto", choices=BACKENDS, help="neuron backend (default auto)"
    )
    p.set_defaults(func=cmd_demo)


def _training_commands(sub) -> None:
    """train, eval, finetune, plot."""
    recipe = _recipe_parser()
    p = sub.add_parser(
        "train",
        parents=[recipe],
        help="train a model with the paper's recipe (DDP: torchrun --no-python plif-zoo train ...)",
    )
    p.add_argument(
        "model",
        metavar="MODEL_OR_CONFIG",
        type=_model_or_config,
        help="registry id (configs/ID.yaml applies) or a YAML config",
    )
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "eval", help="top-1, loss, firing rates, spikes and SynOps per sample, images/s"
    )
    p.add_argument(
        "model", type=_model, help="registry id, model folder, local-dir:PATH or hf-hub:ORG/NAME"
    )
    p.add_argument(
        "--pretrained",
        type=_truth,
        default=True,
        metavar="true|false",
        help="load the published weights (default true)",
    )
    p.add_argument("--data-dir", help="folder of the dataset's original files")
    p.add_argument(
        "--dataset", type=_dataset, help="dataset name (default: the model's) or 'imagefolder'"
    )
    p.add_argument(
        "--split", choices=("test", "val"), default="test", help="val = the accuracy-B hold-out"
    )
    p.add_argument(
        "--max-eval-samples",
        type=_positive_int,
        help="evaluate on N evenly spaced samples of the split",
    )
    p.add_argument("--batch-size", type=_positive_int, default=64)
    p.add_argument("--T", type=_positive_int, help="time steps (default: the model's)")
    p.add_argument("--device", type=_device, default="auto")
    p.add_argument("--backend", choices=BACKENDS, default="auto")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=False)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser(
        "finetune",
        parents=[recipe],
        help="fine-tune pretrained weights on new data with a new output layer",
    )
    p.add_argument(
        "model",
        type=_model,
        help="registry id with weights, model folder (local-dir:PATH) or hf-hub:ORG/NAME",
    )
    p.add_argument(
        "--num-classes", type=_positive_int, required=True, help="classes of the new data"
    )
    p.add_argument(
        "--freeze-features", action="store_true", default=False, help="train only the FC part"
    )
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser(
        "plot", help="accuracy curves and tau per layer (paper Fig. 7) of a training run, as PNG"
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="the --out folder of a train run")
    p.add_argument("--out", help="folder for the PNGs (default RUN_DIR)")
    p.set_defaults(func=cmd_plot)


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="plif-zoo", description="PLIF spiking neural networks: model zoo, evaluation, training"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _zoo_commands(sub)
    _training_commands(sub)
    p = sub.add_parser(
        "export", help="write a model with its weights as a NIR graph (pip install plif-zoo[nir])"
    )
    p.add_argument(
        "model",
        metavar="MODEL_OR_FOLDER",
        type=_model,
        help="registry id with weights, model folder or hf-hub:ORG/NAME",
    )
    p.add_argument("--format", choices=("nir",), default="nir", help="file format (nir)")
    p.add_argument(
        "-o", "--output", required=True, metavar="FILE", help="output file, e.g. model.nir"
    )
    p.add_argument(
        "--dt",
        type=_positive_float,
        default=1e-3,
        help="time step in seconds recorded for the consumer (default 1e-3)",
    )
    p.add_argument(
        "--T",
        type=_positive_int,
        help="time steps per sample recorded in the graph (default: the model's)",
    )
    p.set_defaults(func=cmd_export)
    return parser


def _quiet_broken_pipe() -> int:
    """stdout's reader went away (``plif-zoo list | head -2``): stop without a traceback. Python's
    recipe: point stdout at devnull so the interpreter's final flush does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 1


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    from .errors import ChecksumError, HubDownloadError, NoPretrainedWeightsError, UnknownModelError

    try:
        code = args.func(args) or 0
        sys.stdout.flush()  # a closed pipe shows here, inside the try, not at exit
        return code
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except (
        UnknownModelError,
        NoPretrainedWeightsError,
        HubDownloadError,
        ChecksumError,
        OSError,
        ValueError,
    ) as err:
        # the zoo's errors say what to do; PLIF_ZOO_DEBUG=1 shows the traceback
        if os.environ.get("PLIF_ZOO_DEBUG"):
            raise
        print(f"plif-zoo {args.command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
