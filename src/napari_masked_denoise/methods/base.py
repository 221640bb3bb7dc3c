"""The one interface every denoising method implements.

A method denoises blocks of 2-D planes ``(N, H, W)``, float32, already normalised to
roughly [0, 1]. The engine picks one of two modes:

``per-tile``
    :meth:`Method.process` adapts to each block on its own (slow, best quality for a
    single image).
``once``
    :meth:`Method.adapt` is run once on a sample of tiles of the whole image or volume,
    then :meth:`Method.process` runs every block with the adapted, fixed network (fast;
    for a fixed network the tiled result equals the untiled one).

What a method produces travels in return values, never in attributes the engine reads
back: :meth:`Method.process` returns a :class:`Processed` (the denoised block, extra
per-pixel outputs, facts about the block), and :meth:`Method.adapt` is a generator of
progress whose return value is its report (what it decided, JSON-able).

A new method is one module here (a :class:`Method` subclass, registered by name in
:mod:`napari_masked_denoise.methods`), its network in :mod:`napari_masked_denoise.nets`
and, if it ships weights, its trainer in :mod:`napari_masked_denoise.training`.
"""

from __future__ import annotations

import io
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..core.axes import DenoiseError
from ..core.masks import Coords
from .options import Check, check

__all__ = ["Method", "Preset", "Processed", "MODES"]

MODES = ("per-tile", "once")


@dataclass
class Processed:
    """What :meth:`Method.process` produced for a block ``(N, H, W)``.

    Attributes
    ----------
    denoised : numpy.ndarray
        The denoised block, float32, the input's shape.
    extras : dict of str to numpy.ndarray
        One ``(N, H, W)`` array per name in :attr:`Method.extras` (e.g. meta-TTA's
        ``loss_mask``), blended and stored like the denoised output.
    report : dict of str to list
        Facts about this block (e.g. zero-shot filling's stopping iteration under
        ``"stopped_at"``); the engine concatenates each key's lists over the run.
    """

    denoised: np.ndarray
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    report: dict[str, list] = field(default_factory=dict)

    def merge_report(self, other: dict[str, list]) -> None:
        """Append the lists of ``other`` to this report's."""
        merge_reports(self.report, other)


def merge_reports(into: dict[str, list], other: dict[str, list]) -> dict[str, list]:
    """Append each list of ``other`` to the same key's list of ``into``; return ``into``."""
    for key, values in other.items():
        into.setdefault(key, []).extend(values)
    return into


@dataclass(frozen=True)
class Preset:
    """Named option values for a method, with a one-line description."""

    description: str
    options: dict[str, Any] = field(default_factory=dict)


