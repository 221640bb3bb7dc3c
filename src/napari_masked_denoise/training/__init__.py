"""Training of the networks whose weights ship with the package: the trainer registry.

One module per method's trainer (:mod:`.zero_shot`, :mod:`.ttt_mim`, :mod:`.meta_tta`,
:mod:`.masked_transformer`), each with its config (a :class:`~.loop.TrainConfig` with the
method's own fields and defaults), its losses and validation, and a :class:`Trainer`
record ``TRAINER`` that the ``masked-denoise train`` command is built from
(:mod:`.arguments`): a new trainer is a new module and one line in :data:`TRAINERS`, no
edit of the command line. They share :mod:`.data` (images, crops, validation set) and
:mod:`.loop` (the loop, its schedule, the saved weights and manifest).

Importing this package loads no trainer and no torch; :func:`get` loads a trainer's
module on first use, and the names below (``train_zero_shot``, ``gray01``...) load theirs
when first read.

Command line: ``masked-denoise train zero-shot --mask-ratio 0.3 --iterations 8000
--output weights.pt``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "Option",
    "Trainer",
    "TRAINERS",
    "names",
    "get",
    "TrainConfig",
    "ZeroShotConfig",
    "TTTMIMConfig",
    "MetaTTAConfig",
    "MaskedTransformerConfig",
    "train_zero_shot",
    "train_ttt_mim",
    "train_meta_tta",
    "train_masked_transformer",
    "training_images",
    "gray01",
    "SKIMAGE_IMAGES",
    "VAL_EVERY_NTH",
    "MIT_VAL_NOISES",
]

TRAINERS: dict[str, str] = {
    "zero-shot": "zero_shot",
    "ttt-mim": "ttt_mim",
    "meta-tta": "meta_tta",
    "masked-transformer": "masked_transformer",
}
"""Trainer name -> its module in this package (which defines ``TRAINER``), in the order
the command line lists them."""


@dataclass(frozen=True)
class Option:
    """One ``masked-denoise train`` flag of a trainer.

    Parameters
    ----------
    flag : str
        The flag, e.g. ``"--patch"``; its value lands in the argparse attribute of the
        same name (``patch``).
    field : str
        The config field it sets; its default is the flag's default.
    help : str
        Help text, starting with the trainer's name; ``%(default)g`` shows the default.
        Trainers that share a flag (same field, same default) get their help joined.
    type : callable, optional
        Parses the value; ``None``: a switch (``--no-...``) that sets the field to False.
    choices : tuple, optional
        The values allowed.
    valid : callable, optional
        ``valid(value)``: whether a value is acceptable. Checked whichever method is
        trained, as the flag is.
    error : str
        The error message when not valid, ``{}`` standing for the value.
    """

    flag: str
    field: str
    help: str
    type: Callable | None = float
    choices: tuple | None = None
    valid: Callable[[object], bool] | None = None
    error: str = ""

    @property
    def dest(self) -> str:
        """The argparse attribute the flag's value lands in."""
        return self.flag.lstrip("-").replace("-", "_")


@dataclass(frozen=True)
class Trainer:
    """What the command line needs of a trainer.

    Parameters
    ----------
    name : str
        The method name, as ``masked-denoise train NAME``.
    config : type
        Its config dataclass (a :class:`~.loop.TrainConfig`); the defaults of its fields
        are the command line's defaults for this method.
    train : callable
        ``train(cfg, *, progress=print) -> dict``: trains, saves, returns the manifest entry.
    options : tuple of Option
        The trainer's own flags.
    check : callable, optional
        ``check(cfg)``: raises :class:`~napari_masked_denoise.core.axes.DenoiseError` for
        settings the method cannot train with.
    widths : str
        What ``--widths`` means for it.
    """

    name: str
    config: type
    train: Callable[..., dict]
    options: tuple[Option, ...] = ()
    check: Callable[[object], None] | None = None
    widths: str = "channels per level"


def names() -> list[str]:
    """The registered trainers.

    Returns
    -------
    list of str
        Their names, in the command line's order.
    """
    return list(TRAINERS)


def get(name: str) -> Trainer:
    """The trainer called ``name``, its module imported on first use.

    Parameters
    ----------
    name : str
        A name of :data:`TRAINERS`, e.g. ``"zero-shot"``.

    Returns
    -------
    Trainer
        The module's ``TRAINER`` record.

    Raises
    ------
    KeyError
        No trainer of that name.
    """
    if name not in TRAINERS:
        raise KeyError(f"no trainer {name!r}; known: {', '.join(TRAINERS)}")
    return importlib.import_module(f".{TRAINERS[name]}", __name__).TRAINER


# public names of the submodules, loaded when first read
_LAZY = {
    "TrainConfig": "loop",
    "ZeroShotConfig": "zero_shot",
    "train_zero_shot": "zero_shot",
    "TTTMIMConfig": "ttt_mim",
    "train_ttt_mim": "ttt_mim",
    "MetaTTAConfig": "meta_tta",
    "train_meta_tta": "meta_tta",
    "MaskedTransformerConfig": "masked_transformer",
    "train_masked_transformer": "masked_transformer",
    "MIT_VAL_NOISES": "masked_transformer",
    "training_images": "data",
    "gray01": "data",
    "SKIMAGE_IMAGES": "data",
    "VAL_EVERY_NTH": "data",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
