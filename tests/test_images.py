"""Images -> latents, the bundled base codec's operating point, and the built-in latent set."""

import json
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image

from ordersearch.cli import main
from ordersearch.data import load_latents, read_image
from ordersearch.models import BaseCodec, builtin, builtin_info
from ordersearch.errors import ImageError

GRACE = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
RESULTS = Path(__file__).parent.parent / "results"


@pytest.fixture(scope="module")
def codec():
    return BaseCodec.load()


@pytest.fixture
def photo_folder(tmp_path):
    """A user's folder: a colour photo, a grayscale crop of it, an unreadable file and a tiny image."""
    folder = tmp_path / "photos"
    folder.mkdir()
    photo = Image.open(GRACE)
    photo.save(folder / "a_grace.png")
    photo.convert("L").crop((0, 0, 130, 100)).save(folder / "b_gray.ppm")
    (folder / "c_broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    Image.new("RGB", (20, 40)).save(folder / "d_tiny.png")
    (folder / "notes.txt").write_text("not an image, ignored by suffix")
    return folder


def test_latents_command_writes_documented_arrays(photo_folder, tmp_path, capsys, codec):
    out = tmp_path / "lat.npz"
    assert main(["latents", "--images", str(photo_folder), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert f"wrote {out}: 2 images, y 64 channels, prior 64 channels" in captured.out
    err = captured.err.splitlines()
    assert err[-2].startswith(f"ordersearch: skipped {photo_folder / 'c_broken.jpg'}: not a readable image")
    assert err[-1] == f"ordersearch: skipped {photo_folder / 'd_tiny.png'}: too small (20x40; each side must be at least 32)"

    lat = load_latents(out)
    assert len(lat) == 2
    # grace_hopper is 600x512: padded to 640x512 -> 40x32 latents; the gray crop 100x130 -> 128x192 -> 8x12
    assert lat.y[0].shape == (64, 40, 32) and lat.y[1].shape == (64, 8, 12)
    assert lat.prior[0].shape == (64, 40, 32)
    assert lat.image_sizes.tolist() == [[600, 512], [100, 130]]
    assert lat.y[0].dtype == np.int32 and np.abs(lat.y[0]).max() > 0
    assert (lat.prior[0] > 0).all()  # scales
    y, _, prior = codec.encode_array(read_image(photo_folder / "a_grace.png"))
    assert (lat.y[0] == y).all() and np.allclose(lat.prior[0], prior)


def test_latents_command_errors(tmp_path, capsys):
    assert main(["latents", "--images", str(tmp_path / "none"), "--out", str(tmp_path / "x.npz")]) == 2
    assert capsys.readouterr().err == f"ordersearch: error: {tmp_path / 'none'}: not a folder\n"
    (tmp_path / "empty").mkdir()
    assert main(["latents", "--images", str(tmp_path / "empty"), "--out", str(tmp_path / "x.npz")]) == 2
    assert "no images" in capsys.readouterr().err
    assert main(["latents", "--images", str(tmp_path), "--out", str(tmp_path / "x.csv")]) == 2
    assert "use a .npz or .pt file name" in capsys.readouterr().err
    assert main(["latents", "--images", str(tmp_path), "--out", str(tmp_path / "x.npz"), "--device", "tpu"]) == 2
    assert capsys.readouterr().err == "ordersearch: error: unknown device 'tpu' (use auto, cpu or cuda)\n"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_cuda_asked_for_without_cuda(tmp_path, capsys):
    assert main(["latents", "--images", str(tmp_path), "--out", str(tmp_path / "x.npz"), "--device", "cuda"]) == 2
    assert capsys.readouterr().err == ("ordersearch: error: device 'cuda' asked for, "
                                       "but CUDA is not available on this machine\n")


def test_read_image_errors(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        read_image(tmp_path / "x.png")
    gray = tmp_path / "g.png"
    Image.new("L", (40, 40), 7).save(gray)
    assert read_image(gray).shape == (40, 40, 3) and (read_image(gray) == 7).all()


def test_base_codec_psnr_on_held_out_photo_matches_recorded(codec):
    """results/base_codec_reference.json was written by experiments/evaluate_base_codec.py."""
    ref = json.loads((RESULTS / "base_codec_reference.json").read_text())
    bpp, psnr = codec.operating_point(read_image(GRACE))
    assert psnr == pytest.approx(ref["psnr"], abs=0.1)
    assert bpp == pytest.approx(ref["bpp"], rel=0.01)


def test_builtin_set_is_real_learned_latents():
    b = builtin()
    assert b is builtin()  # loaded once per process
    assert b.channels == 64 and b.prior_channels == 64
    parts = b.split()
    assert parts.train.num_positions >= 200_000 and parts.test.num_positions >= 20_000
    assert len(parts.val) == 5 and len(parts.test) == 12
    # held-out photos are distinct from training photos
    assert not set(parts.train.groups.tolist()) & set(parts.test.groups.tolist())
    info = builtin_info()
    assert info["positions"] == {"train": parts.train.num_positions, "val": parts.val.num_positions,
                                 "test": parts.test.num_positions}
    assert all(p["licence"] for p in info["photos"])
    y = np.concatenate([a.reshape(64, -1) for a in parts.test.y], axis=1)
    assert 0.1 < (y != 0).mean() < 0.9  # sparse but not empty, as learned latents at ~0.3 bpp are
    assert all((p > 0).all() for p in b.prior[:5])


def test_search_and_run_on_a_folder_of_small_photos(tmp_path, capsys):
    """`search --images` needs no training, so small photos do; `run` trains on 16x16-latent crops and says
    in one line how large the photos must be."""
    folder = tmp_path / "small"
    folder.mkdir()
    photo = Image.open(GRACE)
    for i in range(8):
        photo.crop((40 * i, 30 * i, 40 * i + 160, 30 * i + 128)).save(folder / f"crop{i}.png")
    out = tmp_path / "out"
    assert main(["search", "--patch", "2", "--images", str(folder), "--out", str(out), "--budget", "10",
                 "--quiet"]) == 0
    assert (out / "patch2" / "schedules" / "dp.json").is_file()
    capsys.readouterr()
    assert main(["run", "--patch", "2", "--images", str(folder), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "images of at least 256x256 pixels" in err
