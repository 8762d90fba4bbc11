"""Forward+backward speed of the PLIF neuron and of spike max-pooling on one GPU.

    python benchmarks/neurons.py [--steps 4 8 16 32] [--neurons-log2 20 22 24]
                                 [--dtypes float32 bfloat16 float16] [--sj014 DIR] [--json FILE]
                                 [--graphs]

Neuron: plif-zoo's cupy and torch backends, SpikingJelly 2.0.0's ParametricLIFNode (its own
automatic fastest path) and, when ``--sj014 DIR`` holds SpikingJelly 0.0.0.0.14 (e.g.
``pip install --no-deps --target DIR spikingjelly==0.0.0.0.14``), its
``ParametricLIFNode(backend="cupy")``, run in a subprocess since both versions share one
package name. Max-pool (2 x 2 on [T, N, 128, 32, 32] spikes): plif-zoo's cupy and torch
paths and ``torch.nn.functional.max_pool2d`` (which keeps int64 indices).

Each figure is the median of CUDA-event timings of forward + backward after warm-up. GB/s
counts the bytes a lean implementation must move (neuron: read X, write S and H, read dL/dS
and H, write dL/dX; H in float32; max-pool: read x, write y and one byte per output, read
dL/dy and the byte, write dL/dx), shown against the measured device-to-device copy bandwidth.
These timings include the host's work between the kernels (at 2^20 neurons it is most of it:
about 0.7-0.9 ms on an H200 machine, 2026-12-04); ``--graphs`` adds a second table of the same
cases captured as CUDA graphs and replayed, the kernels' own time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def time_ms(fn, warmup: int = 3, repeat: int = 10) -> float:
    """Median milliseconds of fn() on the current CUDA stream."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def graph_ms(fn, warmup: int = 3, repeat: int = 10) -> float:
    """Median milliseconds of fn() captured once as a CUDA graph and replayed: the kernels'
    own time, without the host's (Python, autograd, launches) that time_ms includes."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up off the default stream, as capture requires
        for _ in range(warmup):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return time_ms(graph.replay, warmup, repeat)


def copy_bandwidth_gbs() -> float:
    """Device-to-device copy bandwidth (bytes read + written per second), 1 GiB buffers."""
    src = torch.empty(2**28, device="cuda", dtype=torch.float32)
    dst = torch.empty_like(src)
    ms = time_ms(lambda: dst.copy_(src), warmup=3, repeat=20)
    return 2 * src.numel() * 4 / ms / 1e6


def neuron_bytes(steps: int, neurons: int, dtype: torch.dtype) -> int:
    b = torch.empty((), dtype=dtype).element_size()
    return steps * neurons * (4 * b + 2 * 4)


def pool_bytes(outputs: int, dtype: torch.dtype) -> int:
    b = torch.empty((), dtype=dtype).element_size()
    return outputs * (10 * b + 2)


def _node_step(node, x, grad_s, reset):
    def run():
        reset(node)
        x.grad = None
        node(x).backward(grad_s)

    return run


def _inputs(steps, neurons, dtype):
    gen = torch.Generator(device="cuda").manual_seed(0)
    x = (torch.randn(steps, neurons, device="cuda", generator=gen) * 1.5 + 0.8).to(dtype)
    grad_s = torch.randn(steps, neurons, device="cuda", generator=gen).to(dtype)
    return x.requires_grad_(True), grad_s


def _record(rows: list[dict], row: dict) -> None:
    """Keep a measurement and print it at once, so a run cut short still shows what it got."""
    rows.append(row)
    got = f"{row['ms']:.3f} ms" if "ms" in row else f"failed: {row['error']}"
    print(
        f"  {row['kind']} {row['dtype']} T={row['steps']} 2^{row['log2']} {row['impl']}: {got}",
        file=sys.stderr,
        flush=True,
    )


def bench_neurons_current(steps_list, sizes, dtypes, timer=time_ms) -> list[dict]:
    """plif-zoo (cupy, torch) and the installed SpikingJelly 2.x, each timed by ``timer``."""
    from spikingjelly.activation_based import functional, neuron, surrogate

    from plif_zoo import PLIFNode

    impls = {
        "plif-zoo cupy": lambda: PLIFNode(backend="cupy"),
        "plif-zoo torch": lambda: PLIFNode(backend="torch"),
        "SJ 2.0.0": lambda: neuron.ParametricLIFNode(
            init_tau=2.0,
            surrogate_function=surrogate.ATan(alpha=2.0),
            detach_reset=True,
            step_mode="m",
        ),
    }
    rows = []
    for dtype_name in dtypes:
        for steps in steps_list:
            for log2 in sizes:
                x, grad_s = _inputs(steps, 2**log2, DTYPES[dtype_name])
                for name, make in impls.items():
                    try:
                        node = make().cuda()
                        result = {"ms": timer(_node_step(node, x, grad_s, functional.reset_net))}
                    except Exception as err:  # report and go on: one failing peer must not hide
                        result = {"error": f"{type(err).__name__}: {err}"[:200]}  # the rest
                    row = dict(kind="neuron", impl=name, dtype=dtype_name, steps=steps, log2=log2)
                    _record(rows, {**row, **result})
                del x, grad_s
                torch.cuda.empty_cache()
    return rows


def bench_neurons_sj014(steps_list, sizes, dtypes) -> list[dict]:
    """SpikingJelly 0.0.0.0.14's CuPy ParametricLIFNode (run inside the --sj014 subprocess)."""
    import numpy as np

    if "int" not in vars(np):  # its auto_cuda compares dtypes with np.int, gone in numpy 1.24;
        np.int = int  # every one of its rows failed on that (H200, 2026-12-04)
    import spikingjelly
    from spikingjelly.activation_based import functional, neuron, surrogate

    rows = []
    for dtype_name in dtypes:
        for steps in steps_list:
            for log2 in sizes:
                row = dict(
                    kind="neuron",
                    impl="SJ 0.0.0.0.14 cupy",
                    dtype=dtype_name,
                    steps=steps,
                    log2=log2,
                )
                if dtype_name == "bfloat16":
                    _record(
                        rows, {**row, "error": "not supported by SJ 0.0.0.0.14 (fp32/fp16 only)"}
                    )
                    continue
                x, grad_s = _inputs(steps, 2**log2, DTYPES[dtype_name])
                try:
                    node = neuron.ParametricLIFNode(
                        init_tau=2.0,
                        surrogate_function=surrogate.ATan(alpha=2.0),
                        detach_reset=True,
                        step_mode="m",
                        backend="cupy",
                    ).cuda()
                    _record(
                        rows,
                        {
                            **row,
                            "ms": time_ms(_node_step(node, x, grad_s, functional.reset_net)),
                            "version": getattr(spikingjelly, "__version__", "0.0.0.0.14"),
                        },
                    )
                except Exception as err:
                    _record(rows, {**row, "error": f"{type(err).__name__}: {err}"[:200]})
                del x, grad_s
                torch.cuda.empty_cache()
    return rows


