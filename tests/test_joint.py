"""Codec-level truth: joint fine-tuning, codec files, real rate-distortion points and BD-rate."""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from ordersearch import Schedule, save_schedule
from ordersearch.cli import main
from ordersearch.codec.codec_file import any_order_model, load_codec, open_codec, save_codec
from ordersearch.estimators import AnyOrderEstimator
from ordersearch.models import images_to_latents
from ordersearch.schedule_io import load_schedule
from ordersearch.run.pipeline import scorer_rate
from ordersearch.evaluation.joint import JointConfig, fine_tune
from ordersearch.models.joint import SERIAL
from ordersearch.codec.rd import bd_rate, bd_rate_table, ms_ssim, psnr

from test_codec import image

TRAIN = [image(128, 128, seed=i) for i in range(4)]
VAL = [image(64, 128, seed=9)]
TINY = JointConfig(max_steps=30, batch=2, crop=64, eval_every=10, lr=1e-3, lr_drops=0)  # 30 steps: the cosine decay


def _rate(model, photo: np.ndarray, lmbda: float) -> tuple[float, float]:
    x = torch.from_numpy(photo.copy()).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        return model.loss(x, lmbda, noise=False)[1:]


def test_lambda_trades_rate_for_distortion_and_the_codec_file_compresses(tmp_path):
    torch.set_num_threads(1)
    schedule = Schedule.named("checkerboard", 2)
    low = fine_tune(schedule, TRAIN, VAL, JointConfig(**{**TINY.__dict__, "lmbda": 0.0005}))
    high = fine_tune(schedule, TRAIN, VAL, JointConfig(**{**TINY.__dict__, "lmbda": 0.05}))
    assert _rate(high.model, VAL[0], 0.05)[0] > _rate(low.model, VAL[0], 0.0005)[0]  # more lambda, more bits
    assert low.curve[-1][2] < low.curve[0][2] and low.steps == 30
    # the file carries the trained transforms (float16); decoding is exact
    save_codec(tmp_path / "c.pt", schedule, low.model, {"label": "cb", "lmbda": 0.0005})
    codec, info = load_codec(tmp_path / "c.pt")
    assert info == {"label": "cb", "lmbda": 0.0005} and codec.schedule == schedule
    x = torch.from_numpy(TRAIN[0].copy()).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        assert torch.allclose(codec.base.g_a(x.double()).float(), low.model.base.g_a(x), atol=0.05)
    photo = image(64, 96, seed=3)
    assert np.array_equal(codec.decompress(codec.compress(photo)), codec.reconstruct(photo))


def test_fine_tuning_stops_at_its_third_plateau_not_at_the_cap():
    """The default protocol trains to a plateau: with learning rates too small to move the val loss, every
    validation after the first is one without improvement, so the rates drop at the first two plateaus and the
    third stops it (1 + 3 x patience validations); the earlier cosine protocol stops at the first."""
    torch.set_num_threads(1)
    still = {**TINY.__dict__, "lr": 1e-12, "context_lr": 1e-12, "max_steps": 200, "eval_every": 2, "patience": 1}
    assert JointConfig().lr_drops == 2
    plateau = fine_tune(Schedule.named("checkerboard", 2), TRAIN, VAL, JointConfig(**{**still, "lr_drops": 2}))
    assert (plateau.steps, plateau.best_step, plateau.hit_cap) == (8, 2, False)
    cosine = fine_tune(Schedule.named("checkerboard", 2), TRAIN, VAL, JointConfig(**{**still, "lr_drops": 0}))
    assert cosine.steps == 4


def test_serial_and_single_fine_tune_and_round_trip(tmp_path):
    torch.set_num_threads(1)
    config = JointConfig(**{**TINY.__dict__, "max_steps": 4, "eval_every": 2})
    for schedule in (SERIAL, Schedule.named("single", 2)):
        tuned = fine_tune(schedule, TRAIN, VAL, config)
        save_codec(tmp_path / "c.pt", schedule, tuned.model)
        codec, _ = load_codec(tmp_path / "c.pt")
        photo = image(64, 64, seed=4)
        assert np.array_equal(codec.decompress(codec.compress(photo)), codec.reconstruct(photo))


