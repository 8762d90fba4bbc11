"""The ``plif-zoo`` command line: thin commands over the package modules.

Each command is a ``cmd_<name>(args)`` function registered in ``_build_parser``.
"""

from __future__ import annotations

import argparse
import os
import sys


def _bool(value: str, flag: str) -> bool:
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"{flag} takes true or false, got {value!r}")


def _recipe_args(p: argparse.ArgumentParser) -> None:
    """Training-recipe flags shared by ``train`` and ``finetune``; unset flags keep the config's value."""
    p.add_argument("--data-dir", help="folder of the dataset's original files")
    p.add_argument("--download", action="store_true", default=None,
                   help="MNIST / Fashion-MNIST / CIFAR-10: fetch missing files into --data-dir (torchvision)")
    p.add_argument("--dataset", help="dataset name (default: the model's) or 'imagefolder'")
    p.add_argument("--out", help="run folder (default: runs/MODEL)")
    p.add_argument("--epochs", type=int, help="epochs (recipe: 1024)")
    p.add_argument("--batch-size", type=int, help="batch size per process (recipe: 16)")
    p.add_argument("--lr", type=float, help="Adam learning rate (recipe: 1e-3)")
    p.add_argument("--t-max", type=int, help="CosineAnnealingLR period in epochs (recipe: 64)")
    p.add_argument("--seed", type=int, help="seed (recipe: 2020)")
    p.add_argument("--T", type=int, help="time steps (default: the model's)")
    p.add_argument("--val-fraction", type=float, help="accuracy-B hold-out per class (default 0.15; 0: train on all)")
    p.add_argument("--max-train-samples", type=int, help="train on a seeded random subset of N images")
    p.add_argument("--max-eval-samples", type=int, help="evaluate on N evenly spaced validation and test images")
    p.add_argument("--eval-batch-size", type=int, help="batch size of the per-epoch evaluation (default 64)")
    p.add_argument("--checkpoint-every", type=int, help="also checkpoint every N steps inside an epoch")
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:1 ...")
    p.add_argument("--amp", action="store_true", default=None, help="mixed precision (bf16 on CPU, fp16 on CUDA)")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--num-workers", type=int, help="DataLoader workers (default 0)")
    p.add_argument("--backend", help="neuron backend: auto, torch, cpu, cupy")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")


def _recipe_overrides(args: argparse.Namespace) -> dict:
    keys = ("data_dir", "download", "dataset", "out", "epochs", "batch_size", "lr", "t_max", "seed", "T",
            "val_fraction", "max_train_samples", "max_eval_samples", "eval_batch_size",
            "checkpoint_every", "device", "amp", "threads", "num_workers", "backend")
    return {k: getattr(args, k) for k in keys if getattr(args, k) is not None}


def cmd_list(args: argparse.Namespace) -> int:
    from .registry import list_models, model_info

    ids = list_models(args.pattern, pretrained=args.pretrained)
    if not ids:
        print(f"no model matches {args.pattern!r}" + (" with weights" if args.pretrained else ""),
              file=sys.stderr)
        return 1
    print(f"{'id':<28} {'input':<17} {'T':>3} {'params':>8} {'paper A':>8} {'ours':>7}  weights")
    for model_id in ids:
        info = model_info(model_id)
        paper = f"{info.paper_accuracy_a:.2f}" if info.paper_accuracy_a is not None else "-"
        ours = f"{info.accuracy:.2f}" if info.accuracy is not None else "-"
        shape = "x".join(map(str, info.input_shape))
        print(f"{model_id:<28} {shape:<17} {info.T:>3} {info.num_params / 1e6:>7.2f}M {paper:>8} "
              f"{ours:>7}  {'yes' if info.has_weights else 'no'}")
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
    print(f"{args.model}: weights verified (sha256), available offline now; "
          f"{sum(p.numel() for p in model.parameters()):,} parameters")
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

    result = train(args.model, resume=args.resume, **_recipe_overrides(args))
    return 3 if result.stopped else 0


def cmd_eval(args: argparse.Namespace) -> int:
    import json

    from .training import evaluate

    r = evaluate(
        args.model, args.dataset, data_dir=args.data_dir, split=args.split, pretrained=args.pretrained,
        max_samples=args.max_eval_samples, batch_size=args.batch_size, device=args.device,
        amp=args.amp, T=args.T, backend=args.backend,
    )
    if args.json:
        print(json.dumps(r))
        return 0
    print(f"{args.model} on {r['samples']} {r['split']} samples ({r['device']}): top-1 {100 * r['top1']:.2f}%, "
          f"loss {r['loss']:.4f}, {r['images_per_s']:.1f} images/s")
    print(f"spikes/sample {r['spikes_per_sample']:.0f}, SynOps/sample {r['synops_per_sample']:.4g}, "
          f"MACs/sample of the real-valued encoder input {r['dense_macs_per_sample']:.4g}")
    for name, rate in r["firing_rates"].items():
        print(f"  firing rate {name:<16} {rate:.4f}")
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    from .training import finetune

    overrides = _recipe_overrides(args)
    overrides.setdefault("dataset", "imagefolder")
    result = finetune(args.model, num_classes=args.num_classes, freeze_features=args.freeze_features,
                      resume=args.resume, **overrides)
    return 3 if result.stopped else 0


