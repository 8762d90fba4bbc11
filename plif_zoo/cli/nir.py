"""``plif-zoo export``: a model with its weights as a NIR graph."""

from __future__ import annotations

import argparse
import os
import sys

from . import options as opt


def cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..errors import MissingExtraError
    from ..export import require_nir, to_nir, write_nir
    from ..factory import load, local_dir
    from ..model_folder import WEIGHTS_NAME, read_config
    from ..registry import model_info

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
    folder = local_dir(args.model)  # the option turned a folder into local-dir:PATH
    model = load(args.model, backend="torch")  # checks the weights' sha256
    if folder is not None:
        config = read_config(folder)
        model_id = config.get("card", {}).get("model_id") or folder.name
        sha256 = config["files"][WEIGHTS_NAME]["sha256"]
    else:
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


def add_command(sub) -> None:
    """export MODEL -o FILE [--dt --T]."""
    p = sub.add_parser(
        "export", help="write a model with its weights as a NIR graph (pip install plif-zoo[nir])"
    )
    p.add_argument(
        "model",
        metavar="MODEL_OR_FOLDER",
        type=opt.model,
        help="registry id with weights, model folder or hf-hub:ORG/NAME",
    )
    p.add_argument("--format", choices=("nir",), default="nir", help="file format (nir)")
    p.add_argument(
        "-o", "--output", required=True, metavar="FILE", help="output file, e.g. model.nir"
    )
    p.add_argument(
        "--dt",
        type=opt.positive_float,
        default=1e-3,
        help="time step in seconds recorded for the consumer (default 1e-3)",
    )
    p.add_argument(
        "--T",
        type=opt.positive_int,
        help="time steps per sample recorded in the graph (default: the model's)",
    )
    p.set_defaults(func=cmd_export)
