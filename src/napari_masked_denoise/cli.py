"""Command line: ``masked-denoise run INPUT OUTPUT`` and ``masked-denoise methods``.

Argument parsing imports nothing heavy; torch, zarr and dask load only to run.
"""

from __future__ import annotations

import argparse
import json
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="masked-denoise",
        description="Denoise microscopy and CT images and volumes with masked-image-modelling methods.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="denoise INPUT into the zarr store OUTPUT")
    r.add_argument("input", help="zarr / OME-Zarr store (or an array inside one), TIFF or PNG")
    r.add_argument("output", help="zarr store to write (arrays 'denoised' and 'noise_map')")
    r.add_argument("--method", default="auto",
                   help="see 'masked-denoise methods'; default auto: the best of its candidates "
                        "by their estimated error (held-out pixels, or -o score=sure)")
    r.add_argument("--preset", default=None, help="default: the method's first")
    r.add_argument("--axes", default=None, help="e.g. ZYX, TCZYX, YXC; guessed for 2-D/3-D")
    r.add_argument("--mode", choices=("per-tile", "once"), default=None,
                   help="adapt per tile, or once on a sample then process every tile "
                        "(default: per-tile for one 2-D image, once for volumes)")
    r.add_argument("--device", default=None, help="auto (default), cpu, cuda or mps")
    r.add_argument("--tile", type=int, default=None,
                   help="tile size in Y and X (default: 1024 for a fixed network in once mode, "
                        "else the method's, 256; 512 for meta-tta and classical methods)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--option", "-o", action="append", type=_parse_option, default=[],
                   metavar="KEY=VALUE", help="method option overriding the preset, e.g. -o iterations=50")
    r.add_argument("--precision", choices=("float32", "mixed"), default="float32",
                   help="mixed: the fixed network of once mode under autocast (float16 on CUDA GPUs; "
                        "faster there, results within about 1e-3)")
    r.add_argument("--compile", action="store_true",
                   help="torch.compile the fixed network of once mode (tens of seconds up front; long runs)")
    where = r.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS", default=None,
                       help="run the tiles on a dask.distributed cluster (e.g. tcp://host:8786); its "
                            "workers must reach INPUT and OUTPUT")
    where.add_argument("--workers", type=int, metavar="N", default=None,
                       help="run the tiles on a local dask cluster of N worker processes")
    r.add_argument("--resume", action="store_true", help="finish an interrupted run")
    r.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT store")
    r.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    sub.add_parser("methods", help="list methods and presets")
    t = sub.add_parser("train", help="train the networks whose weights ship with the package")
    t.add_argument("method", choices=tuple(_TRAIN_DEFAULTS))
    t.add_argument("--data", action="append", default=None,
                   help="folder of clean training images (repeatable; default ../shared/data/train/Train400)")
    t.add_argument("--no-skimage", action="store_true", help="do not add scikit-image's bundled images")
    t.add_argument("--mask-ratio", default=None,
                   help="share of pixels (zero-shot) or patches (ttt-mim) masked: a number, or LO,HI to draw "
                        "per crop (e.g. 0.8,0.95; not ttt-mim); default 0.3 (zero-shot), 0.6 (ttt-mim), "
                        "0.8,0.9 (masked-transformer's input mask)")
    t.add_argument("--patch", type=int, default=7, help="ttt-mim: mask patch size (default 7)")
    t.add_argument("--noise-var", type=float, default=0.005,
                   help="ttt-mim: variance of the Gaussian training noise (default 0.005)")
    t.add_argument("--stage", type=int, choices=(1, 2), default=1,
                   help="meta-tta: 1 = meta-auxiliary pre-training (classic noise mix), "
                        "2 = meta-transfer (MAML) on realistic noise, from --init")
    t.add_argument("--init", default=None, help="meta-tta stage 2: the stage-1 weights (.pt) to start from; "
                   "masked-transformer: earlier weights (.pt) to continue training")
    t.add_argument("--inner-steps", type=int, default=5, help="meta-tta: head-only inner steps K (default 5)")
    t.add_argument("--base-weight", type=float, default=0.0,
                   help="meta-tta stage 2: weight of the unadapted output's L1 in the outer loss (default 0)")
    t.add_argument("--classic-share", type=float, default=0.0,
                   help="meta-tta stage 2: share of crops with the stage-1 classic noise mix (default 0)")
    t.add_argument("--ct-share", type=float, default=0.0,
                   help="meta-tta stage 2: share of crops with low-dose CT noise (default 0)")
    t.add_argument("--no-mask", action="store_true",
                   help="masked-transformer: train the unmasked baseline (no input mask, no attention mask)")
    t.add_argument("--attn-drop", type=float, default=0.75,
                   help="masked-transformer: share of tokens zeroed in every attention layer (default 0.75)")
    t.add_argument("--sigma", type=float, default=15.0,
                   help="masked-transformer: Gaussian training noise sigma in 0-255 units (default 15)")
    t.add_argument("--iterations", type=int, default=8000)
    t.add_argument("--batch", type=int, default=8)
    t.add_argument("--crop", type=int, default=128)
    t.add_argument("--lr", type=float, default=None, help="default 2e-3 (zero-shot), 1e-3 (ttt-mim)")
    t.add_argument("--widths", default=None, help="channels per level (default 16,32,64; meta-tta 24,32,48); masked-transformer: "
                        "convolution channels, token width, blocks per attention group (default 16,48,2,2)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    t.add_argument("--val-every", type=int, default=500)
    t.add_argument("--max-seconds", type=float, default=None,
                   help="training-time budget in seconds: stop at --iterations or here, whichever comes first; the cosine decay follows the nearer end")
    t.add_argument("--log", default=None, help="append validation rows (JSON lines) here")
    t.add_argument("--output", required=True, help="weights file to write (.pt); a .json manifest entry beside it")
    return p


# per-method training defaults: the reference settings (../shared/METHODS.md)
_TRAIN_DEFAULTS = {
    "zero-shot": {"mask_ratio": "0.3", "lr": 2e-3, "clip": 0.01, "weight_decay": 0.01},
    "ttt-mim": {"mask_ratio": "0.6", "lr": 1e-3, "clip": 0.0, "weight_decay": 1e-4},
    # stage 1 at the reference's 1e-3; stage 2 (reference 5e-5) gets --lr 2e-4 in our runs
    "meta-tta": {"mask_ratio": "0.5", "lr": 1e-3, "clip": 0.0, "weight_decay": 0.0, "widths": "24,32,48"},
    # input-mask ratio 80-90% and lr as the reference (Adam 1e-4, METHODS.md section 4)
    "masked-transformer": {"mask_ratio": "0.8,0.9", "lr": 1e-4, "clip": 0.0, "weight_decay": 0.0,
                           "widths": "16,48,2,2"},
}


class _Bar:
    """A one-line progress bar on stderr."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and sys.stderr is not None
        self.tty = self.enabled and sys.stderr.isatty()
        self.stage = None
        self._t = 0.0

    def __call__(self, p) -> None:
        if not self.enabled:
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
        label = "adapting" if p.stage == "adapt" else "tiles   "
        eta = p.elapsed / max(p.done, 1) * (p.total - p.done)
        start, end = ("\r", "") if self.tty else ("", "\n")
        sys.stderr.write(
            f"{start}{label} [{'#' * fill}{'.' * (width - fill)}] {p.done}/{p.total} "
            f"{p.elapsed:6.1f}s eta {eta:6.1f}s{end}"
        )
        sys.stderr.flush()

    def close(self) -> None:
        if self.tty and self.stage is not None:
            sys.stderr.write("\n")


def _run(args) -> int:
    from .api import denoise_to_zarr
    from .engine.io import read_input

    inp = read_input(args.input)
    axes = args.axes or inp.axes
    guessed_note = "" if args.axes or inp.axes else " (guessed; pass --axes to set)"
    bar = _Bar(not args.quiet)
    t0 = time.perf_counter()
    import warnings

    from .core.axes import AxesGuessedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AxesGuessedWarning)
        try:
            res = denoise_to_zarr(
                inp.data, args.output, method=args.method, preset=args.preset, axes=axes,
                device=args.device, seed=args.seed, tile=args.tile, mode=args.mode,
                resume=args.resume, overwrite=args.overwrite, scale=inp.scale,
                input_path=inp.path, progress=bar, precision=args.precision, compile=args.compile,
                scheduler=args.scheduler if args.workers is None else args.workers, **dict(args.option),
            )
        except KeyboardInterrupt:
            bar.close()
            print(f"masked-denoise: interrupted; {args.output} is incomplete, finish it with --resume",
                  file=sys.stderr)
            return 130
    bar.close()
    seconds = time.perf_counter() - t0
    mvox = res.voxels / 1e6
    print(f"input    {inp.path}  shape {tuple(res.denoised.shape)}  axes {res.axes}{guessed_note}")
    where = res.info["device"] if res.info.get("cluster") is None else f"cluster {res.info['cluster']}"
    print(f"method   {res.method} / {res.preset} ({res.mode} mode, {where}, "
          f"{res.info['tiles']} tiles, {res.info['tiling']})")
    print(f"time     {seconds:.1f} s  ({mvox / seconds:.3f} Mvoxel/s)")
    print(f"sigma    {res.sigma:.6g} (robust noise estimate, input units)")
    print(f"output   {res.path}  (arrays: {', '.join(('denoised', 'noise_map', *res.extras))})")
    from .methods.auto import describe_report

    for line in describe_report(res.info.get("method_report", {}), res.info["intensity_range"]):
        print(line)
    return 0


def _methods() -> int:
    from .methods import describe_methods

    for name, summary, presets in describe_methods():
        print(f"{name}: {summary}")
        for pname, pr in presets.items():
            print(f"    {pname:14s} {pr.description}")
    return 0


def _train(args) -> int:
    from pathlib import Path

    from .core.axes import DenoiseError
    from .training import TrainConfig, train_masked_transformer, train_meta_tta, train_ttt_mim, train_zero_shot

    d = _TRAIN_DEFAULTS[args.method]
    data = args.data or [str(Path("../shared/data/train/Train400"))]
    mask_ratio = args.mask_ratio or d["mask_ratio"]
    try:
        lo, hi = (float(v) for v in (mask_ratio.split(",") * 2)[:2])
    except ValueError:
        raise DenoiseError(f"--mask-ratio must be a number or LO,HI, got {mask_ratio!r}") from None
    if args.method == "ttt-mim" and lo != hi:
        raise DenoiseError("--mask-ratio must be one number for ttt-mim")
    if args.method == "meta-tta" and args.stage == 2 and not args.init:
        raise DenoiseError("meta-tta stage 2 needs --init (the stage-1 weights)")
    if args.inner_steps < 1:
        raise DenoiseError(f"--inner-steps must be at least 1, got {args.inner_steps}")
    if args.patch < 1:
        raise DenoiseError(f"--patch must be at least 1, got {args.patch}")
    if not 0 <= args.ct_share <= 1:
        raise DenoiseError(f"--ct-share must lie in [0, 1], got {args.ct_share}")
    if not 0 <= args.attn_drop < 1:
        raise DenoiseError(f"--attn-drop must lie in [0, 1), got {args.attn_drop}")
    if not args.sigma > 0:
        raise DenoiseError(f"--sigma must be positive, got {args.sigma}")
    if not (0 < lo <= hi < 1):
        raise DenoiseError(f"--mask-ratio must lie in (0, 1), got {mask_ratio!r}")
    cfg = TrainConfig(
        data=tuple(data), output=args.output, mask_ratio=(lo, hi), iterations=args.iterations,
        batch=args.batch, crop=args.crop, lr=args.lr if args.lr is not None else d["lr"],
        clip=d["clip"], weight_decay=d["weight_decay"], patch=args.patch, noise_var=args.noise_var,
        widths=tuple(int(w) for w in (args.widths or d.get("widths", "16,32,64")).split(",")), seed=args.seed,
        threads=args.threads, skimage=not args.no_skimage, val_every=args.val_every, log=args.log,
        max_seconds=args.max_seconds, stage=args.stage, init=args.init, inner_steps=args.inner_steps,
        base_weight=args.base_weight, classic_share=args.classic_share,
        masked=not args.no_mask, attn_drop=args.attn_drop, sigma=args.sigma, ct_share=args.ct_share,
    )
    trainer = {"zero-shot": train_zero_shot, "ttt-mim": train_ttt_mim, "meta-tta": train_meta_tta,
               "masked-transformer": train_masked_transformer}[args.method]
    entry = trainer(cfg)
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
        print(f"masked-denoise: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