class Method:
    """Base class. Subclasses set :attr:`name`, :attr:`presets`, :attr:`defaults`."""

    name: ClassVar[str]
    summary: ClassVar[str]
    presets: ClassVar[dict[str, Preset]]
    defaults: ClassVar[dict[str, Any]]
    needs_sample: ClassVar[bool] = False
    """Whether :meth:`adapt` runs on the sample in ``per-tile`` mode too (``auto`` chooses
    its method there)."""
    preview_options: ClassVar[dict[str, Any]] = {}
    """Options that make a quick preview of one slice (merged under the user's options)."""

    checks: ClassVar[dict[str, Check]] = {}
    """Rules for option values (:mod:`.options`), checked by :meth:`check_options`."""

    def __init__(self, *, preset: str, mode: str, device, seed: int = 0, noise=None, **options):
        if preset not in self.presets:
            raise DenoiseError(
                f"unknown preset {preset!r} for method {self.name!r}; "
                f"choose one of {', '.join(self.presets)}"
            )
        self.check_options(options, preset)
        self.preset = preset
        self.mode = mode
        self.device = device
        self.seed = int(seed)
        self.options = self.merged_options(preset, options)
        self.noise = noise
        """The image's :class:`~napari_masked_denoise.noise.model.NoiseModel` in the
        normalised units of the blocks, when the engine measured it (else ``None``: a
        method that needs the noise estimates it from what it is given)."""

    @classmethod
    def check_options(cls, options: dict, preset: str | None = None) -> None:
        """Raise a one-line :class:`DenoiseError` for an unknown option name, or for a
        value (the user's over the preset's and the defaults) that breaks :attr:`checks`.

        Parameters
        ----------
        options : dict
            The user's options.
        preset : str, optional
            The preset they override (default: the method's first).
        """
        unknown = set(options) - set(cls.defaults)
        if unknown:
            raise DenoiseError(
                f"unknown option(s) {', '.join(sorted(unknown))} for method {cls.name!r}; "
                f"known: {', '.join(sorted(cls.defaults))}"
            )
        merged = cls.merged_options(preset or next(iter(cls.presets)), options)
        for name, rule in cls.checks.items():
            check(name, merged[name], rule)

    # -- geometry the engine needs -------------------------------------------------
    halo: int = 0
    """Context in pixels each tile needs on each side (receptive-field radius)."""
    align: int = 1
    """Tile read regions start at multiples of this."""
    default_tile: int = 256
    """Core tile size when the user gives none: larger for a wide receptive field, so
    that the halo read around each tile stays a small share of the work."""
    exact_support: ClassVar[bool] = False
    """Whether :attr:`halo` covers everything :meth:`process` reads around a pixel, so
    that with fixed parameters a tile's core is the same wherever the tiles are cut."""
    extras: tuple[str, ...] = ()
    """Names of the extra per-pixel outputs :meth:`process` returns in
    :attr:`Processed.extras`."""

    @classmethod
    def adapts_per_tile(cls, options: dict) -> bool:
        """Whether ``per-tile`` mode adapts anything to each tile.

        Parameters
        ----------
        options : dict
            Merged options (:meth:`merged_options`).

        Returns
        -------
        bool
            If not, ``per-tile`` and ``once`` give the same result and the engine runs
            a single 2-D image in ``once`` mode too.
        """
        return True

    @classmethod
    def merged_options(cls, preset: str, options: dict | None = None) -> dict:
        """The options a method runs with.

        Parameters
        ----------
        preset : str
            A preset name; an unknown one contributes nothing.
        options : dict, optional
            The user's options.

        Returns
        -------
        dict
            The defaults, then the preset's options, then ``options``.
        """
        known = cls.presets.get(preset)
        return {**cls.defaults, **(known.options if known else {}), **(options or {})}

    @classmethod
    def exact_tiling(cls, options: dict, mode: str) -> bool:
        """Whether tiles of this method with these (merged) options in ``mode`` need no
        blending (:attr:`tile_exact` of a built method)."""
        return cls.exact_support and (mode == "once" or not cls.adapts_per_tile(options))

    @property
    def tile_exact(self) -> bool:
        """Whether tiles need no blending (fixed parameters, an exact halo): the engine
        then cuts each plane into a partition aligned to the output chunks and writes
        every tile once, without overlap and without reading the output back."""
        return self.exact_tiling(self.options, self.mode)

    # -- the work ---------------------------------------------------------------------
    def adapt(self, sample: np.ndarray, coords: Coords) -> Generator[tuple[int, int], None, dict]:
        """Adapt on a sample (``once`` mode, and ``per-tile`` when :attr:`needs_sample`).

        Parameters
        ----------
        sample : numpy.ndarray
            ``(N, H, W)`` float32 crops, normalised as the blocks are.
        coords : Coords
            Their coordinates; ``coords.origins`` says where each crop lies in the image.

        Yields
        ------
        tuple of int
            ``(step, total)`` for progress.

        Returns
        -------
        dict
            What the method decided, JSON-able (``auto``: its choice and the candidates'
            estimates); the engine keeps it in the store and in the run's report.
        """
        return {}
        yield  # a generator

    def process(self, block: np.ndarray, coords: Coords) -> Processed:
        """Denoise a block.

        Parameters
        ----------
        block : numpy.ndarray
            ``(N, H, W)`` float32 planes, normalised to roughly [0, 1].
        coords : Coords
            The block's position in the image (masks are drawn from it).

        Returns
        -------
        Processed
            The denoised block (same shape, float32), its extras and report.
        """
        raise NotImplementedError

    @property
    def adapt_label(self) -> str:
        """What :meth:`adapt` does, in words, for progress bars."""
        return "adapting"

    def denoise(self, block: np.ndarray, coords: Coords) -> np.ndarray:
        """Only the denoised array of :meth:`process`."""
        return self.process(block, coords).denoised

    compiled_calls: ClassVar[tuple[str, ...]] = ()
    """The calls on :attr:`net` that :meth:`process` makes in ``once`` mode (``"forward"``
    for ``net(x)``), compiled by :meth:`compile`."""

    def compile(self) -> None:
        """``torch.compile`` the fixed network's calls (``once`` mode, after :meth:`adapt`).

        Compiling costs tens of seconds per distinct tile shape on a CPU (about 80 s for
        meta-TTA on two cores) and then runs the network about 1.5x faster there.
        """
        import torch

        if not self.compiled_calls:
            raise DenoiseError(f"method {self.name!r} has no network calls to compile")
        for name in self.compiled_calls:
            target = self.net if name == "forward" else getattr(self.net, name)
            if isinstance(target, torch.nn.Module):
                target.compile()  # in place: the module keeps its parameters and its name
            else:
                setattr(self.net, name, torch.compile(target))

    # -- the network: shipped or own weights, or random initialisation -----------------
    def _build_net(self, make_net, user_options: dict):
        """Build ``make_net(widths)`` from the ``weights`` and ``widths`` options.

        Sets :attr:`widths`, :attr:`weights_info` (the manifest entry, ``{}`` without
        weights), :attr:`net` (on the device, channels-last) and ``_init_state`` (what
        per-tile adaptation resets to). The widths come from the weights' manifest; a
        ``widths`` option the user gave that disagrees, weights trained for another
        method, or a state dict that does not fit, is a one-line error.
        """
        import copy

        import torch

        o = self.options
        self.widths = tuple(int(w) for w in o["widths"])
        torch.manual_seed(self.seed)
        state, self.weights_info = None, {}
        if o["weights"] and str(o["weights"]) != "none":
            from ..weights import load_state

            state, self.weights_info = load_state(str(o["weights"]))
            trained_for = self.weights_info.get("method", self.name)
            if trained_for != self.name:
                raise DenoiseError(
                    f"weights {o['weights']!r} were trained for {trained_for!r}, not {self.name}"
                )
            widths = tuple(self.weights_info.get("architecture", {}).get("widths", self.widths))
            if "widths" in user_options and tuple(int(w) for w in user_options["widths"]) != widths:
                raise DenoiseError(
                    f"widths {tuple(user_options['widths'])} do not match the weights {o['weights']!r} "
                    f"{widths}; pass weights=none to start from random initialisation"
                )
            self.widths = widths
        net = make_net(self.widths)
        if state is not None:
            try:
                net.load_state_dict(state)
            except RuntimeError as exc:
                raise DenoiseError(
                    f"weights {o['weights']!r} do not fit the network: {exc}"
                ) from None
        self.net = net.to(self.device).to(memory_format=torch.channels_last)
        self._init_state = copy.deepcopy(self.net.state_dict())
        return self.net

    def _padded(self, block: np.ndarray):
        """``(N, H, W)`` numpy -> ``(N, 1, H', W')`` tensor on the device, replicate-padded
        at the bottom and right to multiples of :attr:`align`; also returns ``(H, W)``."""
        import torch
        import torch.nn.functional as F

        x = torch.from_numpy(np.ascontiguousarray(block, dtype=np.float32)).to(self.device)[:, None]
        h, w = x.shape[-2:]
        ph, pw = (-h) % self.align, (-w) % self.align
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        return x, (h, w)

    # -- the share of a fixed network's change kept (:mod:`.fidelity`) ------------------
    weight: float | None = None
    """``once`` mode: the share of the change kept, chosen on the sample by :meth:`adapt`."""

    def _blended(self, forward, block: np.ndarray, out: np.ndarray) -> np.ndarray:
        """``out`` moved toward ``block`` by :attr:`weight` (``once`` mode, when
        :meth:`adapt` chose one), else by this block's own blend weight under the noise
        model (:func:`~.fidelity.blend_weight`; ``forward`` is the network on a block)."""
        from .fidelity import blend, blend_weight

        w = self.weight if self.mode == "once" and self.weight is not None else None
        if w is None:
            w = blend_weight(forward, block, out, self.noise, self.seed)
        return blend(block, out, w)

    def _weight_tensor(self):
        """:attr:`weight` for :meth:`state_bytes` (-1: none chosen)."""
        import torch

        return torch.tensor(-1.0 if self.weight is None else self.weight)

    def _load_weight(self, state: dict) -> None:
        """:attr:`weight` from a state :meth:`_weight_tensor` wrote (none if absent)."""
        w = float(state.get("weight", -1.0))
        self.weight = None if w < 0 else w

    # -- adapted state, saved in the output store so a resumed run continues exactly --
    def state_bytes(self) -> bytes:
        """The adapted state (after :meth:`adapt`), as bytes the store keeps.

        Returns
        -------
        bytes
            Empty for a method with nothing adapted; read back by :meth:`load_state_bytes`
            in a resumed run and in cluster workers.
        """
        return b""

    def load_state_bytes(self, data: bytes) -> None:
        """Restore the state :meth:`state_bytes` gave (instead of adapting again).

        Parameters
        ----------
        data : bytes
            What :meth:`state_bytes` returned; loaded without running code from it.
        """

    @staticmethod
    def _torch_bytes(state: dict) -> bytes:
        import torch

        buf = io.BytesIO()
        torch.save(state, buf)
        return buf.getvalue()

    @staticmethod
    def _torch_state(data: bytes) -> dict:
        from ..weights import load_tensors

        return load_tensors(data, "the adapted state saved in the output (method_state)")
