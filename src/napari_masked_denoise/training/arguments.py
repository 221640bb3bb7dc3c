"""The ``masked-denoise train`` command, built from the trainer registry.

:func:`add_arguments` puts the flags every trainer shares and each registered trainer's
own flags (:class:`~napari_masked_denoise.training.Option`) on the ``train`` parser;
:func:`config_from_args` turns the parsed arguments into the chosen trainer's config,
with that trainer's defaults where a flag was not given, and checks them. No torch is
imported here.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from . import Option, Trainer, get, names

__all__ = ["add_arguments", "config_from_args", "DEFAULT_DATA"]

DEFAULT_DATA = str(Path("../shared/data/train/Train400"))
"""The training folder when ``--data`` is not given."""


def _default(trainer: Trainer, field: str):
    return {f.name: f.default for f in dataclasses.fields(trainer.config)}[field]


def _ratio_text(ratio: tuple[float, float]) -> str:
    lo, hi = ratio
    return f"{lo:g}" if lo == hi else f"{lo:g},{hi:g}"


def _per_method(trainers: list[Trainer], text) -> str:
    return ", ".join(f"{text(t)} ({t.name})" for t in trainers)


def _merged_options(trainers: list[Trainer]) -> dict[str, tuple[Option, list[Trainer]]]:
    """Every trainer's options by flag, in registry order: an option several trainers
    declare appears once, with the trainers that declare it."""
    merged: dict[str, tuple[Option, list[Trainer]]] = {}
    for t in trainers:
        for opt in t.options:
            if opt.flag in merged:
                first, owners = merged[opt.flag]
                if (first.field, _default(owners[0], first.field)) != (
                    opt.field,
                    _default(t, opt.field),
                ):
                    raise ValueError(
                        f"trainers {owners[0].name} and {t.name} disagree on {opt.flag}"
                    )
                owners.append(t)
            else:
                merged[opt.flag] = (opt, [t])
    return merged


def _add_option(parser: argparse.ArgumentParser, opt: Option, owners: list[Trainer]) -> None:
    helps = "; ".join(
        dict.fromkeys(o.help for t in owners for o in t.options if o.flag == opt.flag)
    )
    if opt.type is None:  # a switch that turns the field off
        parser.add_argument(opt.flag, action="store_true", help=helps)
        return
    kw = {"type": opt.type} if opt.type is not str else {}
    if opt.choices is not None:
        kw["choices"] = opt.choices
    parser.add_argument(opt.flag, default=_default(owners[0], opt.field), help=helps, **kw)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the method choice and every flag of ``masked-denoise train`` to ``parser``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The ``train`` subcommand's parser. The methods are the registry's; each trainer's
        own flags come from its :class:`~napari_masked_denoise.training.Trainer` record,
        and the per-method defaults quoted in the help from its config.
    """
    trainers = [get(n) for n in names()]
    parser.add_argument("method", choices=tuple(names()))
    parser.add_argument(
        "--data",
        action="append",
        default=None,
        help=f"folder of clean training images (repeatable; default {DEFAULT_DATA})",
    )
    parser.add_argument(
        "--no-skimage", action="store_true", help="do not add scikit-image's bundled images"
    )
    parser.add_argument(
        "--mask-ratio",
        default=None,
        help="share of pixels (zero-shot) or patches (ttt-mim) masked: a number, "
        "or LO,HI to draw per crop (e.g. 0.8,0.95; not ttt-mim); default "
        + _per_method(trainers, lambda t: _ratio_text(_default(t, "mask_ratio"))),
    )
    for opt, owners in _merged_options(trainers).values():
        _add_option(parser, opt, owners)
    parser.add_argument("--iterations", type=int, default=None)
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--crop", type=int, default=None)
    parser.add_argument(
        "--lr",
        type=float,
        default=None,
        help="default " + _per_method(trainers, lambda t: f"{_default(t, 'lr'):g}"),
    )
    widths = [f"{t.name}: {t.widths}" for t in trainers if t.widths != "channels per level"]
    parser.add_argument(
        "--widths",
        default=None,
        help="channels per level"
        + (f" ({'; '.join(widths)})" if widths else "")
        + ", comma-separated; default "
        + _per_method(trainers, lambda t: ",".join(map(str, _default(t, "widths")))),
    )
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--val-every", type=int, default=None)
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=None,
        help="training-time budget in seconds: stop at --iterations or here, "
        "whichever comes first; the cosine decay follows the nearer end",
    )
    parser.add_argument(
        "--stop-after",
        type=int,
        default=None,
        help="end this session at that iteration, keeping the checkpoint "
        "(the schedule still follows --iterations); continue with --resume",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from the checkpoint OUTPUT.partial.pt (written at every validation) "
        "with the settings it was started with",
    )
    parser.add_argument("--log", default=None, help="append validation rows (JSON lines) here")
    parser.add_argument(
        "--output",
        required=True,
        help="weights file to write (.pt); a .json manifest entry beside it",
    )


def _mask_ratio(text: str) -> tuple[float, float]:
    from ..core.axes import DenoiseError

    try:
        lo, hi = (float(v) for v in (text.split(",") * 2)[:2])
    except ValueError:
        raise DenoiseError(f"--mask-ratio must be a number or LO,HI, got {text!r}") from None
    return lo, hi


def config_from_args(args: argparse.Namespace):
    """The config of the trainer ``args.method`` from the parsed ``train`` arguments.

    Parameters
    ----------
    args : argparse.Namespace
        As the parser of :func:`add_arguments` returns it.

    Returns
    -------
    TrainConfig
        The trainer's config class, with its defaults for the flags not given.

    Raises
    ------
    DenoiseError
        A flag's value is out of range (checked for every trainer's flags, whichever method
        is trained), or the trainer's own check fails.
    """
    from ..core.axes import DenoiseError

    trainer = get(args.method)
    fields = {f.name for f in dataclasses.fields(trainer.config)}
    kw = {
        "data": tuple(args.data or [DEFAULT_DATA]),
        "output": args.output,
        "skimage": not args.no_skimage,
        "resume": args.resume,
    }
    if args.mask_ratio:
        kw["mask_ratio"] = _mask_ratio(args.mask_ratio)
    for name in (
        "iterations",
        "batch",
        "crop",
        "lr",
        "seed",
        "threads",
        "val_every",
        "log",
        "max_seconds",
        "stop_after",
    ):
        if getattr(args, name) is not None:
            kw[name] = getattr(args, name)
    for opt in trainer.options:
        value = getattr(args, opt.dest)
        kw[opt.field] = (not value) if opt.type is None else value
    cfg = trainer.config(**{k: v for k, v in kw.items() if k in fields})
    if trainer.check is not None:
        trainer.check(cfg)
    for opt, _ in _merged_options([get(n) for n in names()]).values():
        value = getattr(args, opt.dest)
        if opt.valid is not None and not opt.valid(value):
            raise DenoiseError(opt.error.format(value))
    lo, hi = cfg.mask_ratio
    if not (0 < lo <= hi < 1):
        raise DenoiseError(f"--mask-ratio must lie in (0, 1), got {args.mask_ratio!r}")
    if args.widths:  # parsed last, as before: a bad value is a ValueError
        cfg = dataclasses.replace(cfg, widths=tuple(int(w) for w in args.widths.split(",")))
    return cfg