def cmd_plot(args: argparse.Namespace) -> int:
    from .training import plot_run

    for path in plot_run(args.run_dir, args.out):
        print(path)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from . import load, model_info  # the package face: stable while registry/hub move
    from ._io import sha256_file
    from .export import MissingExtraError, require_nir, to_nir, write_nir

    def fail(message: str) -> int:
        print(f"plif-zoo export: error: {message}", file=sys.stderr)
        return 1

    out = Path(args.output)
    if not out.parent.is_dir() or not os.access(out.parent, os.W_OK) or out.is_dir():
        return fail(f"cannot write {out}: {out.parent} is not a writable folder"
                    if not out.is_dir() else f"cannot write {out}: it is a folder; give a file name")
    try:
        require_nir()
    except MissingExtraError as err:
        return fail(str(err))
    folder = Path(args.model.removeprefix("local-dir:"))
    if folder.is_dir() and (folder / "model.safetensors").is_file():
        model = load(f"local-dir:{folder}", backend="torch")
        card = json.loads((folder / "config.json").read_text()).get("card", {})
        model_id, sha256 = card.get("model_id") or folder.name, sha256_file(folder / "model.safetensors")
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
    print(f"wrote {out}: {model_id}, {len(graph.nodes)} NIR nodes; run it {T} steps per sample "
          f"with dt={args.dt} in the consumer (see the README's NIR section)")
    return 0


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="plif-zoo", description="PLIF spiking neural networks: model zoo, evaluation, training"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    p = sub.add_parser("list", help="registry ids with input, T, parameters, accuracy, weights")
    p.add_argument("pattern", nargs="?", default="*", metavar="PATTERN", help="shell wildcard, e.g. 'cifar10*'")
    p.add_argument("--pretrained", action="store_true", help="only models with weights")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("info", help="everything known about one model (architecture, accuracy, weights)")
    p.add_argument("model", metavar="MODEL", help="registry id, e.g. fashion-mnist-plif")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("download", help="fetch and verify a model's weights into the Hugging Face cache")
    p.add_argument("model", metavar="MODEL", help="registry id or hf-hub:ORG/NAME[@REV]")
    p.add_argument("--revision", help="Hub branch, tag or commit (default: the registry's pinned one)")
    p.add_argument("--cache-dir", help="Hugging Face cache folder (default: $HF_HOME/hub)")
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("push", help="upload a model folder to the Hub; print its registry line")
    p.add_argument("folder", metavar="MODEL_DIR", help="folder written by save_pretrained / train")
    p.add_argument("--repo", help="Hub repo ORG/NAME (default plif-zoo/MODEL_ID)")
    p.add_argument("--revision", help="branch to push to (created if missing; default main)")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.set_defaults(func=cmd_push)

    p = sub.add_parser("demo", help="classify the sample images shipped in the package; write a PNG")
    p.add_argument("--model", help="registry id (default: the best model with weights)")
    p.add_argument("--out", default="plif-zoo-demo.png", help="PNG path (default plif-zoo-demo.png)")
    p.add_argument("--device", help="cpu (default), cuda ...")
    p.add_argument("--T", type=int, help="time steps (default: the model's)")
    p.add_argument("--backend", default="auto", help="neuron backend: auto, torch, cpu, cupy")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("train", help="train a model with the paper's recipe (DDP: torchrun --no-python plif-zoo train ...)")
    p.add_argument("model", metavar="MODEL_OR_CONFIG", help="registry id (configs/ID.yaml applies) or a YAML config")
    _recipe_args(p)
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("eval", help="top-1, loss, firing rates, spikes and SynOps per sample, images/s")
    p.add_argument("model", help="registry id, model folder, local-dir:PATH or hf-hub:ORG/NAME")
    p.add_argument("--pretrained", type=lambda v: _bool(v, "--pretrained"), default=True, metavar="true|false",
                   help="load the published weights (default true)")
    p.add_argument("--data-dir", help="folder of the dataset's original files")
    p.add_argument("--dataset", help="dataset name (default: the model's) or 'imagefolder'")
    p.add_argument("--split", choices=("test", "val"), default="test", help="val = the accuracy-B hold-out")
    p.add_argument("--max-eval-samples", type=int, help="evaluate on N evenly spaced samples of the split")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--T", type=int, help="time steps (default: the model's)")
    p.add_argument("--device", default="auto")
    p.add_argument("--backend", default="auto")
    p.add_argument("--amp", action="store_true")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("finetune", help="fine-tune pretrained weights on new data with a new output layer")
    p.add_argument("model", help="registry id with weights, model folder (local-dir:PATH) or hf-hub:ORG/NAME")
    p.add_argument("--num-classes", type=int, required=True, help="classes of the new data")
    p.add_argument("--freeze-features", action="store_true", help="train only the FC part")
    _recipe_args(p)
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser("plot", help="accuracy curves and tau per layer (paper Fig. 7) of a training run, as PNG")
    p.add_argument("run_dir", metavar="RUN_DIR", help="the --out folder of a train run")
    p.add_argument("--out", help="folder for the PNGs (default RUN_DIR)")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("export", help="write a model with its weights as a NIR graph (pip install plif-zoo[nir])")
    p.add_argument("model", metavar="MODEL_OR_FOLDER", help="registry id with weights, model folder or hf-hub:ORG/NAME")
    p.add_argument("--format", choices=("nir",), default="nir", help="file format (nir)")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="output file, e.g. model.nir")
    p.add_argument("--dt", type=float, default=1e-3, help="time step in seconds recorded for the consumer (default 1e-3)")
    p.add_argument("--T", type=int, help="time steps per sample recorded in the graph (default: the model's)")
    p.set_defaults(func=cmd_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    from .errors import ChecksumError, HubDownloadError, NoPretrainedWeightsError, UnknownModelError

    try:
        return args.func(args) or 0
    except (UnknownModelError, NoPretrainedWeightsError, HubDownloadError, ChecksumError,
            FileNotFoundError, ValueError) as err:
        # the zoo's errors say what to do; PLIF_ZOO_DEBUG=1 shows the traceback
        if os.environ.get("PLIF_ZOO_DEBUG"):
            raise
        print(f"plif-zoo {args.command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
