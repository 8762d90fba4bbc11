"""CPU speed of plif-zoo against SpikingJelly 2.0.0, in one run on one machine.

    python benchmarks/cpu.py [--quick] [--reps 5] [--threads N] [--sections neuron train infer]

1. neuron: PLIF forward+backward (ATan, detach_reset) on [T, N] at T in {4, 8, 16} and 2^18 to
   2^22 neurons per step: plif-zoo's compiled ``cpu`` backend, plif-zoo's ``torch`` reference
   and SpikingJelly's ``ParametricLIFNode(step_mode='m', surrogate_function=ATan(),
   detach_reset=True)``; and spike max-pooling 2x2 (ours against ``F.max_pool2d``, which
   SpikingJelly's ``layer.MaxPool2d`` runs).
2. train: one Adam training step (MSE on the voted firing rate) at T=8, batch 32 of the zoo's
   ``fashion-mnist-plif`` (backend cpu and torch) against SpikingJelly's
   ``parametric_lif_net.FashionMNISTNet`` with that ParametricLIFNode, in multi-step mode;
   also ours with the model in channels-last memory format (a layout experiment).
3. infer: inference images/s of each zoo network (eval mode, ``torch.inference_mode``),
   backend cpu and torch, at a small batch.

Implementations are interleaved within each repetition and every figure is the median over
repetitions, after one warm-up call. ``--clock wall`` (default) times wall clock;
``--clock cpu`` times the CPU seconds of this process, which on a machine shared with other
jobs is far steadier (use it with ``--threads 1``, where CPU time is the work done).
``--quick`` keeps T=8, 2^18 and 2^20 neurons, 3 repetitions and batch 1 for inference.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from spikingjelly.activation_based import functional, neuron, surrogate
from spikingjelly.activation_based.model import parametric_lif_net

import plif_zoo
from plif_zoo import PLIFNode, backends, pooling
from plif_zoo._io import cpu_name

CLOCK = time.perf_counter  # or time.process_time (--clock cpu)


def interleaved(fns: dict, reps: int) -> dict[str, float]:
    """Median seconds of each fn, calling them in turn within every repetition."""
    for fn in fns.values():
        fn()  # warm-up: builds, allocator, first-touch
    times = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            start = CLOCK()
            fn()
            times[name].append(CLOCK() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def sj_plif() -> neuron.ParametricLIFNode:
    return neuron.ParametricLIFNode(
        step_mode="m", surrogate_function=surrogate.ATan(), detach_reset=True
    )


def neuron_section(steps_list, log2_list, reps):
    print("\n## 1. PLIF forward+backward, x: [T, N] float32 (ms, median)")
    print(
        f"{'T':>3} {'N':>6} {'ours cpu':>9} {'ours torch':>10} {'SJ 2.0.0':>9} "
        f"{'SJ/cpu':>7} {'torch/cpu':>9}"
    )
    rows = []
    for steps in steps_list:
        for log2 in log2_list:
            x = torch.randn(steps, 2**log2) * 1.5
            grad = torch.randn_like(x)
            nodes = {
                "cpu": PLIFNode(backend="cpu"),
                "torch": PLIFNode(backend="torch"),
                "sj": sj_plif(),
            }

            def step(node, x=x, grad=grad):
                def run():
                    functional.reset_net(node)
                    node(x.detach().requires_grad_(True)).backward(grad)

                return run

            t = interleaved({k: step(n) for k, n in nodes.items()}, reps)
            rows.append((steps, log2, t))
            print(
                f"{steps:>3} {'2^' + str(log2):>6} {t['cpu'] * 1e3:9.1f} {t['torch'] * 1e3:10.1f} "
                f"{t['sj'] * 1e3:9.1f} {t['sj'] / t['cpu']:7.2f} {t['torch'] / t['cpu']:9.2f}"
            )
            del x, grad, nodes
    return rows


def pool_section(reps, shape=(8, 32, 128, 28, 28)):
    print(
        f"\n## 1b. Spike max-pool 2x2 forward+backward on {list(shape)} float32 spikes (ms, median)"
    )
    x = (torch.rand(shape) < 0.2).float()
    grad = torch.randn(*shape[:3], shape[3] // 2, shape[4] // 2)

    def step(fn):
        def run():
            fn(x.detach().requires_grad_(True)).backward(grad)

        return run

    def sj_pool(xi):  # what SpikingJelly's layer.MaxPool2d runs: max_pool2d with int64 indices
        return F.max_pool2d(xi.flatten(0, 1), 2, 2).unflatten(0, shape[:2])

    fns = {
        "ours cpu": step(lambda xi: pooling.max_pool_multi_step(xi, (2, 2), (2, 2), "cpu")),
        "ours torch": step(lambda xi: pooling.max_pool_multi_step(xi, (2, 2), (2, 2), "torch")),
        "max_pool2d (SJ)": step(sj_pool),
    }
    t = interleaved(fns, reps)
    for name, sec in t.items():
        print(
            f"{name:>20}: {sec * 1e3:8.1f} ms   "
            f"(max_pool2d / this = {t['max_pool2d (SJ)'] / sec:.2f}x)"
        )
    return t


def train_step_fn(model, forward, batch: int, num_classes: int = 10):
    images = torch.rand(batch, 1, 28, 28)
    labels = torch.randint(0, num_classes, (batch,))
    target = F.one_hot(labels, num_classes).float()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()

    def run():
        opt.zero_grad(set_to_none=True)
        loss = F.mse_loss(forward(images), target)
        loss.backward()
        opt.step()

    return run


def sj_fashion_mnist(T: int):
    net = parametric_lif_net.FashionMNISTNet(
        channels=128,
        spiking_neuron=neuron.ParametricLIFNode,
        surrogate_function=surrogate.ATan(),
        detach_reset=True,
    )
    functional.set_step_mode(net, "m")

    def forward(images):
        functional.reset_net(net)
        x_seq = images.unsqueeze(0).repeat(T, 1, 1, 1, 1)  # SpikingJelly's usual static input
        return net(x_seq).mean(0)

    return net, forward


def train_section(reps, batch=32, T=8):
    print(f"\n## 2. One training step, Fashion-MNIST network, T={T}, batch {batch} (s, median)")
    ours_cpu = plif_zoo.create_model("fashion-mnist-plif", backend="cpu")
    ours_cl = plif_zoo.create_model("fashion-mnist-plif", backend="cpu")
    ours_cl = ours_cl.to(memory_format=torch.channels_last)  # a layout experiment
    ours_torch = plif_zoo.create_model("fashion-mnist-plif", backend="torch")
    sj_net, sj_forward = sj_fashion_mnist(T)
    fns = {
        "ours cpu": train_step_fn(ours_cpu, ours_cpu, batch),
        "ours cpu channels_last": train_step_fn(ours_cl, ours_cl, batch),
        "ours torch": train_step_fn(ours_torch, ours_torch, batch),
        "SJ FashionMNISTNet": train_step_fn(sj_net, sj_forward, batch),
    }
    t = interleaved(fns, reps)
    for name, sec in t.items():
        print(f"{name:>24}: {sec:.3f} s   (SJ / this = {t['SJ FashionMNISTNet'] / sec:.2f}x)")
    return t


def infer_section(reps, small: bool):
    print("\n## 3. Inference, eval mode, torch.inference_mode (images/s, median)")
    print(f"{'model':>20} {'batch':>5} {'ours cpu':>9} {'ours torch':>10} {'cpu/torch':>9}")
    results = {}
    for name in (
        "mnist-plif",
        "fashion-mnist-plif",
        "cifar10-plif",
        "nmnist-plif",
        "cifar10-dvs-plif",
        "dvs128-gesture-plif",
    ):
        model = plif_zoo.create_model(name).eval()
        cfg = model.config
        big = cfg.input_size[0] >= 128 or cfg.channels >= 256
        batch = 1 if (small or big) else 8
        if cfg.static:
            x = torch.rand(batch, cfg.in_channels, *cfg.input_size)
        else:
            x = torch.rand(batch, cfg.T, cfg.in_channels, *cfg.input_size).mul(3).floor()

        def run(backend, model=model, x=x):
            def go():
                model.set_backend(backend)
                with torch.inference_mode():
                    model(x)

            return go

        t = interleaved({"cpu": run("cpu"), "torch": run("torch")}, max(1, reps if not big else 2))
        results[name] = (batch, t)
        print(
            f"{name:>20} {batch:>5} {batch / t['cpu']:9.1f} {batch / t['torch']:10.1f} "
            f"{t['torch'] / t['cpu']:9.2f}"
        )
    return results


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer sizes and repetitions")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 5, quick 3)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="wall clock or this process's CPU time",
    )
    parser.add_argument(
        "--sections",
        nargs="+",
        default=["neuron", "train", "infer"],
        choices=["neuron", "train", "infer"],
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    reps = args.reps or (3 if args.quick else 5)
    if not backends.get("cpu").available():
        sys.exit(
            "the compiled cpu backend is unavailable: " + backends.get("cpu").why_unavailable()
        )
    print(f"# plif-zoo CPU benchmark, {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC")
    print(
        f"# {cpu_name()}, {torch.get_num_threads()} threads, {args.clock} clock, "
        f"torch {torch.__version__}, "
        f"spikingjelly 2.0.0, python {platform.python_version()}"
    )
    print(f"# command: python benchmarks/cpu.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    print(
        "# load average before the run (other processes share these cores): "
        + ", ".join(f"{v:.1f}" for v in os.getloadavg())
    )
    if "neuron" in args.sections:
        steps = [8] if args.quick else [4, 8, 16]
        log2 = [18, 20] if args.quick else [18, 19, 20, 21, 22]
        neuron_section(steps, log2, reps)
        pool_section(reps)
    if "train" in args.sections:
        train_section(reps)
    if "infer" in args.sections:
        infer_section(reps, small=args.quick)


if __name__ == "__main__":
    main()