def bench_pool(steps_list, sizes, dtypes, timer=time_ms) -> list[dict]:
    import torch.nn.functional as F

    from plif_zoo import SpikeMaxPool2d

    impls = {
        "plif-zoo cupy": SpikeMaxPool2d(2, backend="cupy"),
        "plif-zoo torch": SpikeMaxPool2d(2, backend="torch"),
        "F.max_pool2d": lambda x: F.max_pool2d(x.flatten(0, 1), 2, 2),
    }
    rows = []
    for dtype_name in dtypes:
        for steps in steps_list:
            for log2 in sizes:
                n = max(1, 2 ** (log2 - 17))  # 128 x 32 x 32 = 2^17 neurons per sample
                gen = torch.Generator(device="cuda").manual_seed(0)
                x = torch.rand(steps, n, 128, 32, 32, device="cuda", generator=gen) < 0.2
                x = x.to(DTYPES[dtype_name]).requires_grad_(True)
                grad_y = torch.randn(steps, n, 128, 16, 16, device="cuda", generator=gen).to(
                    x.dtype
                )
                for name, pool in impls.items():

                    def run(pool=pool, name=name, x=x, grad_y=grad_y):
                        x.grad = None
                        y = pool(x)
                        y.backward(grad_y.flatten(0, 1) if name == "F.max_pool2d" else grad_y)

                    try:
                        _record(
                            rows,
                            dict(
                                kind="max_pool",
                                impl=name,
                                dtype=dtype_name,
                                steps=steps,
                                log2=log2,
                                outputs=grad_y.numel(),
                                ms=timer(run),
                            ),
                        )
                    except Exception as err:
                        _record(
                            rows,
                            dict(
                                kind="max_pool",
                                impl=name,
                                dtype=dtype_name,
                                steps=steps,
                                log2=log2,
                                error=f"{type(err).__name__}: {err}"[:200],
                            ),
                        )
                del x, grad_y
                torch.cuda.empty_cache()
    return rows


