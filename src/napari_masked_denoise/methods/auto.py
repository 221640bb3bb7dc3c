"""``auto``: choose the method and preset per image by their estimated error.

Every candidate (``"method:preset"``) denoises the sample of tiles the engine gives
:meth:`adapt` (in both modes; its first ``crops`` crops, 2 by default), and its error
against the unknown clean image is estimated without one; the lowest wins, and every
tile is then processed by the winner alone. In ``once`` mode each candidate adapts on the
sample as it would alone and the winner keeps
that adaptation; in ``per-tile`` mode the winner adapts to every tile.

The estimate (option ``score``):

``"model"`` (default)
    Stein's unbiased risk estimate generalised to the image's noise model (Eldar's GSURE,
    :func:`~.fidelity.risk`): the candidate's output on the sample, and its divergence
    from one more run on the sample plus a small probe drawn from the model (its level at
    every pixel and its correlation), the same probe for every candidate. It holds for
    signal-dependent and spatially correlated noise. The ``identity`` candidate's risk is
    the noise variance itself, so ``auto`` keeps the input wherever no candidate is
    estimated better than it. Without a model (an image too small to measure, or
    ``noise="blind"``) and for impulsive noise, for which Stein's lemma does not hold, it
    falls back to held-out pixels and says so in the report.
``"held-out"``
    a few % of the pixels held out (:mod:`napari_masked_denoise.noise.holdout`): the loss there
    against the noisy values, one run per candidate. It needs only noise independent
    between pixels, and it scores each method with those pixels hidden, which penalises
    methods that use a pixel's own value (BM3D, NLM, TV) against blind-spot ones
    (zero-shot filling), most at low noise.
``"sure"``
    Stein's unbiased risk estimate (:mod:`napari_masked_denoise.noise.sure`) with a noise
    variance that grows with the intensity: the candidate's output on the sample, and a
    Monte-Carlo divergence from one more run on the slightly perturbed sample (two runs per
    candidate). It scores the output the user gets, and picked the best candidate on every
    Gaussian-noise case; on spatially correlated noise and low-dose CT it did worse than
    held-out pixels, which is why it is not the default. Where the noise is impulsive
    (salt and pepper), for which SURE does not hold, it falls back to held-out pixels and
    says so in the report. In ``once`` mode the divergence of a candidate that adapts on
    the sample (zero-shot filling, TTT-MIM ``fast``) is that of the adapted network, not
    of the adaptation, so it does not see overfitting to the noise.

Neither of the last two is right for spatially correlated noise. Chosen and measured in
``benchmarks/RESULTS.md``.

The report (``result.info["method_report"]``, the CLI summary, the widget) gives the
choice, which estimate ranked it and why, every candidate's estimate and seconds, and
the estimated error, PSNR and gain of the output over the input, in the units of the
normalised image (data range 1 = the input's intensity range used by the engine). That
estimate moves one for one with the estimated noise variance, so it is good to a dB or
two, not more; the ranking depends much less on it.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Generator, Iterator

import numpy as np

from ..core.axes import DenoiseError
from ..core.masks import Coords
from ..noise.holdout import FILLS, HOLDOUT_FRAC
from .base import Method, Preset, Processed
from .options import integer, number, one_of

__all__ = ["Auto", "default_candidates", "parse_candidate"]

IDENTITY = "identity:default"
_FAST = (
    "identity",
    "wavelet",
    "tv:fixed",
    "tv:calibrated",
    "nlm",
    "bm3d:fast",
    "ttt-mim:no-adapt",
    "meta-tta:no-adapt",
)
"""``bm3d:fast`` for speed (2.4x, about 0.2 dB lower where BM3D wins). Strength sweeps
(``bm3d:fast@0.7``, ``@1.4``...) ranked worse on held-out images, so none is a default."""
_QUALITY = tuple("bm3d:default" if c == "bm3d:fast" else c for c in _FAST) + (
    "ttt-mim:fast",
    "zero-shot:fast",
    "zero-shot:real-fast",
)


def _available(spec: str) -> bool:
    name = parse_candidate(spec)[0]
    if name == "bm3d":
        import importlib.util

        return importlib.util.find_spec("bm3d") is not None
    if name == "masked-transformer":
        from ..weights import available

        return name in available()
    return True


def default_candidates(preset: str = "quality") -> tuple[str, ...]:
    """The candidates of a preset that this installation can run (BM3D needs ``bm3d``)."""
    return tuple(c for c in (_QUALITY if preset == "quality" else _FAST) if _available(c))


def parse_candidate(spec: str) -> tuple[str, str | None, dict]:
    """``"name[:preset][@strength]"`` as the method's name, preset (``None``: its
    default) and options (``{"strength": s}`` for ``@s``, a multiple of its noise level)."""
    head, _, strength = str(spec).partition("@")
    name, _, preset = head.partition(":")
    opts = {}
    if strength.strip():
        try:
            opts["strength"] = float(strength)
        except ValueError:
            raise DenoiseError(
                f"auto candidate {spec!r}: the strength after '@' must be a number"
            ) from None
    return name.strip(), (preset.strip() or None), opts


class Auto(Method):
    name = "auto"
    summary = "choose the method and preset per image by the estimated error of every candidate"
    presets = {
        "fast": Preset(
            "classical peers and the networks without adaptation (seconds per image)",
            {"candidates": "fast"},
        ),
        "quality": Preset(
            "also TTT-MIM fast and zero-shot filling (synthetic and real-noise weights) and BM3D "
            "at its full profile: minutes per image on a CPU",
            {"candidates": "quality"},
        ),
    }
    defaults = {
        "candidates": "fast",
        "holdout": HOLDOUT_FRAC,
        "radius": 0,
        "budget": 0.0,
        "fill": "residual",
        "score": "model",
        "crops": 2,
    }
    checks = {
        "holdout": number(0, 0.2, open_lo=True),
        "radius": integer(0, 3),
        "budget": number(),  # seconds; 0 or less: no budget
        "fill": one_of(*FILLS),
        "score": one_of("model", "sure", "held-out"),
        "crops": integer(1),
    }
    needs_sample = True
    """``auto`` decides on the sample in both modes: its tiling follows its choice."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        from . import default_preset, get_method

        o = self.options
        cands = o["candidates"]
        if isinstance(cands, str) and cands in ("quality", "fast"):
            specs = default_candidates(cands)
        else:
            specs = tuple(
                c.strip()
                for c in (cands.split(",") if isinstance(cands, str) else cands)
                if c.strip()
            )
        if not specs:
            raise DenoiseError("auto needs at least one candidate")
        self.radius = int(o["radius"])
        self.candidates: dict[str, Method] = {}
        for spec in specs:
            name, preset, opts = parse_candidate(spec)
            if name == "auto":
                raise DenoiseError("auto cannot be its own candidate")
            preset = preset or default_preset(name)
            m = get_method(name)(
                preset=preset,
                mode=self.mode,
                device=self.device,
                seed=self.seed,
                noise=self.noise,
                **opts,
            )
            strength = f"@{opts['strength']:g}" if "strength" in opts else ""
            self.candidates[f"{name}:{preset}{strength}"] = m
        ms = list(self.candidates.values())
        self.halo = max(m.halo for m in ms)
        self.align = math.lcm(*(m.align for m in ms))
        self.default_tile = max(m.default_tile for m in ms)
        self.chosen: str | None = None
        self._report = {"choice": None, "candidates": list(self.candidates)}

    # -- scoring ----------------------------------------------------------------------
    def _score(self, y: np.ndarray, coords: Coords) -> Iterator[tuple[int, int, dict]]:
        """Run every candidate on ``y``; yields progress, then the scores
        ``{spec: {"loss", "seconds", "output"}}`` as the last item's third field."""
        from ..noise.levels import correlation_ratio
        from ..noise.sure import IMPULSE_SHARE, impulse_share

        share = impulse_share(y)
        kind = str(self.options["score"])
        if kind == "model" and self.noise is None:
            kind = "held-out"
            self._report["score_reason"] = "no noise model"
        if kind in ("model", "sure") and share > IMPULSE_SHARE:
            kind = "held-out"  # Stein's lemma needs Gaussian-like noise; impulses are not
            self._report["score_reason"] = f"impulse noise ({100 * share:.1f}% isolated outliers)"
        self._report.update(score=kind, impulse_share=share, noise_correlation=correlation_ratio(y))
        run = {"model": self._model_risk, "sure": self._sure}.get(kind, self._held_out)
        scores, t_start, budget = {}, time.perf_counter(), float(self.options["budget"])
        n = len(self.candidates)
        prep = run(y, coords, None, None)
        for i, (spec, meth) in enumerate(self.candidates.items()):
            if scores and budget > 0 and time.perf_counter() - t_start > budget:
                scores[spec] = {"loss": None, "seconds": 0.0, "skipped": "time budget"}
                continue
            t = time.perf_counter()
            if self.mode == "once":
                for step, total in meth.adapt(prep["input"], coords):
                    yield i * 1000 + int(1000 * step / max(total, 1)), n * 1000, {}
            scores[spec] = {**run(y, coords, meth, prep), "seconds": time.perf_counter() - t}
            yield (i + 1) * 1000, n * 1000, {}
        yield n * 1000, n * 1000, scores

    def _held_out(self, y, coords, meth, prep) -> dict:
        """Held-out pixels: without ``meth``, the hidden input; with it, the loss there."""
        from ..noise.holdout import hide, holdout_loss

        if meth is None:
            m = self._holdout(y, coords)
            return {
                "input": hide(y, m, self.radius, fill=str(self.options["fill"]), seed=self.seed),
                "mask": m,
            }
        out = meth.denoise(prep["input"], coords)
        return {"loss": holdout_loss(out, y, prep["mask"]), "output": out}

    def _sure(self, y, coords, meth, prep) -> dict:
        """SURE: without ``meth``, the noise level and the probe; with it, the estimated
        error from its outputs on the sample with and without the probe. Fit, noise and
        divergence are taken over the same pixels: a denoiser's divergence follows the
        image content (higher in texture), so a part of the sample does not stand for it."""
        from ..noise.sure import SURE_EPS, divergence, noise_level, probe, risk

        if meth is None:
            v = noise_level(y)
            self._noise_var = float(np.mean(v))
            b = probe(v, self.seed)
            return {"input": y, "b": b}
        b = prep["b"]
        t = time.perf_counter()
        out = meth.denoise(y, coords)
        run_s = time.perf_counter() - t
        div = divergence(out, meth.denoise(y + SURE_EPS * b, coords), b, SURE_EPS)
        return {
            "loss": risk(y, out, self._noise_var, div),
            "output": out,
            "div": div,
            "run_seconds": run_s,
        }

    def _model_risk(self, y, coords, meth, prep) -> dict:
        """GSURE under the noise model: without ``meth``, the noise variance (the input's
        risk); with it, the candidate's estimated mean squared error on the sample."""
        from .fidelity import risk

        if meth is None:
            self._noise_var = float(np.mean(self.noise.sigma(np.asarray(y, np.float64)) ** 2))
            return {"input": y}
        t = time.perf_counter()
        out = meth.denoise(y, coords)
        run_s = time.perf_counter() - t
        loss = risk(lambda b: meth.denoise(b, coords), y, out, self.noise, self.seed) / y.size
        return {"loss": loss, "output": out, "run_seconds": run_s}

    def _holdout(self, y: np.ndarray, coords: Coords) -> np.ndarray:
        """The held-out pixels, a function of the position in the image: where sample crops
        overlap, a pixel is held out in all of them or in none (else a candidate that
        learns from the whole sample, e.g. zero-shot filling, would train on it)."""
        from ..noise.holdout import holdout_mask

        frac, r = float(self.options["holdout"]), self.radius
        origins = coords.origins
        if not origins or len(origins) != y.shape[0]:
            return holdout_mask(y.shape, coords, self.seed, frac, r)
        return np.concatenate(
            [
                holdout_mask((1, *y.shape[1:]), Coords([p], y0, x0), self.seed, frac, r)
                for p, y0, x0 in origins
            ]
        )

    def _choose(self, scores: dict, y: np.ndarray) -> str:
        from ..noise.holdout import Estimate, noise_variance

        ok = {
            k: v for k, v in scores.items() if v.get("loss") is not None and np.isfinite(v["loss"])
        }
        if not ok:
            raise DenoiseError("auto: no candidate gave a finite error estimate")
        best = min(ok, key=lambda k: ok[k]["loss"])
        if self._report["score"] == "model":  # the risk is the error; the input's, the variance
            # a risk estimate at or below 0 says only that the error is small: the gain is
            # capped at 30 dB rather than reported as infinite
            var = self._noise_var
            est = Estimate(max(ok[best]["loss"], 1e-3 * var) + var, var)
        elif self._report["score"] == "sure":
            # The ranking uses the noise-level function; the estimate of the winner's error,
            # which moves one for one with the noise variance, rescales it to the variance
            # left when the winner's details are taken out of the input's finest ones (lower
            # where texture inflates the noise-level function).
            nlf, div = self._noise_var, ok[best]["div"]
            var = min(nlf, noise_variance(y, ok[best]["output"]))
            fit = ok[best]["loss"] + nlf - 2 * div  # SURE = fit - nlf + 2 div
            est = Estimate(
                fit + 2 * div * var / nlf, var
            )  # SURE with the noise level scaled by var/nlf
        else:
            var = noise_variance(y, ok[best]["output"])
            est = Estimate(ok[best]["loss"], var)
        if IDENTITY in ok and best != IDENTITY and not est.gain_db > 0:
            # whatever ranked it, an output estimated no better than the input is not applied
            self._report["kept_reason"] = f"{best} was estimated at {est.gain_db:+.1f} dB"
            best, est = IDENTITY, Estimate(2 * var, var)
        self._report.update(
            choice=best,
            scores={k: _public(v) for k, v in scores.items()},
            noise_sigma=math.sqrt(var),
            estimated_mse=est.mse,
            estimated_psnr=est.psnr,
            estimated_gain_db=est.gain_db,
        )
        return best

    # -- the work ---------------------------------------------------------------------
    def adapt(self, sample: np.ndarray, coords: Coords) -> Generator[tuple[int, int], None, dict]:
        k = int(self.options["crops"])  # the candidates are scored on the first k crops
        if sample.shape[0] > k:
            origins = coords.origins[:k] if coords.origins else None
            sample, coords = sample[:k], Coords(coords.planes[:k], coords.y0, coords.x0, origins)
        scores = {}
        for step, total, s in self._score(sample, coords):
            scores = s or scores
            yield step, total
        self._set_choice(self._choose(scores, sample))
        return dict(self._report)

    def _set_choice(self, spec: str) -> None:
        self.chosen = spec
        for k in [k for k in self.candidates if k != spec]:
            del self.candidates[k]  # free the other candidates' networks
        chosen = self.candidates[spec]
        self.halo, self.align, self.default_tile = chosen.halo, chosen.align, chosen.default_tile

    @property
    def adapt_label(self) -> str:
        return f"scoring {len(self.candidates)} candidates"

    @property
    def tile_exact(self) -> bool:
        return self.chosen is not None and self.candidates[self.chosen].tile_exact

    def process(self, block: np.ndarray, coords: Coords) -> Processed:
        return self.candidates[self.chosen].process(block, coords)

    def compile(self) -> None:
        self.candidates[self.chosen].compile()

    # -- resume -------------------------------------------------------------------------
    def state_bytes(self) -> bytes:
        if self.chosen is None:
            return b""
        head = json.dumps({"report": self._report}).encode()
        return len(head).to_bytes(8, "little") + head + self.candidates[self.chosen].state_bytes()

    def load_state_bytes(self, data: bytes) -> None:
        if not data:
            return
        n = int.from_bytes(data[:8], "little")
        self._report = json.loads(data[8 : 8 + n].decode())["report"]
        self._set_choice(self._report["choice"])
        self.candidates[self.chosen].load_state_bytes(data[8 + n :])


def _public(score: dict) -> dict:
    """A candidate's score as the report keeps it (no output array)."""
    out = {"loss": score.get("loss"), "seconds": round(score["seconds"], 3)}
    if "run_seconds" in score:
        out["run_seconds"] = round(score["run_seconds"], 3)
    if "skipped" in score:
        out["skipped"] = score["skipped"]
    return out
