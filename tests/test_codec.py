"""Real entropy coding with a schedule: exact round trips, refusals of foreign or damaged streams, the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ordersearch import Schedule, save_schedule
from ordersearch.cli import main
from ordersearch.codec import CodecError, MultistageCodec as Codec
from ordersearch.models.multistage import ModelConfig, MultistageContextModel

SCHEDULES = {
    "raster": Schedule.named("raster", 2),
    "checkerboard": Schedule.named("checkerboard", 2),
    "lin2023": Schedule.named("lin2023", 4),
    "grouped": Schedule.from_grid([[0, 2, 1], [2, 0, 1], [1, 1, 3]]),
}


def image(h=120, w=180, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    x = np.stack([128 + 60 * np.sin(xx / 11.0), 128 + 60 * np.cos(yy / 7.0), (xx + 2 * yy) % 256], -1)
    return np.clip(x + rng.normal(0, 6, x.shape), 0, 255).astype(np.uint8)


def model_for(schedule: Schedule, seed: int = 0) -> MultistageContextModel:
    torch.manual_seed(seed)
    model = MultistageContextModel(schedule, 64, 64, ModelConfig(prior_scale=True))
    torch.nn.init.normal_(model.weight, std=0.02)  # untrained, but it uses its context
    return model


@pytest.fixture(scope="module")
def codecs():
    torch.set_num_threads(1)
    return {name: Codec(s, model_for(s)) for name, s in SCHEDULES.items()}


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_round_trip_is_exact(codecs, name):
    codec = codecs[name]
    img = image()
    encoded = codec.encode(img)
    decoded, y = codec._decode(encoded.data)
    x = torch.from_numpy(img).permute(2, 0, 1)[None].double().div(255)
    from ordersearch.models import pad

    y_enc, _ = codec.base.analyze(pad(x))
    assert torch.equal(y, y_enc)  # decoded latents are the encoder's quantized latents
    assert np.array_equal(decoded, codec.reconstruct(img))  # and the image is the codec's own reconstruction
    assert len(encoded.y_bits_per_stage) == SCHEDULES[name].num_stages
    assert len(encoded.data) * 8 == encoded.header_bytes * 8 + encoded.z_bits + sum(encoded.y_bits_per_stage)


def test_foreign_and_damaged_streams_are_refused(codecs):
    data = codecs["raster"].compress(image(64, 64))
    with pytest.raises(CodecError, match="another schedule"):
        codecs["checkerboard"].decompress(data)
    other = Codec(SCHEDULES["raster"], model_for(SCHEDULES["raster"], seed=1))
    with pytest.raises(CodecError, match="other model weights"):
        other.decompress(data)
    with pytest.raises(CodecError, match="empty or too short"):
        codecs["raster"].decompress(b"")
    with pytest.raises(CodecError, match="bad magic"):
        codecs["raster"].decompress(b"JFIF" + data[4:])
    for cut in (10, 40, len(data) - 3):
        with pytest.raises(CodecError, match="truncated"):
            codecs["raster"].decompress(data[:cut])
    rng = np.random.default_rng(0)
    for _ in range(20):  # a flipped byte anywhere: a clear error (or, in the header's sizes, a refusal)
        pos = int(rng.integers(len(data)))
        damaged = bytearray(data)
        damaged[pos] ^= 1 << int(rng.integers(8))
        with pytest.raises(CodecError):
            codecs["raster"].decompress(bytes(damaged))


def test_weights_from_a_file_and_for_a_translated_schedule(tmp_path):
    canonical = Schedule.named("lin2023", 4).canonical()
    model = model_for(canonical)
    weights = tmp_path / "w.pt"
    torch.save(model.state_dict(), weights)
    shifted = Schedule.from_grid(np.roll(canonical.array(), (1, 2), axis=(0, 1)))
    from ordersearch.models import translated_state

    state = torch.load(weights, weights_only=True)
    codec = Codec.from_state(shifted, translated_state(state, canonical.translation_to(shifted)))
    assert torch.equal(codec.model.masks, torch.from_numpy(shifted.masks(5)).double().reshape(16, 1, 1, 5, 5))
    img = image(64, 128)
    assert np.array_equal(codec.decompress(codec.compress(img)), codec.reconstruct(img))
    wrong = tmp_path / "wrong.pt"
    torch.save(model_for(Schedule.named("raster", 2)).state_dict(), wrong)
    from ordersearch.errors import OrdersearchError

    with pytest.raises(OrdersearchError, match="weights for 4 patch positions, the schedule has 16"):
        Codec.from_state(shifted, torch.load(wrong, weights_only=True))
    # weights of the canonical translate are moved by the codec itself; another order's weights are refused
    moved = Codec.from_state(shifted, state)
    assert torch.equal(moved.model.masks, codec.model.masks) and moved.identity == codec.identity
    with pytest.raises(OrdersearchError, match="belong to another schedule"):
        Codec.from_state(shifted, model_for(Schedule.named("raster", 4)).state_dict())
    # the command line takes the same file for the shifted schedule: the store keeps canonical weights
    from PIL import Image

    Image.fromarray(img).save(tmp_path / "in.png")
    path = save_schedule(shifted, tmp_path / "s.json")
    from ordersearch.cli import main

    assert main(["encode", str(tmp_path / "in.png"), str(tmp_path / "x.osc"), "--schedule", str(path),
                 "--weights", str(weights)]) == 0
    assert codec.decompress((tmp_path / "x.osc").read_bytes()).shape == img.shape


def test_encode_decode_cli(tmp_path, capsys):
    from PIL import Image

    schedule = SCHEDULES["checkerboard"]
    weights = tmp_path / "w.pt"
    torch.save(model_for(schedule).state_dict(), weights)
    spath = save_schedule(schedule, tmp_path / "cb.json")
    Image.fromarray(image(96, 160)).save(tmp_path / "in.png")
    common = ["--schedule", str(spath), "--weights", str(weights)]
    assert main(["encode", str(tmp_path / "in.png"), str(tmp_path / "x.osc"), *common]) == 0
    assert "bpp" in capsys.readouterr().out
    assert main(["decode", str(tmp_path / "x.osc"), str(tmp_path / "out.png"), *common]) == 0
    assert "2 decoding stages" in capsys.readouterr().out
    out = np.asarray(Image.open(tmp_path / "out.png"))
    codec = Codec.from_state(schedule, torch.load(weights, weights_only=True))
    assert np.array_equal(out, codec.reconstruct(image(96, 160)))
    (tmp_path / "bad.osc").write_bytes(b"hello")
    assert main(["decode", str(tmp_path / "bad.osc"), str(tmp_path / "o.png"), *common]) == 2
    assert "not an ordersearch bitstream" in capsys.readouterr().err
    assert main(["encode", str(tmp_path / "nope.png"), str(tmp_path / "y.osc"), *common]) == 2
    capsys.readouterr()
    assert main(["decode", str(tmp_path / "x.osc"), str(tmp_path / "out.jpg"), *common]) == 2
    assert "decode writes PNG images" in capsys.readouterr().err and not (tmp_path / "out.jpg").exists()
    assert main(["decode", str(tmp_path), str(tmp_path / "o.png"), *common]) == 2
    assert "is a folder, not a bitstream" in capsys.readouterr().err
    assert main(["encode", str(tmp_path / "in.png"), str(tmp_path / "z.osc"), "--schedule", str(spath)]) == 2
    assert "pass --train to train one" in capsys.readouterr().err


def test_weights_shipped_beside_the_schedule_file(tmp_path, capsys):
    """best.json + best.weights.pt (float16): encode and decode need no store, no --weights, no training."""
    from PIL import Image

    from ordersearch.models import ContextWeights
    from ordersearch.run import save_weights, weights_file

    schedule = SCHEDULES["lin2023"]
    spath = save_schedule(schedule, tmp_path / "best.json")
    model = model_for(schedule.canonical())
    save_weights(weights_file(spath), ContextWeights.of(model))
    assert weights_file(spath).name == "best.weights.pt"
    assert all(v.dtype == torch.float16 for v in torch.load(weights_file(spath), weights_only=True)["state"].values())
    Image.fromarray(image(64, 96)).save(tmp_path / "in.png")
    assert main(["encode", str(tmp_path / "in.png"), str(tmp_path / "x.osc"), "--schedule", str(spath)]) == 0
    assert main(["decode", str(tmp_path / "x.osc"), str(tmp_path / "out.png"), "--schedule", str(spath)]) == 0
    capsys.readouterr()
    # the same numbers as the float32 model rounded to float16 once, whatever translate it was trained for
    half = {k: v.half().float() for k, v in model.state_dict().items()}
    codec = Codec.from_state(schedule, half)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out.png")), codec.reconstruct(image(64, 96)))
    assert codec.decompress((tmp_path / "x.osc").read_bytes()).shape == (64, 96, 3)
    # a weights file left beside an edited schedule is refused in one line, not decoded into garbage
    save_schedule(Schedule.named("raster", 4), spath)
    assert main(["encode", str(tmp_path / "in.png"), str(tmp_path / "y.osc"), "--schedule", str(spath)]) == 2
    err = capsys.readouterr().err
    assert "belong to another schedule" in err and err.count("\n") == 1 and not (tmp_path / "y.osc").exists()
    weights_file(spath).write_bytes(b"not torch")
    assert main(["encode", str(tmp_path / "in.png"), str(tmp_path / "y.osc"), "--schedule", str(spath)]) == 2
    assert "best.weights.pt: not a weights file" in capsys.readouterr().err


@pytest.mark.slow
def test_file_size_matches_the_evaluation_estimate_with_a_trained_model():
    """Within 1% for y (header and z accounted separately), on a photo-like image of the test split."""
    from ordersearch.evaluation import Evaluator, TrainConfig
    from ordersearch.models import BaseCodec, builtin

    splits = builtin().split()
    schedule = Schedule.named("lin2023", 4)
    e = Evaluator(splits, TrainConfig(max_steps=150, warm_steps=150, eval_every=50), "cpu", progress=False).evaluate(
        schedule)
    with torch.no_grad():
        y = torch.from_numpy(splits.test.y[0][None]).float()
        img = (BaseCodec.load().synthesize(y)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    codec = Codec(schedule, e.model)
    encoded = codec.encode(img)
    assert abs(sum(encoded.y_bits_per_stage) / encoded.estimate_y_bits - 1) < 0.01
    assert np.array_equal(codec.decompress(encoded.data), codec.reconstruct(img))


def serial_model(seed: int = 0):
    from ordersearch.models import SerialContextModel

    torch.manual_seed(seed)
    model = SerialContextModel(64, 64, ModelConfig(prior_scale=True))
    torch.nn.init.normal_(model.weight, std=0.02)
    torch.nn.init.normal_(model.edge, std=0.5)  # the border reads the outside channel
    return model


def test_serial_codec_round_trip_one_latent_per_step(codecs):
    """The serial baseline: exact, its per-latent parameters equal the parallel pass, it refuses multistage streams."""
    from ordersearch.codec import SerialCodec
    from ordersearch.models import causal_mask

    assert causal_mask(5).sum() == 12 and causal_mask(5)[2, :2].all() and not causal_mask(5)[2, 2:].any()
    codec = SerialCodec(serial_model())
    img = image(64, 128)
    encoded = codec.encode(img)
    decoded, y = codec._decode(encoded.data)
    assert np.array_equal(decoded, codec.reconstruct(img))
    assert codec.decoding_stages(*y.shape[2:]) == y.shape[2] * y.shape[3] == 4 * 8
    # the window computation is the parallel model's: same likelihood of every latent
    prior = codec._prior(codec.base.analyze(torch.from_numpy(img).permute(2, 0, 1)[None].double().div(255))[1])
    from ordersearch.models.entropy import gaussian_likelihood

    buf = codec.model.padded_with_outside(y[0] / prior[0].clamp_min(0.11))
    parallel = codec.model(y, prior)
    for i, j in ((2, 5), (0, 1), (1, 0)):  # inside, and at the border (outside channel read)
        mean, scale = codec._params(buf, prior[0], i, j)
        direct = gaussian_likelihood(y[0, :, i, j], mean, scale)
        assert torch.allclose(direct, parallel[0, :, i, j], rtol=1e-9)
    with pytest.raises(CodecError, match="serial autoregressive"):
        codecs["raster"].decompress(encoded.data)
    with pytest.raises(CodecError, match="another schedule"):
        codec.decompress(codecs["raster"].compress(img))


def test_encode_train_checks_its_inputs_and_output_before_training(tmp_path, capsys):
    """A missing image or an unusable output is one line at once, not after minutes of training."""
    import time

    from PIL import Image

    spath = save_schedule(SCHEDULES["checkerboard"], tmp_path / "cb.json")  # no store holds its weights
    Image.fromarray(image(32, 32)).save(tmp_path / "in.png")
    cases = [([str(tmp_path / "no_such_photo.jpg"), str(tmp_path / "x.osc")], "no_such_photo.jpg"),
             ([str(tmp_path / "in.png"), str(tmp_path)], "is a folder"),
             ([str(tmp_path / "in.png"), str(tmp_path / "missing" / "x.osc")], "no folder")]
    for args, message in cases:
        start = time.time()
        assert main(["encode", *args, "--schedule", str(spath), "--train"]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "training" not in err, err
        assert time.time() - start < 10
    assert not (tmp_path / "store").exists()  # nothing was trained


def test_forged_sizes_and_extra_words_are_refused_before_synthesis(codecs):
    """A rewritten image size with a recomputed checksum, or a word appended to a stream: refused, cheaply."""
    import dataclasses
    import time

    from ordersearch.codec.bitstream import MAX_PIXELS, Header, pack, read_header, read_streams
    from ordersearch.models import STRIDE

    codec = codecs["checkerboard"]
    data = codec.compress(image(64, 64))
    header, pos = read_header(data)
    streams = [s.tobytes() for s in read_streams(data, pos, header.count)]
    c, z = header.y_shape[0], header.z_shape[0]

    def forged(side: int) -> Header:
        y = side // STRIDE * 4
        return dataclasses.replace(header, image=(side, side), y_shape=(c, y, y), z_shape=(z, y // 4, y // 4))

    start = time.time()
    with pytest.raises(CodecError, match="fewer symbols"):
        codec.decompress(pack(forged(1024), streams))
    assert time.time() - start < 20  # the 1024x1024 synthesis (gigabytes) never ran
    with pytest.raises(CodecError, match=f"1 to {MAX_PIXELS}"):
        codec.decompress(pack(forged(8192), streams))
    big_patch = bytearray(data)
    big_patch[5] = 255  # the patch byte (after magic and version)
    with pytest.raises(CodecError, match="patch size 255"):
        codec.decompress(bytes(big_patch))
    for i in range(len(streams)):
        longer = list(streams)
        longer[i] += np.uint32(12345).tobytes()
        with pytest.raises(CodecError, match="more data"):
            codec.decompress(pack(header, longer))


def test_bad_weights_files_are_one_line_errors(tmp_path, capsys):
    from PIL import Image

    schedule = SCHEDULES["checkerboard"]
    spath = save_schedule(schedule, tmp_path / "cb.json")
    Image.fromarray(image(32, 32)).save(tmp_path / "in.png")
    good = model_for(schedule).state_dict()
    other = model_for(SCHEDULES["lin2023"]).state_dict()
    cases = {
        "tensor.pt": torch.zeros(3),
        "no_masks.pt": {"weight": torch.zeros(3)},
        "int_masks.pt": {**good, "masks": 7},
        "wrong_patch.pt": other,
        "wrong_shapes.pt": {**good, "weight": torch.zeros(4, 3, 2, 5, 5)},
    }
    for name, state in cases.items():
        torch.save(state, tmp_path / name)
        code = main(["encode", str(tmp_path / "in.png"), str(tmp_path / "x.osc"), "--schedule", str(spath),
                     "--weights", str(tmp_path / name)])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and name in err, (name, err)


def test_the_committed_best_schedules_compress_out_of_the_box(tmp_path, capsys):
    """A fresh clone: results/patch*/best.json find their shipped weights; a held-out photo round-trips."""
    from pathlib import Path

    import matplotlib.cbook
    from PIL import Image

    root = Path(__file__).resolve().parents[1]
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:  # a test-split photo of the built-in set
        photo = np.asarray(Image.open(f).convert("RGB"))[:192, :256]
    Image.fromarray(photo).save(tmp_path / "in.png")
    for name in ("patch2/best.json", "patch4/best.json", "patch2/schedules/checkerboard.json"):
        spath = root / "results" / name
        assert spath.with_name(spath.stem + ".weights.pt").is_file(), name
        assert main(["encode", str(tmp_path / "in.png"), str(tmp_path / "x.osc"), "--schedule", str(spath)]) == 0
        assert main(["decode", str(tmp_path / "x.osc"), str(tmp_path / "out.png"), "--schedule", str(spath)]) == 0
        out = capsys.readouterr().out
        bpp = float(out.split(" bpp")[0].rsplit(" ", 1)[1])
        assert 0.05 < bpp < 1.5, out
        decoded = np.asarray(Image.open(tmp_path / "out.png"))
        mse = np.mean((decoded.astype(float) - photo) ** 2)
        assert 10 * np.log10(255**2 / mse) > 25  # a trained codec's reconstruction, not noise


def test_weights_describe_the_module_they_were_trained_in(tmp_path):
    """A weights file carries its model's configuration: load_context_model builds that module (non-default
    widths included) with the same outputs, the codec builds it too, and a module built otherwise is refused
    in one line, where load_state_dict alone would load prior-scale weights into a module without and measure
    nonsense."""
    from ordersearch.errors import OrdersearchError
    from ordersearch.models import ContextWeights, load_context_model, load_weights
    from ordersearch.run import save_weights, weights_file

    schedule = SCHEDULES["lin2023"]
    torch.manual_seed(1)
    trained = MultistageContextModel(schedule, 64, 64, ModelConfig(prior_scale=True, hidden=40, context_channels=24))
    torch.nn.init.normal_(trained.weight, std=0.02)
    spath = save_schedule(schedule, tmp_path / "best.json")
    save_weights(weights_file(spath), ContextWeights.of(trained))
    y = torch.randint(-3, 4, (1, 64, 8, 12)).float()
    prior = torch.rand(1, 64, 8, 12) + 0.5
    half = MultistageContextModel(schedule, 64, 64, trained.config)
    half.load_state_dict({k: v.half().float() for k, v in trained.state_dict().items()})
    for path in (spath, weights_file(spath)):
        model = load_context_model(path)
        assert model.config == trained.config and not model.training
        torch.testing.assert_close(model(y, prior), half(y, prior))
    # a translate of the schedule: the same weights, moved
    shifted = Schedule.from_grid(np.roll(schedule.array(), (1, 2), axis=(0, 1)))
    moved = load_weights(weights_file(spath)).model(shifted)
    assert moved.schedule == shifted
    codec = Codec.from_weights(schedule, load_weights(weights_file(spath)), kernel=5)
    assert codec.model.config.hidden == 40
    blind = MultistageContextModel(schedule, 64, 64, ModelConfig(hidden=40, context_channels=24))  # prior_scale unset
    with pytest.raises(OrdersearchError, match=r"prior_scale=True.*built with None.*load_context_model"):
        load_weights(weights_file(spath)).load_into(blind)
    blind.load_state_dict({k: v.float() for k, v in torch.load(weights_file(spath), weights_only=True)["state"].items()})
    assert not torch.allclose(blind(y, prior), half(y, prior))  # why the check exists: it loads, and is wrong
    # a bare state dict (what runs wrote before) still serves the codec, but cannot describe a module
    torch.save(trained.state_dict(), tmp_path / "bare.weights.pt")
    assert not load_weights(tmp_path / "bare.weights.pt").described
    with pytest.raises(OrdersearchError, match="carries no model configuration"):
        load_context_model(tmp_path / "bare.weights.pt")
    with pytest.raises(OrdersearchError, match="no weights file"):
        load_context_model(save_schedule(schedule, tmp_path / "other.json"))


def test_decode_finds_the_schedule_and_the_weights_from_the_stream(tmp_path, monkeypatch, capsys):
    """`decode IN OUT` needs nothing else: the stream records its schedule and its weights' identity, found among
    the schedule files under results/ and runs/ (the committed 4x4 best.json here); --weights alone works too;
    a stream whose weights are nowhere gets one line that says what to give."""
    from PIL import Image

    from ordersearch.models import ContextWeights
    from ordersearch.run import save_weights, weights_file

    root = Path(__file__).resolve().parents[1]
    (tmp_path / "results").symlink_to(root / "results")  # a clone's committed results
    monkeypatch.chdir(tmp_path)
    Image.fromarray(image(64, 96)).save("in.png")
    assert main(["encode", "in.png", "a.osc", "--schedule", "results/patch4/best.json"]) == 0
    assert main(["decode", "a.osc", "a.png"]) == 0
    assert main(["decode", "a.osc", "b.png", "--schedule", "results/patch4/best.json"]) == 0
    capsys.readouterr()
    assert np.array_equal(np.asarray(Image.open("a.png")), np.asarray(Image.open("b.png")))
    # a run folder of this user's, in runs/, with weights of another schedule (grouped, so nothing committed has it)
    schedule = Schedule.from_grid([[0, 1], [1, 0]]).canonical()
    other = Schedule.from_grid([[0, 1], [2, 0]])
    (tmp_path / "runs" / "mine").mkdir(parents=True)
    for s, seed in ((schedule, 0), (other, 1)):
        path = save_schedule(s, tmp_path / "runs" / "mine" / f"s{seed}.json")
        save_weights(weights_file(path), ContextWeights.of(model_for(s, seed)))
    assert main(["encode", "in.png", "c.osc", "--schedule", "runs/mine/s0.json"]) == 0
    assert main(["decode", "c.osc", "c.png"]) == 0
    assert main(["decode", "c.osc", "d.png", "--weights", "runs/mine/s0.weights.pt"]) == 0
    capsys.readouterr()
    assert np.array_equal(np.asarray(Image.open("c.png")), np.asarray(Image.open("d.png")))
    # the same schedule with other weights beside it: the identity tells them apart
    save_weights(tmp_path / "runs" / "mine" / "s0.weights.pt", ContextWeights.of(model_for(schedule, 7)))
    assert main(["decode", "c.osc", "e.png"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "schedule [[0, 1], [1, 0]]" in err and "give --schedule" in err
    assert not Path("e.png").exists()


@pytest.mark.parametrize("provenance, says", [
    ({"config": {"train": "x"}, "data": "d"}, "not readable"),
    ({"config": {"train": {"model": 3}}, "data": "d"}, "not a training protocol"),
    ({"config": {"train": {"model": {"hidden": 10**7}}}, "data": "d"}, "hidden = 10000000"),
    ({"config": {"train": {"model": {}, "batch": 10**6}}, "data": "d"}, "batch = 1000000"),
    ({"config": {"train": {"model": {}, "batch": 4096, "crop": 512}}, "data": "d"}, "far beyond memory"),
    ({"config": {"train": {"model": {}, "lr": "fast"}}, "data": "d"}, "lr = 'fast'"),
    ({"config": {"train": {"model": {}}}, "data": 5}, "not readable"),
])
def test_a_schedule_files_training_protocol_is_checked_like_any_input(provenance, says, tmp_path, capsys):
    """`encode --train` reads the protocol a schedule file's provenance names: a wrong type or a memory bomb
    (hidden = 10^7 asked for 7.7 GB) is one line before any training."""
    from PIL import Image

    path = save_schedule(Schedule.named("raster", 2), tmp_path / "s.json", provenance=provenance)
    Image.fromarray(image(64, 64)).save(tmp_path / "in.png")
    assert main(["encode", str(tmp_path / "in.png"), str(tmp_path / "o.osc"), "--schedule", str(path), "--train"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and says in err and "s.json" in err, err
