"""The trainer registry and the ``train`` command built from it."""

import dataclasses
import subprocess
import sys
import types

import pytest

from napari_masked_denoise import training
from napari_masked_denoise.cli import build_parser, main
from napari_masked_denoise.training.loop import TrainConfig


def test_importing_the_package_and_building_the_parser_load_no_torch():
    code = (
        "import sys, napari_masked_denoise.training as t; from napari_masked_denoise.cli "
        "import build_parser; build_parser(); t.gray01; t.VAL_EVERY_NTH; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_every_trainer_is_registered_with_its_config_and_options():
    for name in training.names():
        t = training.get(name)
        assert t.name == name and issubclass(t.config, TrainConfig)
        fields = {f.name for f in dataclasses.fields(t.config)}
        assert all(o.field in fields for o in t.options), name
    # no field of one method only in the shared config
    shared = {f.name for f in dataclasses.fields(TrainConfig)}
    assert not shared & {"patch", "noise_var", "stage", "sigma", "ema", "weight_decay", "init"}
    assert training.train_zero_shot is training.get("zero-shot").train
    with pytest.raises(KeyError):
        training.get("nope")


def test_a_new_trainer_needs_no_edit_of_the_command_line(monkeypatch, tmp_path, capsys):
    @dataclasses.dataclass
    class FakeConfig(TrainConfig):
        lr: float = 0.5
        depth: int = 3

    seen = {}

    def train(cfg, *, progress=print):
        seen["cfg"] = cfg
        return {"sha256": "0" * 64, "train_seconds": 1.0}

    module = types.ModuleType("napari_masked_denoise.training.fake")
    module.TRAINER = training.Trainer(
        "fake",
        FakeConfig,
        train,
        options=(
            training.Option(
                "--depth",
                "depth",
                "fake: depth (default %(default)g)",
                type=int,
                valid=lambda v: v > 0,
                error="--depth must be positive, got {}",
            ),
        ),
    )
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(training.TRAINERS, "fake", "fake")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "{zero-shot,ttt-mim,meta-tta,masked-transformer,fake}" in help_text
    assert "fake: depth (default 3)" in help_text and "0.5 (fake)" in help_text
    out = str(tmp_path / "w.pt")
    assert main(["train", "fake", "--depth", "5", "--output", out]) == 0
    assert isinstance(seen["cfg"], FakeConfig)
    assert (seen["cfg"].depth, seen["cfg"].lr, seen["cfg"].output) == (5, 0.5, out)
    assert main(["train", "zero-shot", "--depth", "0", "--output", out]) == 2
    assert "--depth must be positive, got 0" in capsys.readouterr().err


def test_per_method_defaults_come_from_the_configs(tmp_path, monkeypatch):
    from napari_masked_denoise.training.arguments import config_from_args

    out = str(tmp_path / "w.pt")
    p = build_parser()
    for name in training.names():
        cfg = config_from_args(p.parse_args(["train", name, "--output", out]))
        assert cfg == training.get(name).config(data=cfg.data, output=out)
    cfg = config_from_args(
        p.parse_args(
            [
                "train",
                "masked-transformer",
                "--no-mask",
                "--sigma",
                "25",
                "--mask-ratio",
                "0.7,0.8",
                "--output",
                out,
            ]
        )
    )
    assert (cfg.masked, cfg.sigma, cfg.mask_ratio, cfg.lr) == (False, 25.0, (0.7, 0.8), 1e-4)