def test_one_any_order_codec_encodes_and_decodes_with_every_schedule_of_its_patch(tmp_path, capsys):
    """`codec train --any-order 2` fine-tunes one codec over random schedules; `encode --codec ANY.pt --schedule S`
    round-trips exactly for orders, grouped schedules and the named ones; `decode` takes the schedule from the
    stream; without a schedule, or with one of another patch size, it is one line."""
    torch.set_num_threads(1)
    photos = tmp_path / "photos"
    for split, count in (("train", 2), ("val", 1), ("test", 1)):
        (photos / split).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(image(64, 64, seed=20 + 3 * len(split) + i)).save(photos / split / f"{i}.png")
    codec_file = tmp_path / "any.pt"
    assert main(["codec", "train", "--any-order", "2", "--out", str(codec_file), "--photos", str(photos),
                 "--max-steps", "3", "--batch", "2", "--crop", "64", "--quiet"]) == 0
    assert "any-order-2x2" in capsys.readouterr().out
    photo = photos / "test" / "0.png"
    sizes = {}
    for name, schedule in (("raster", Schedule.named("raster", 2)), ("checkerboard", Schedule.named("checkerboard", 2)),
                           ("single", Schedule.named("single", 2)), ("lin2023", Schedule.named("lin2023", 2)),
                           ("grouped", Schedule.from_grid([[0, 1], [1, 2]]))):
        path = save_schedule(schedule, tmp_path / f"{name}.json")
        stream, out = tmp_path / f"{name}.osc", tmp_path / f"{name}.png"
        assert main(["encode", str(photo), str(stream), "--codec", str(codec_file), "--schedule", str(path)]) == 0
        assert main(["decode", str(stream), str(out), "--codec", str(codec_file)]) == 0  # the stream's schedule
        codec, info = load_codec(codec_file, schedule)
        assert info["any_order"] == 2 and codec.schedule == schedule
        assert np.array_equal(np.asarray(Image.open(out)), codec.reconstruct(np.asarray(Image.open(photo))))
        sizes[name] = stream.stat().st_size
    assert len(set(sizes.values())) > 1  # the schedules really differ
    capsys.readouterr()
    # without a schedule, or with one of another patch size: one line
    assert main(["encode", str(photo), str(tmp_path / "x.osc"), "--codec", str(codec_file)]) == 2
    assert "give the schedule" in capsys.readouterr().err
    four = save_schedule(Schedule.named("raster", 4), tmp_path / "raster4.json")
    assert main(["encode", str(photo), str(tmp_path / "x.osc"), "--codec", str(codec_file), "--schedule",
                 str(four)]) == 2
    assert "for 2x2 patches, the schedule is 4x4" in capsys.readouterr().err
    assert not (tmp_path / "x.osc").exists()
    # codec eval measures it once per schedule given; its transforms start another fine-tuning
    assert main(["codec", "eval", str(codec_file), "--photos", str(photos), "--out", str(tmp_path / "rd"),
                 "--schedule", str(tmp_path / "raster.json"), str(tmp_path / "single.json"), "--resamples", "10",
                 "--quiet"]) == 0
    points = pd.read_csv(tmp_path / "rd" / "points.csv")
    assert set(points.label) == {"any-order-2x2 raster", "any-order-2x2 single"} and points.exact.all()
    assert len(points) == 2 and points.bpp.nunique() == 2  # one test photo, measured with each schedule
    capsys.readouterr()
    assert main(["codec", "eval", str(codec_file), "--photos", str(photos), "--out", str(tmp_path / "rd2")]) == 2
    assert "give the schedules to measure it with" in capsys.readouterr().err

    # codec-level search: the table of this codec's context model on its own latents of the val photos, dp over
    # it, and the best schedule of every stage count as a file the codec encodes with
    assert main(["search", "--patch", "2", "--codec", str(codec_file), "--photos", str(photos), "--out",
                 str(tmp_path / "s"), "--strategies", "dp", "--quiet"]) == 0
    folder = tmp_path / "s" / "patch2"
    base, context = any_order_model(*open_codec(codec_file))
    val = images_to_latents([photos / "val" / "0.png"], base, progress=False)[0]
    costs = pd.read_csv(folder / "costs.csv")
    np.testing.assert_allclose(costs.bits_per_latent, AnyOrderEstimator(context, val).costs(costs.code.values, 2),
                               rtol=1e-6)
    table = np.full(16, np.nan)
    table[costs.code.values] = costs.bits_per_latent.values
    best, _ = load_schedule(folder / "schedules" / "dp.json")
    orders = [Schedule(np.array(p).reshape(2, 2)) for p in itertools.permutations(range(4))]
    assert scorer_rate(table, best) == pytest.approx(min(scorer_rate(table, o) for o in orders), abs=1e-12)
    for stages in (1, 4):
        schedule, _ = load_schedule(folder / "schedules" / f"best-{stages}-stage.json")
        assert schedule.num_stages == stages
        assert main(["encode", str(photo), str(tmp_path / "k.osc"), "--codec", str(codec_file), "--schedule",
                     str(folder / "schedules" / f"best-{stages}-stage.json")]) == 0
    assert "any-order context model of the codec" in (folder / "search.md").read_text()
    capsys.readouterr()
    assert main(["search", "--patch", "3", "--codec", str(codec_file), "--photos", str(photos), "--out",
                 str(tmp_path / "s")]) == 2
    assert "an any-order codec of 2x2 patches, not 3x3" in capsys.readouterr().err
    assert main(["codec", "train", "--schedule", str(tmp_path / "raster.json"), "--base", str(codec_file), "--out",
                 str(tmp_path / "raster.pt"), "--photos", str(photos), "--max-steps", "1", "--batch", "1", "--crop",
                 "64", "--quiet"]) == 0


