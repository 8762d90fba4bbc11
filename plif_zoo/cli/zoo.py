"""``plif-zoo list | info | download | push | demo``: the registry, the Hub and the demo images."""

from __future__ import annotations

import argparse
import sys

from . import options as opt


def cmd_list(args: argparse.Namespace) -> int:
    from ..registry import list_models, model_info

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

    from ..registry import model_info

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
    from ..factory import load
    from ..registry import list_models, local_folder

    model = load(args.model, revision=args.revision, cache_dir=args.cache_dir)
    params = f"{sum(p.numel() for p in model.parameters()):,} parameters"
    # load() takes a registry id's local weights folder before the Hub (see factory).
    local = local_folder(args.model) if args.model in list_models() else None
    if local is not None and args.revision is None:
        print(f"{args.model}: weights verified (sha256) in {local}; nothing downloaded; {params}")
    else:
        print(f"{args.model}: weights verified (sha256), available offline now; {params}")
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    import shutil
    import tempfile
    from pathlib import Path

    from ..factory import push_to_hub
    from ..model_folder import CARD_NAME, CONFIG_NAME, WEIGHTS_NAME, read_config
    from ..registry import HUB_ORG, list_models, published_entry

    folder = Path(args.folder)
    read_config(folder)  # not a model folder: say so before anything is copied
    with tempfile.TemporaryDirectory() as tmp:
        # One snapshot of the folder: a training run may replace best/ while this uploads, and
        # what is checked, uploaded and printed must be the same save.
        snap = Path(tmp) / folder.name
        snap.mkdir()
        for name in (CONFIG_NAME, WEIGHTS_NAME, CARD_NAME):
            if (folder / name).is_file():
                shutil.copy2(folder / name, snap / name)
        model_id = read_config(snap).get("card", {}).get("model_id") or folder.name
        repo = args.repo or f"{HUB_ORG}/{model_id}"
        info = push_to_hub(snap, repo, revision=args.revision, private=args.private)
        print(f"pushed {folder} to {repo} at commit {info.oid}")
        if model_id in list_models():
            print("register it with this line in PUBLISHED_WEIGHTS (plif_zoo/registry.py):")
            print(published_entry(snap, info.oid, hf_repo=repo))
        else:
            print(f"{model_id!r} is not a registry id: load it as hf-hub:{repo}@{info.oid}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from ..demo import DemoUnavailable, run_demo

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


def add_commands(sub) -> None:
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
        "download",
        help="fetch and verify a model's weights into the Hugging Face cache "
        "(weights shipped in a local folder are verified there)",
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
    p.add_argument(
        "--private", action="store_true", help="make the repo private (also an existing one)"
    )
    p.set_defaults(func=cmd_push)

    p = sub.add_parser(
        "demo", help="classify the sample images shipped in the package; write a PNG"
    )
    p.add_argument("--model", help="registry id (default: the best model with weights)")
    p.add_argument(
        "--out", default="plif-zoo-demo.png", help="PNG path (default plif-zoo-demo.png)"
    )
    p.add_argument("--device", type=opt.device, help="cpu (default), cuda ...")
    p.add_argument("--T", type=opt.positive_int, help="time steps (default: the model's)")
    p.add_argument(
        "--backend", default="auto", choices=opt.BACKENDS, help="neuron backend (default auto)"
    )
    p.set_defaults(func=cmd_demo)
