"""``plif-zoo train | eval | finetune | plot``: thin commands over plif_zoo.training."""

from __future__ import annotations

import argparse

from . import options as opt


def cmd_train(args: argparse.Namespace) -> int:
    from ..training import train

    result = train(args.model, resume=args.resume, **opt.recipe_overrides(args, "model"))
    return 3 if result.stopped else 0


def cmd_eval(args: argparse.Namespace) -> int:
    import json

    from ..training import evaluate

    if args.val_fraction is not None and args.split != "val":
        raise ValueError("--val-fraction applies to --split val only (the test split is fixed)")
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
        val_fraction=args.val_fraction,
    )
    if args.json:
        print(json.dumps(r))
        return 0
    print(
        f"{args.model} on {r['samples']} {r['split']} samples ({r['device']}): "
        f"top-1 {100 * r['top1']:.2f}%, "
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
    from ..training import finetune

    overrides = opt.recipe_overrides(args, "model", "num_classes", "freeze_features")
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
    from ..training import plot_run

    for path in plot_run(args.run_dir, args.out):
        print(path)
    return 0


def add_commands(sub) -> None:
    """train, eval, finetune, plot."""
    p = sub.add_parser(
        "train",
        parents=[opt.recipe_parser()],
        help="train a model with the paper's recipe (DDP: torchrun --no-python plif-zoo train ...)",
    )
    p.add_argument(
        "model",
        metavar="MODEL_OR_CONFIG",
        type=opt.model_or_config,
        help="registry id (configs/ID.yaml applies) or a YAML config",
    )
    p.set_defaults(func=cmd_train)

    _add_eval(sub)

    p = sub.add_parser(
        "finetune",
        parents=[opt.recipe_parser(finetune=True)],
        help="fine-tune pretrained weights on new data with a new output layer",
    )
    p.add_argument(
        "model",
        type=opt.model,
        help="registry id with weights, model folder (local-dir:PATH) or hf-hub:ORG/NAME",
    )
    p.add_argument(
        "--num-classes", type=opt.positive_int, required=True, help="classes of the new data"
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


def _add_eval(sub) -> None:
    """eval MODEL [--pretrained --split --dataset ...]: its own flags, not the recipe's."""
    p = sub.add_parser(
        "eval", help="top-1, loss, firing rates, spikes and SynOps per sample, images/s"
    )
    p.add_argument(
        "model", type=opt.model, help="registry id, model folder, local-dir:PATH or hf-hub:ORG/NAME"
    )
    p.add_argument(
        "--pretrained",
        type=opt.truth,
        default=True,
        metavar="true|false",
        help="load the published weights (default true)",
    )
    p.add_argument("--data-dir", help="folder of the dataset's original files")
    p.add_argument(
        "--dataset", type=opt.dataset, help="dataset name (default: the model's) or 'imagefolder'"
    )
    p.add_argument(
        "--split", choices=("test", "val"), default="test", help="val = the accuracy-B hold-out"
    )
    p.add_argument(
        "--val-fraction",
        type=opt.fraction,
        help="hold-out per class of --split val (default: the model folder's recipe, else 0.15)",
    )
    p.add_argument(
        "--max-eval-samples",
        type=opt.positive_int,
        help="evaluate on N evenly spaced samples of the split",
    )
    p.add_argument("--batch-size", type=opt.positive_int, default=64)
    p.add_argument("--T", type=opt.positive_int, help="time steps (default: the model's)")
    p.add_argument("--device", type=opt.device, default="auto")
    p.add_argument("--backend", choices=opt.BACKENDS, default="auto")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=False)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_eval)