def report(rows: list[dict], bandwidth: float, title: str = "forward + backward") -> None:
    print(f"device: {torch.cuda.get_device_name()}  measured copy bandwidth: {bandwidth:.0f} GB/s")
    for kind in ("neuron", "max_pool"):
        keyed = {}
        for r in rows:
            if r["kind"] == kind:
                keyed.setdefault((r["dtype"], r["steps"], r["log2"]), []).append(r)
        if not keyed:
            continue
        print(f"\n{kind}: {title}")
        print(
            f"{'dtype':<9} {'T':>3} {'neurons':>8} {'impl':<20} {'ms':>9} {'GB/s':>7} "
            f"{'of copy':>8} {'x ours':>7}"
        )
        for (dtype_name, steps, log2), group in keyed.items():
            ours = next((r.get("ms") for r in group if r["impl"] == "plif-zoo cupy"), None)
            for r in group:
                if "error" in r:
                    print(
                        f"{dtype_name:<9} {steps:>3} {'2^' + str(log2):>8} {r['impl']:<20} "
                        f"failed: {r['error']}"
                    )
                    continue
                dtype = DTYPES[dtype_name]
                lean = (
                    neuron_bytes(steps, 2**log2, dtype)
                    if kind == "neuron"
                    else pool_bytes(r["outputs"], dtype)
                )
                gbs = lean / r["ms"] / 1e6
                r["lean_gbs"] = gbs
                ratio = f"{r['ms'] / ours:7.2f}" if ours else "      -"
                print(
                    f"{dtype_name:<9} {steps:>3} {'2^' + str(log2):>8} {r['impl']:<20} "
                    f"{r['ms']:9.3f} "
                    f"{gbs:7.0f} {100 * gbs / bandwidth:7.1f}% {ratio}"
                )
    print("\n'x ours' = that implementation's time / plif-zoo cupy's time (> 1: ours is faster)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[4, 8, 16, 32])
    parser.add_argument("--neurons-log2", type=int, nargs="+", default=[20, 22, 24])
    parser.add_argument(
        "--dtypes", nargs="+", default=["float32", "bfloat16", "float16"], choices=list(DTYPES)
    )
    parser.add_argument(
        "--sj014", metavar="DIR", help="folder holding SpikingJelly 0.0.0.0.14 (pip --target)"
    )
    parser.add_argument("--skip-pool", action="store_true", help="neurons only")
    parser.add_argument(
        "--graphs",
        action="store_true",
        help="then time each case again as one CUDA graph replay: the kernels without the host",
    )
    parser.add_argument("--json", metavar="FILE", help="also write every measurement as JSON")
    parser.add_argument("--sj014-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print(
            "benchmarks/neurons.py measures GPU kernels and needs a CUDA GPU; "
            "torch sees none here. "
            "Run it on a machine with an NVIDIA GPU (see benchmarks/gpu_check.sh).",
            file=sys.stderr,
        )
        return 2
    if args.sj014_worker:
        print(json.dumps(bench_neurons_sj014(args.steps, args.neurons_log2, args.dtypes)))
        return 0
    bandwidth = copy_bandwidth_gbs()
    rows = bench_neurons_current(args.steps, args.neurons_log2, args.dtypes)
    if args.sj014:
        env = dict(
            os.environ,
            PYTHONPATH=os.pathsep.join(
                [os.path.abspath(args.sj014), os.environ.get("PYTHONPATH", "")]
            ),
        )
        cmd = [
            sys.executable,
            os.path.abspath(__file__),
            "--sj014-worker",
            "--steps",
            *map(str, args.steps),
            "--neurons-log2",
            *map(str, args.neurons_log2),
            "--dtypes",
            *args.dtypes,
        ]
        done = subprocess.run(
            cmd,
            env=env,
            capture_output=True,
            text=True,
            cwd=os.path.dirname(os.path.abspath(args.sj014)),
        )
        sys.stderr.write(done.stderr[-4000:])
        if done.returncode == 0 and done.stdout.strip():
            rows += json.loads(done.stdout.strip().splitlines()[-1])
        else:
            print(
                f"SpikingJelly 0.0.0.0.14 run failed with exit code {done.returncode}",
                file=sys.stderr,
            )
    if not args.skip_pool:
        rows += bench_pool(args.steps, args.neurons_log2, args.dtypes)
    report(rows, bandwidth)
    result = {"device": torch.cuda.get_device_name(), "copy_gbs": bandwidth, "rows": rows}
    _write_json(args.json, result)
    if args.graphs:  # last: a capture that fails can leave the CUDA context unusable
        print("\n== the same, each captured once as a CUDA graph and replayed ==", file=sys.stderr)
        graph_rows = bench_neurons_current(args.steps, args.neurons_log2, args.dtypes, graph_ms)
        if not args.skip_pool:
            graph_rows += bench_pool(args.steps, args.neurons_log2, args.dtypes, graph_ms)
        print()
        report(graph_rows, bandwidth, "forward + backward, one CUDA graph replay (kernels alone)")
        _write_json(args.json, {**result, "graph_rows": graph_rows})
    problem = cupy_failures(rows)
    if problem:
        print(f"benchmarks/neurons.py: FAILED: {problem}", file=sys.stderr)
        return 1
    return 0


def _write_json(path: str | None, result: dict) -> None:
    if path:
        from plif_zoo._io import atomic_write  # not at the top: the --sj014 worker has an old SJ

        atomic_write(path, json.dumps(result, indent=1))


def cupy_failures(rows: list[dict]) -> str:
    """'' when plif-zoo's cupy rows all ran; else what failed (a run where no cupy kernel ran,
    or one failed, must not pass as a measurement of the kernels)."""
    ours = [r for r in rows if r["impl"] == "plif-zoo cupy"]
    failed = [r for r in ours if "error" in r]
    if not ours:
        return "no plif-zoo cupy row was measured"
    if len(failed) == len(ours):
        return f"every plif-zoo cupy row failed ({len(ours)}), e.g. {failed[0]['error']}"
    if failed:
        return f"{len(failed)} of {len(ours)} plif-zoo cupy rows failed, e.g. {failed[0]['error']}"
    return ""


if __name__ == "__main__":
    sys.exit(main())
