"""torch.compile against eager: plif-zoo's Fashion-MNIST PLIF net and SpikingJelly 2.0.0's.

    python benchmarks/compile.py [--reps 5] [--batch 32] [--T 8] [--threads N]
                                 [--precision fp32 bf16]

Measures, in one interleaved run per precision (the helpers of ``benchmarks/cpu.py``), one
Adam training step (MSE on the voted firing rate; ``bf16``: forward and loss under CPU bfloat16
autocast, as ``plif-zoo train --amp``) of the zoo's ``fashion-mnist-plif`` on backend ``cpu``
and of SpikingJelly's ``parametric_lif_net.FashionMNISTNet`` with ``ParametricLIFNode(ATan,
detach_reset=True)``, eager and ``torch.compile(..., fullgraph=True)``, with PyTorch's default
(foreach) Adam and with ``fused=True`` Adam; ``ours --compile`` is what ``plif-zoo train
--compile`` runs (``training.build.compile_network``, static shapes; fused Adam). Then fp32
inference images/s (eval, no_grad).
Compilation happens in the warm-up call and is reported apart.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpu import interleaved, sj_fashion_mnist  # noqa: E402

import plif_zoo  # noqa: E402
from plif_zoo._io import cpu_name  # noqa: E402
from plif_zoo.training.build import compile_network  # noqa: E402


def _ours(T: int, compiled: bool | str, state: dict | None):
    """compiled: False, True (torch.compile defaults) or "train" (as plif-zoo train --compile)."""
    model = plif_zoo.create_model("fashion-mnist-plif", T=T, backend="cpu")
    if state is not None:
        model.load_state_dict(state)
    if compiled == "train":
        return model, compile_network(model)
    return model, (torch.compile(model, fullgraph=True) if compiled else model)


def _sj(T: int, compiled: bool, state: dict | None):
    model, forward = sj_fashion_mnist(T)
    if state is not None:
        model.load_state_dict(state)
    if not compiled:
        return model, forward
    net = torch.compile(model, fullgraph=True)

    def compiled_forward(images):
        from spikingjelly.activation_based import functional

        functional.reset_net(model)
        return net(images.unsqueeze(0).repeat(T, 1, 1, 1, 1)).mean(0)

    return model, compiled_forward


# name -> (builder, compiled, fused Adam)
VARIANTS = {
    "ours eager": (_ours, False, False),
    "ours eager, fused Adam": (_ours, False, True),
    "ours compiled": (_ours, True, False),
    "ours --compile": (_ours, "train", True),
    "SJ eager": (_sj, False, False),
    "SJ compiled": (_sj, True, False),
}


def _models(T: int) -> dict:
    """Every variant's (model, forward, fused), all with the same initial weights per family."""
    out, first = {}, {}
    for name, (build, compiled, fused) in VARIANTS.items():
        model, forward = build(T, compiled, first.get(build))
        first.setdefault(build, model.state_dict())
        out[name] = (model, forward, fused)
    return out


def train_step(model, forward, fused: bool, batch: int, bf16: bool, num_classes: int = 10):
    images = torch.rand(batch, 1, 28, 28)
    target = F.one_hot(torch.randint(0, num_classes, (batch,)), num_classes).float()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=fused or None)

    def run():
        model.train()
        opt.zero_grad(set_to_none=True)
        amp = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with amp:
            loss = F.mse_loss(forward(images).float(), target)
        loss.backward()
        opt.step()

    return run


def _timed_warmup(fns: dict) -> None:
    for name, fn in fns.items():
        start = time.perf_counter()
        fn()
        print(f"  warm-up (includes compiling) {name}: {time.perf_counter() - start:.1f} s")


def _report(t: dict, unit) -> None:
    for name, sec in t.items():
        print(f"{name:>28}: {unit(sec)}   (ours eager / this = {t['ours eager'] / sec:.2f}x)")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--T", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--precision", nargs="+", choices=("fp32", "bf16"), default=["fp32", "bf16"]
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    # one forward code object, compiled for 2 of our models x (train fp32, train bf16, eval)
    torch._dynamo.config.recompile_limit = 64
    print(
        f"# {datetime.date.today()}, {cpu_name()}, {torch.get_num_threads()} threads, torch "
        f"{torch.__version__}, T={args.T}, batch {args.batch}"
    )
    models = _models(args.T)
    for precision in args.precision:
        train = {
            name: train_step(m, f, fused, args.batch, precision == "bf16")
            for name, (m, f, fused) in models.items()
        }
        print(f"\n## training step, {precision} (s, median)")
        _timed_warmup(train)
        _report(interleaved(train, args.reps), lambda s: f"{s:.3f} s")
    images = torch.rand(args.batch, 1, 28, 28)

    def infer(model, forward):
        def run():
            model.eval()
            with torch.no_grad():
                forward(images)

        return run

    # one model per (family, compiled): the fused-Adam twins would only repeat these
    inference = {n: infer(m, f) for n, (m, f, fused) in models.items() if not fused}
    print("\n## inference, fp32, eval mode, no_grad (images/s, median)")
    _timed_warmup(inference)
    _report(interleaved(inference, args.reps), lambda s: f"{args.batch / s:8.1f} images/s")


if __name__ == "__main__":
    main()
