"""Command line: ``masked-denoise run INPUT OUTPUT`` and ``masked-denoise methods``.

Argument parsing imports nothing heavy; torch, zarr and dask load only to run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

__all__ = ["main"]


def _parse_option(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"option {text!r} is not KEY=VALUE")
    key, value = text.split("=", 1)
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line, with where to read more (exit code 2)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="masked-denoise",
        description="Denoise microscopy and CT images and volumes with masked-image-modelling "
        "methods.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="denoise INPUT into the zarr store OUTPUT")
    r.add_argument("input", help="zarr / OME-Zarr store (or an array inside one), TIFF or PNG")
    r.add_argument(
        "output", help="the OME-Zarr store to write (denoised image, pyramid, noise map)"
    )
    r.add_argument(
        "--method",
        default="auto",
        help="see 'masked-denoise methods'; default auto: the best of its candidates "
        "by their estimated error (Stein's risk under the noise model; -o score=held-out or sure)",
    )
    r.add_argument("--preset", default=None, help="default: the method's first")
    r.add_argument("--axes", default=None, help="e.g. ZYX, TCZYX, YXC; guessed for 2-D/3-D")
    r.add_argument(
        "--mode",
        choices=("per-tile", "once"),
        default=None,
        help="adapt per tile, or once on a sample then process every tile "
        "(default: per-tile for one 2-D image, once for volumes)",
    )
    r.add_argument("--device", default=None, help="auto (default), cpu, cuda or mps")
    r.add_argument(
        "--tile",
        type=int,
        default=None,
        help="tile size in Y and X (default: 1024 for a fixed network in once mode, "
        "else the method's, 256; 512 for meta-tta and classical methods; auto: that of "
        "the method it chooses)",
    )
    r.add_argument("--seed", type=int, default=0)
    r.add_argument(
        "--option",
        "-o",
        action="append",
        type=_parse_option,
        default=[],
        metavar="KEY=VALUE",
        help="method option overriding the preset, e.g. -o iterations=50",
    )
    r.add_argument(
        "--precision",
        choices=("float32", "mixed"),
        default="float32",
        help="mixed: the fixed network of once mode under autocast (float16 on CUDA "
        "GPUs; faster there, results within about 1e-3)",
    )
    r.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the fixed network of once mode (tens of seconds up front; long runs)",
    )
    where = r.add_mutually_exclusive_group()
    where.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        default=None,
        help="run the tiles on a dask.distributed cluster (e.g. tcp://host:8786); "
        "its workers must reach INPUT and OUTPUT",
    )
    where.add_argument(
        "--workers",
        type=int,
        metavar="N",
        default=None,
        help="run the tiles on a local dask cluster of N worker processes",
    )
    r.add_argument("--resume", action="store_true", help="finish an interrupted run")
    r.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT store")
    r.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    sub.add_parser("methods", help="list methods and presets")
    t = sub.add_parser("train", help="train the networks whose weights ship with the package")
    from .training.arguments import add_arguments as add_train_arguments

    add_train_arguments(t)  # the methods, their flags and defaults: the trainer registry's
    return p


class _Bar:
    """A one-line progress bar on stderr."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and sys.stderr is not None
        self.tty = self.enabled and sys.stderr.isatty()
        self.stage = None
        self._t = 0.0
        self._stage_of_t0, self._t0, self._done0 = None, 0.0, 0

    def __call__(self, p) -> None:
        if not self.enabled or p.stage == "noise":  # seconds at most: no line of its own
            return
        now = time.perf_counter()
        last = p.done == p.total
        if p.stage == self.stage and not last and now - self._t < (0.2 if self.tty else 10.0):
            return
        self._t = now
        if p.stage != self.stage and self.stage is not None and self.tty:
            sys.stderr.write("\n")
        self.stage = p.stage
        width = 30
        fill = int(width * p.done / max(p.total, 1))
        if p.stage != self._stage_of_t0:
            self._stage_of_t0, self._t0, self._done0 = p.stage, p.elapsed, p.done
        from .report import time_left

        label = p.label or ("adapting" if p.stage == "adapt" else "tiles")
        left = time_left(p.elapsed - self._t0, p.done - self._done0, p.total - self._done0)
        start, end = ("\r", "") if self.tty else ("", "\n")
        sys.stderr.write(
            f"{start}[{'#' * fill}{'.' * (width - fill)}] {label}, {p.elapsed:.0f} s"
            f"{f', {left} left' if left else ''}\033[K{end}"
            if self.tty
            else f"{start}[{'#' * fill}{'.' * (width - fill)}] {label}, {p.elapsed:.0f} s"
            f"{f', {left} left' if left else ''}{end}"
        )
        sys.stderr.flush()

    def close(self) -> None:
        if self.tty and self.stage is not None:
            sys.stderr.write("\n")


