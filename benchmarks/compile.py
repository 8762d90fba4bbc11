"""torch.compile against eager: plif-zoo's Fashion-MNIST PLIF net and SpikingJelly 2.0.0's.

    python benchmarks/compile.py [--reps 3] [--batch 32] [--T 8] [--threads N]

Measures, in one interleaved run (the same helpers as ``benchmarks/cpu.py``): one Adam training
step (MSE on the voted firing rate) and inference images/s (eval, no_grad) of the zoo's
``fashion-mnist-plif`` on backend ``cpu`` and of SpikingJelly's
``parametric_lif_net.FashionMNISTNet`` with ``ParametricLIFNode(ATan, detach_reset=True)``,
each eager and ``torch.compile(..., fullgraph=True)``. Compilation happens in the warm-up call
and is reported apart.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpu import interleaved, sj_fashion_mnist, train_step_fn  # noqa: E402

import plif_zoo  # noqa: E402
from plif_zoo._io import cpu_name  # noqa: E402


def _models(T: int):
    ours = plif_zoo.create_model("fashion-mnist-plif", T=T, backend="cpu")
    ours_c = plif_zoo.create_model("fashion-mnist-plif", T=T, backend="cpu")
    ours_c.load_state_dict(ours.state_dict())
    sj, sj_forward = sj_fashion_mnist(T)
    sj_c, _ = sj_fashion_mnist(T)
    sj_c.load_state_dict(sj.state_dict())
    sj_c_compiled = torch.compile(sj_c, fullgraph=True)

    def sj_c_forward(images, net=sj_c, compiled=sj_c_compiled):
        from spikingjelly.activation_based import functional

        functional.reset_net(net)
        return compiled(images.unsqueeze(0).repeat(T, 1, 1, 1, 1)).mean(0)

    return {
        "ours eager": (ours, ours),
        "ours compiled": (ours_c, torch.compile(ours_c, fullgraph=True)),
        "SJ eager": (sj, sj_forward),
        "SJ compiled": (sj_c, sj_c_forward),
    }


def _timed_warmup(fns: dict) -> None:
    for name, fn in fns.items():
        start = time.perf_counter()
        fn()
        print(f"  warm-up (includes compiling) {name}: {time.perf_counter() - start:.1f} s")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--T", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"# {datetime.date.today()}, {cpu_name()}, {torch.get_num_threads()} threads, torch "
        f"{torch.__version__}, T={args.T}, batch {args.batch}"
    )
    models = _models(args.T)
    train = {name: train_step_fn(m, f, args.batch) for name, (m, f) in models.items()}
    print("\n## training step (s, median)")
    _timed_warmup(train)
    t = interleaved(train, args.reps)
    for name, sec in t.items():
        print(
            f"{name:>14}: {sec:.3f} s   (ours eager / this = {t['ours eager'] / sec:.2f}x, "
            f"SJ compiled / this = {t['SJ compiled'] / sec:.2f}x)"
        )
    images = torch.rand(args.batch, 1, 28, 28)

    def infer(model, forward):
        def run():
            with torch.no_grad():
                forward(images)

        return run

    for model, _ in models.values():
        model.eval()
    inference = {name: infer(m, f) for name, (m, f) in models.items()}
    print("\n## inference, eval mode, no_grad (images/s, median)")
    _timed_warmup(inference)
    t = interleaved(inference, args.reps)
    for name, sec in t.items():
        print(
            f"{name:>14}: {args.batch / sec:8.1f} images/s   "
            f"(vs ours eager {t['ours eager'] / sec:.2f}x)"
        )


if __name__ == "__main__":
    main()
