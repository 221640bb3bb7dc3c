"""Noise2Void from ``careamics`` as a benchmark peer: trained on the one noisy image
itself, with careamics' documented configuration factory and ``CAREamist`` API.

It is optional (not a dependency of the package nor of its tests): ``careamics`` 0.3
pins ``torchvision<=0.26``, which pins ``torch`` 2.11, so install it in an environment of
its own (see ``benchmarks/RESULTS.md`` for the one used). :func:`available` says why it
cannot run here, in one line, when it cannot.
"""

from __future__ import annotations

import tempfile

import numpy as np

EPOCHS = 200
STEPS = 25
LR = 4e-4
"""Batches per epoch. 20 x 25 batches of 16 patches of 64 x 64 take about 1-2 minutes of
CPU per 256 x 256 image on the machine of RESULTS.md (the issue's budget)."""


def available() -> str | None:
    """``None`` when careamics can run, else why not (one line)."""
    try:
        import careamics  # noqa: F401
    except Exception as exc:  # ImportError, or torchvision built for another torch
        return f"Noise2Void (careamics) skipped: {type(exc).__name__}: {exc}".splitlines()[0]
    return None


def noise2void(y: np.ndarray, seed: int = 0, step_schedule: bool = True) -> np.ndarray:
    """Noise2Void trained on ``y`` (2-D) alone and applied to it; ``step_schedule=False``
    keeps careamics' defaults (8 validation patches, the plateau scheduler), as the first
    rows of the quality benchmark were made."""
    import torch
    from careamics import CAREamist
    from careamics.config import create_advanced_n2v_config

    torch.manual_seed(seed)
    np.random.seed(seed)
    # careamics' defaults keep 8 patches of a 256 x 256 image for validation and let the
    # plateau scheduler cut the rate on a one-batch epoch: a fixed step schedule and 2
    # validation patches train the one image instead (METHODS.md, "careamics")
    tuned = (
        {
            "n_val_patches": 2,
            "optimizer_params": {"lr": LR},
            "lr_scheduler": "StepLR",
            "lr_scheduler_params": {"step_size": EPOCHS // 2, "gamma": 0.3},
            "seed": seed + 1,  # careamics wants a positive seed
        }
        if step_schedule
        else {}
    )
    config = create_advanced_n2v_config(
        experiment_name="n2v_peer",
        data_type="array",
        axes="YX",
        patch_size=[64, 64],
        batch_size=16,
        num_epochs=EPOCHS,
        num_steps=STEPS,
        **tuned,
    )
    with tempfile.TemporaryDirectory() as work:
        model = CAREamist(config, work_dir=work, enable_progress_bar=False)
        model.train(train_data=np.asarray(y, np.float32))
        pred = model.predict(np.asarray(y, np.float32), data_type="array", axes="YX")
    out = pred[0] if isinstance(pred, tuple) else pred
    out = out[0] if isinstance(out, list) else out
    return np.asarray(out, np.float32).reshape(y.shape)