def _precheck(args) -> None:
    """The paths and numbers, checked before torch is imported (a typo is reported at
    once, not after seconds of imports)."""
    from pathlib import Path

    from .core.axes import DenoiseError

    if not Path(args.input).expanduser().exists():
        raise DenoiseError(f"input not found: {Path(args.input).expanduser()}")
    out = Path(args.output).expanduser()
    if not out.resolve().parent.exists():
        raise DenoiseError(f"the folder of the output {out.resolve().parent} does not exist")
    if args.resume and not out.exists():
        raise DenoiseError(f"cannot resume: {out.resolve()} does not exist")
    if out.is_file():
        raise DenoiseError(
            f"output {out.resolve()} is a file, not a zarr store: choose another path"
            + (
                " (--overwrite replaces only a store masked-denoise wrote)"
                if args.overwrite
                else ""
            )
        )
    if args.seed < 0 or args.seed >= 2**32:
        raise DenoiseError(f"seed must be from 0 to 2**32 - 1, got {args.seed}")
    if args.workers is not None and args.workers < 1:
        raise DenoiseError(f"workers must be 1 or more, not {args.workers}")


def _run(args) -> int:
    _precheck(args)
    from .engine import RunSettings, denoise_iter, run_to_completion
    from .engine.io import read_input
    from .report import run_summary

    inp = read_input(args.input)
    settings = RunSettings(
        method=args.method,
        preset=args.preset,
        axes=args.axes or inp.axes,
        mode=args.mode,
        device=args.device,
        seed=args.seed,
        tile=args.tile,
        resume=args.resume,
        overwrite=args.overwrite,
        scale=inp.scale,
        units=inp.units,
        translation=inp.translation,
        input_path=inp.path,
        options=dict(args.option),
        precision=args.precision,
        compile=args.compile,
    )
    guessed_note = "" if args.axes or inp.axes else " (guessed; pass --axes to set)"
    scheduler = args.scheduler if args.workers is None else args.workers
    bar = _Bar(not args.quiet)
    t0 = time.perf_counter()
    got, previous = _stop_on_sigterm()
    try:
        gen = denoise_iter(inp.data, args.output, settings, scheduler=scheduler)
        res = run_to_completion(gen, bar)
    except KeyboardInterrupt:
        bar.close()
        print(
            f"masked-denoise: interrupted; {args.output} is incomplete, finish it with --resume",
            file=sys.stderr,
        )
        return 128 + got.get("signal", 2)
    finally:
        _restore_sigterm(previous)
    bar.close()
    for line in run_summary(res, inp.path, time.perf_counter() - t0, guessed_note):
        print(line)
    return 0


def _stop_on_sigterm() -> tuple[dict, object]:
    """SIGTERM stops the run as Ctrl-C does (the store is marked interrupted, the lock
    released); the returned dict gets the signal's number."""
    import signal
    import threading

    got: dict = {}
    previous = None
    if threading.current_thread() is threading.main_thread():

        def stop(signum, frame):
            got["signal"] = signum
            raise KeyboardInterrupt

        previous = signal.signal(signal.SIGTERM, stop)
    return got, previous


def _restore_sigterm(previous) -> None:
    import signal

    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


def _methods() -> int:
    import json
    from pathlib import Path

    from .weights import unavailable

    # the catalogue the registry wrote: listing does not import torch
    cat = json.loads((Path(__file__).parent / "methods" / "catalogue.json").read_text())
    width = max(len(p) for entry in cat.values() for p in entry["presets"])
    for name, entry in cat.items():
        why = unavailable(name)
        print(f"{name}: {entry['summary']}" + (f" (unavailable here: {why})" if why else ""))
        for pname, desc in entry["presets"].items():
            print(f"    {pname:{width}s} {desc}")
    return 0


def _train(args) -> int:
    from .training import get
    from .training.arguments import config_from_args
    from .training.loop import Stopped

    cfg = config_from_args(args)
    try:
        entry = get(args.method).train(cfg)
    except Stopped as stop:
        print(f"masked-denoise: {stop}")
        return 0
    print(f"wrote {args.output} (sha256 {entry['sha256']}) in {entry['train_seconds']:.0f} s")
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from .core.axes import DenoiseError

    try:
        if args.command == "train":
            return _train(args)
        return _run(args) if args.command == "run" else _methods()
    except (DenoiseError, FileNotFoundError, FileExistsError) as exc:
        print(f"masked-denoise: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # before or after the run itself
        print("masked-denoise: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: one line, the traceback on request
        if os.environ.get("MASKED_DENOISE_TRACEBACK"):
            raise
        print(
            f"masked-denoise: unexpected error: {type(exc).__name__}: {_one_line(exc)} "
            "(set MASKED_DENOISE_TRACEBACK=1 for the traceback, and please report it)",
            file=sys.stderr,
        )
        return 1


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
