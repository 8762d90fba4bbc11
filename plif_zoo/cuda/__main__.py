"""``python -m plif_zoo.cuda --compile-only --arch sm_80 --arch sm_90``.

Compiles every kernel variant with NVRTC (no GPU or driver needed) and prints one line per
variant with its registers and spill bytes. Exits nonzero when a source does not compile
or an entry the launchers expect is missing from the cubin (register figures come from
ptxas's report in NVRTC's log, where the log has one).
"""

from __future__ import annotations

import argparse
import sys
import time

from . import build


def compile_all(archs: list[str], out=None) -> int:
    """Compile every source for every arch; print a line per entry; return the failure count."""
    out = out or sys.stdout
    failures = 0
    for arch in archs:
        for source in build.sources():
            start = time.perf_counter()
            try:
                cubin, log = build.compile_cubin(source, arch)
            except build.CompileError as err:
                print(f"FAIL {arch} {source}\n{err}", file=out)
                failures += 1
                continue
            seconds = time.perf_counter() - start
            usages = build.parse_ptxas_log(log)
            for name in build.entry_names(source):
                if b"\0" + name.encode() + b"\0" not in cubin:  # its ELF string table
                    print(f"FAIL {arch} {source} {name}: entry not in the cubin", file=out)
                    failures += 1
                    continue
                u = usages.get(name)
                if u is None:  # seen with the NVRTC of a GPU machine's image (2026-12-04)
                    print(f"ok   {arch} {source:<12} {name:<28} (no ptxas report)", file=out)
                    continue
                flag = "ok  " if u.spill_stores == 0 and u.spill_loads == 0 else "SPILL"
                print(
                    f"{flag} {arch} {source:<12} {name:<28} {u.registers:3d} registers  "
                    f"spill stores {u.spill_stores} B  spill loads {u.spill_loads} B  "
                    f"stack {u.stack_bytes} B",
                    file=out,
                )
            if not usages:
                head = "\n".join(log.splitlines()[:5]) or "(empty)"
                print(
                    f"     {arch} {source}: NVRTC's log has no ptxas report; it begins:\n{head}",
                    file=out,
                )
            print(f"     {arch} {source}: compiled in {seconds:.1f} s", file=out)
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m plif_zoo.cuda", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--compile-only",
        action="store_true",
        required=True,
        help="compile every kernel variant with NVRTC; needs no GPU",
    )
    parser.add_argument(
        "--arch",
        action="append",
        default=None,
        help="target like sm_80 (repeatable; default sm_80 and sm_90)",
    )
    args = parser.parse_args(argv)
    archs = args.arch or ["sm_80", "sm_90"]
    try:
        for arch in archs:
            build.compile_options(arch)  # validates the arch before any work
        print(f"NVRTC {build.nvrtc_version()}, CUDA headers in {build.cuda_include_dir()}")
        failures = compile_all(archs)
    except (RuntimeError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if failures:
        print(f"{failures} kernel build failure(s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
