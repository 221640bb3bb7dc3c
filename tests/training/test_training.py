import json

import pytest

from napari_masked_denoise.cli import main
from napari_masked_denoise.training.zero_shot import ZeroShotConfig, _validate, train_zero_shot


def test_training_learns_to_fill_dropped_pixels_and_writes_a_verified_manifest(
    image_folder, tmp_path
):
    import torch

    from napari_masked_denoise.methods import get_method
    from napari_masked_denoise.nets.unet import UNet
    from napari_masked_denoise.training.data import training_images, val_set
    from napari_masked_denoise.weights import load_state

    cfg = ZeroShotConfig(
        data=(str(image_folder),),
        output=str(tmp_path / "w" / "zs.pt"),
        iterations=60,
        batch=4,
        crop=64,
        val_every=30,
        skimage=False,
        seed=3,
        log=str(tmp_path / "log.jsonl"),
    )
    entry = train_zero_shot(cfg, progress=lambda s: None)
    rows = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [30, 60]

    # the trained network fills dropped pixels of held-out images far better than its initialisation
    _, val, _ = training_images([image_folder], skimage=False)
    vc, vn, vu = val_set(val, 64, 20, 3)
    torch.manual_seed(3)
    before, _ = _validate(UNet(2, 1, (16, 32, 64)), vc, vn, vu, 0.3)
    state, loaded = load_state(cfg.output)
    net = UNet(2, 1, (16, 32, 64))
    net.load_state_dict(state)
    after, _ = _validate(net, vc, vn, vu, 0.3)
    assert after > before + 5.0
    assert loaded == entry and entry["iterations"] == 60 and entry["seed"] == 3
    assert entry["final_validation"]["val_masked_psnr"] == pytest.approx(after, abs=1e-3)

    # the method loads a weights file by path; a tampered file is refused
    m = get_method("zero-shot")(
        preset="fast", mode="once", device=torch.device("cpu"), weights=cfg.output
    )
    assert m.weights_info["sha256"] == entry["sha256"]
    raw = bytearray((tmp_path / "w" / "zs.pt").read_bytes())
    raw[-10] ^= 1
    (tmp_path / "w" / "zs.pt").write_bytes(bytes(raw))
    from napari_masked_denoise.core.axes import DenoiseError

    with pytest.raises(DenoiseError, match="sha256"):
        load_state(cfg.output)


def test_train_cli_reports_a_missing_data_folder(tmp_path, capsys):
    assert (
        main(
            [
                "train",
                "zero-shot",
                "--data",
                str(tmp_path / "nope"),
                "--output",
                str(tmp_path / "w.pt"),
            ]
        )
        == 2
    )
    assert "does not exist" in capsys.readouterr().err


def test_train_cli_rejects_a_bad_mask_ratio(tmp_path, capsys):
    assert (
        main(["train", "zero-shot", "--mask-ratio", "0.9,1.2", "--output", str(tmp_path / "w.pt")])
        == 2
    )
    assert "--mask-ratio" in capsys.readouterr().err