def test_an_interrupted_fine_tuning_resumes_and_ends_where_it_would_have(tmp_path):
    """Killed after its first checkpoint, started again: the same weights as one uninterrupted run."""
    script = textwrap.dedent(f"""
        import sys, time, torch
        sys.path.insert(0, {str(__file__.rsplit('/', 1)[0])!r})
        torch.set_num_threads(1)
        from test_joint import TRAIN, VAL, TINY
        from ordersearch import Schedule
        from ordersearch.evaluation.joint import JointConfig, fine_tune
        config = JointConfig(**{{**TINY.__dict__, "max_steps": 12, "eval_every": 4}})
        tuned = fine_tune(Schedule.named("checkerboard", 2), TRAIN, VAL, config, checkpoint=sys.argv[1],
                          checkpoint_every=0.0 if sys.argv[3] == "often" else 1e9)
        torch.save(tuned.model.state_dict(), sys.argv[2])
    """)
    (tmp_path / "ft.py").write_text(script)
    ck = tmp_path / "ft.partial"
    proc = subprocess.Popen([sys.executable, str(tmp_path / "ft.py"), str(ck), str(tmp_path / "a.pt"), "often"])
    import time

    deadline = time.time() + 120
    while not ck.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    assert ck.exists() and not (tmp_path / "a.pt").exists()
    assert subprocess.run([sys.executable, str(tmp_path / "ft.py"), str(ck), str(tmp_path / "a.pt"), "often"]
                          ).returncode == 0
    assert not ck.exists()  # a finished fine-tuning leaves no checkpoint behind
    assert subprocess.run([sys.executable, str(tmp_path / "ft.py"), str(tmp_path / "other"), str(tmp_path / "b.pt"),
                           "never"]).returncode == 0
    a, b = torch.load(tmp_path / "a.pt"), torch.load(tmp_path / "b.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bd_rate_against_independent_cubic_and_exact_cases():
    # the package's README example (ffmpeg libx265 presets); VCEG-M33's cubic fit, done here by hand
    ra, pa = [9487.76, 4593.60, 2486.44, 1358.24], [40.037, 38.615, 36.845, 34.851]
    rt, pt = [9787.80, 4469.00, 2451.52, 1356.24], [40.121, 38.651, 36.970, 34.987]
    fa, ft = np.polyfit(pa, np.log(ra), 3), np.polyfit(pt, np.log(rt), 3)
    lo, hi = max(min(pa), min(pt)), min(max(pa), max(pt))
    ia, it = np.polyint(fa), np.polyint(ft)
    cubic = (np.exp(((np.polyval(it, hi) - np.polyval(it, lo)) - (np.polyval(ia, hi) - np.polyval(ia, lo)))
                    / (hi - lo)) - 1) * 100
    assert bd_rate((ra, pa), (rt, pt)) == pytest.approx(cubic, abs=0.05)  # PCHIP and cubic agree here
    assert bd_rate((ra, pa), ([0.9 * r for r in ra], pa)) == pytest.approx(-10.0, abs=1e-9)
    assert bd_rate((ra, pa), (ra, pa)) == pytest.approx(0.0, abs=1e-12)


def test_ms_ssim_is_one_for_the_same_image_falls_with_noise_and_is_undefined_on_small_images():
    rng = np.random.default_rng(0)
    photo = image(192, 256, seed=3)
    noisy = [np.clip(photo + rng.normal(0, s, photo.shape), 0, 255).astype(np.uint8) for s in (2, 8, 24)]
    scores = [ms_ssim(photo, n) for n in noisy]
    assert ms_ssim(photo, photo) == pytest.approx(1.0, abs=1e-9)
    assert 1 > scores[0] > scores[1] > scores[2] > 0
    assert [psnr(photo, n) for n in noisy] == sorted(psnr(photo, n) for n in noisy)[::-1]
    assert np.isnan(ms_ssim(photo[:160], photo[:160]))  # five scales need more than 160 pixels a side


def test_bd_rate_table_bootstrap_covers_a_known_saving():
    """Test photos where the test codec spends 5% fewer bits at equal PSNR, plus per-photo noise."""
    rng = np.random.default_rng(0)
    rows = []
    for image_index in range(12):
        spread = rng.normal(0, 0.05)
        for lmbda, bpp, db in ((0.002, 0.15, 28.0), (0.004, 0.25, 29.5), (0.008, 0.4, 31.0), (0.016, 0.65, 32.5)):
            base = bpp * np.exp(spread)
            noise = rng.normal(0, 0.01)
            rows.append({"label": "serial", "lmbda": lmbda, "image": f"i{image_index}", "bpp": base,
                         "psnr": db + spread})
            rows.append({"label": "lin2023", "lmbda": lmbda, "image": f"i{image_index}",
                         "bpp": 0.95 * base * np.exp(noise), "psnr": db + spread})
    table = bd_rate_table(pd.DataFrame(rows), ["serial"], resamples=300)
    row = table.set_index("label").loc["lin2023"]
    assert row.low < -5.0 < row.high and row.high - row.low < 3 and abs(row.bd_rate + 5) < 1.5
    assert row.photos == 12 and row.operating_points == 4 and row.undefined_resamples == 0


def test_codec_commands_from_schedule_file_to_bd_rate_table(tmp_path, capsys):
    torch.set_num_threads(1)
    photos = tmp_path / "photos"
    for split, count in (("train", 3), ("val", 1), ("test", 2)):
        (photos / split).mkdir(parents=True)
        for i in range(count):
            side = 176 if split == "test" else 128  # test photos large enough for MS-SSIM's five scales
            Image.fromarray(image(side, side, seed=10 * len(split) + i)).save(photos / split / f"{i}.png")
    cb = save_schedule(Schedule.named("checkerboard", 2), tmp_path / "checkerboard.json")
    common = ["--photos", str(photos), "--max-steps", "2", "--batch", "1", "--crop", "64", "--quiet"]
    for lmbda, base in (("0.002", []), ("0.02", ["--base", str(tmp_path / "cb0.002.pt")])):  # or another point
        assert main(["codec", "train", "--schedule", str(cb), "--lmbda", lmbda, "--out",
                     str(tmp_path / f"cb{lmbda}.pt"), *common, *base]) == 0
        assert main(["codec", "train", "--serial", "--lmbda", lmbda, "--out", str(tmp_path / f"s{lmbda}.pt"),
                     *common]) == 0
    assert "2 steps" in capsys.readouterr().out
    assert not list(tmp_path.glob("*.partial"))
    assert main(["codec", "eval", *map(str, sorted(tmp_path.glob("*.pt"))), "--photos", str(photos), "--out",
                 str(tmp_path / "rd"), "--resamples", "20", "--quiet"]) == 0
    out = capsys.readouterr().out
    points = pd.read_csv(tmp_path / "rd" / "points.csv")
    assert set(points.label) == {"checkerboard", "serial"} and len(points) == 8 and points.exact.all()
    assert (points.bpp > 0).all() and (points.psnr > 10).all() and points.ms_ssim.between(0, 1).all()
    bd = pd.read_csv(tmp_path / "rd" / "bd_rate.csv")
    assert set(zip(bd.label, bd.reference, bd.metric)) == {(a, b, m) for a, b in (("checkerboard", "serial"),
                                                                                   ("serial", "checkerboard"))
                                                            for m in ("psnr", "ms_ssim_db")}
    assert "checkerboard vs serial" in out
    assert main(["plot", str(tmp_path / "rd")]) == 0 and (tmp_path / "rd" / "figures" / "rd.png").stat().st_size > 0
    # bad input: one line, non-zero, nothing written
    (tmp_path / "junk.pt").write_bytes(b"junk")
    assert main(["codec", "eval", str(tmp_path / "junk.pt"), "--photos", str(photos), "--out",
                 str(tmp_path / "rd2")]) == 2
    err = capsys.readouterr().err
    assert "not a codec file" in err and err.count("\n") == 1 and not (tmp_path / "rd2").exists()
    # a forged codec file: widths that would allocate without bound, a schedule that is not one
    import io

    good = torch.load(tmp_path / "cb0.002.pt", weights_only=True)
    for name, forged in (("wide.pt", {**good, "base_config": {"N": 10**6, "M": 64, "Nz": 64}}),
                         ("grid.pt", {**good, "schedule": "[[0, 0], [7]]"}), ("keys.pt", {"format": good["format"]})):
        buf = io.BytesIO()
        torch.save(forged, buf)
        (tmp_path / name).write_bytes(buf.getvalue())
        assert main(["encode", str(photos / "test" / "0.png"), str(tmp_path / "y.osc"), "--codec",
                     str(tmp_path / name)]) == 2
        err = capsys.readouterr().err
        assert "a damaged codec file" in err and err.count("\n") == 1, err
    assert main(["codec", "train", "--serial", "--out", str(tmp_path / "x.pt"), "--photos",
                 str(tmp_path / "nowhere")]) == 2
    assert "not a folder of photos" in capsys.readouterr().err


def test_a_codec_of_one_schedule_refuses_another(tmp_path, capsys):
    """`encode --codec CB.pt --schedule other.json` is one line, not a stream made with the codec's own schedule;
    with its own schedule it encodes."""
    torch.set_num_threads(1)
    checkerboard = Schedule.named("checkerboard", 2)
    tuned = fine_tune(checkerboard, TRAIN, VAL, JointConfig(**{**TINY.__dict__, "max_steps": 1, "eval_every": 1}))
    save_codec(tmp_path / "cb.pt", checkerboard, tuned.model)
    Image.fromarray(image(64, 64, seed=5)).save(tmp_path / "p.png")
    for schedule, code in ((Schedule.named("raster", 2), 2), (checkerboard, 0)):
        path = save_schedule(schedule, tmp_path / "s.json")
        assert main(["encode", str(tmp_path / "p.png"), str(tmp_path / "o.osc"), "--codec", str(tmp_path / "cb.pt"),
                     "--schedule", str(path)]) == code
    assert "a codec of one schedule" in capsys.readouterr().err
