"""Hostile inputs through the real command line, run by ``test_hostile.py`` in a subprocess under a memory limit.

Each kind (schedule files, latent files, bitstreams forged with a valid
checksum, codec and weights files, paths) gets ``--examples`` hypothesis cases, fresh ones each time from
``--seed`` (random unless given; printed first, so a failure is replayed with it); every case is one
``ordersearch`` command in this process, which must end with exit 0, or with
exit 1 or 2 and exactly one line on stderr: never a traceback, never over
``--seconds``. What a command writes is checked too: after exit 0 its output is a regular, non-empty file
(a PNG that opens, a bitstream with the format's magic bytes); after an error there is none. The subprocess's address space is capped (``RLIMIT_AS``), so an
input that makes the toolkit allocate gigabytes fails here as a crash instead
of filling the machine; the caller also checks the peak resident memory.

    python tests/hostile_inputs.py KIND --examples N --work DIR
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import struct
import sys
import time
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ordersearch.cli import main

SECONDS = 10.0
SEED: int | None = None  # set from --seed before any case runs


def _regular(path: Path) -> bool:
    """A regular file that is not a link (a name too long or a loop is no file)."""
    try:
        return path.is_file() and not path.is_symlink()
    except OSError:
        return False


def _output(argv: list[str]) -> Path | None:
    """The file a command writes, if it writes one of the cases' own outputs (``out.osc``, ``out.png``; the
    paths kind aims outputs at fixtures and odd places, which are not removed)."""
    if argv[0] in ("encode", "decode") and Path(argv[2]).name in ("out.osc", "out.png"):
        return Path(argv[2])
    return None


def check(argv: list[str]) -> None:
    """One command: exit 0, or exit 1/2 with one stderr line; no traceback; within SECONDS; after exit 0 its
    output is what it says, after an error there is none."""
    written = _output(argv)
    if written is not None and _regular(written):
        written.unlink()
    out, err = io.StringIO(), io.StringIO()
    start = time.time()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:  # argparse's own usage errors
            code = e.code
    seconds = time.time() - start
    text = err.getvalue()
    assert "Traceback" not in text, (argv, text)
    assert code in (0, 1, 2), (argv, code, text)
    if code:
        assert len(text.strip().splitlines()) == 1, (argv, text)
    assert seconds < SECONDS, (argv, seconds)
    if written is not None:
        if code:
            assert not _regular(written), (argv, "an error left an output file", text)
        elif _regular(written):
            head = written.read_bytes()[:8]
            assert head[:4] == (b"OSMC" if argv[0] == "encode" else b"\x89PNG"), (argv, head)


def _picture(path: Path, shape: tuple[int, int] = (48, 64)) -> None:
    """A small photo-like RGB image to encode."""
    from PIL import Image

    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((*shape, 3)) * 255).astype(np.uint8)).save(path)


def run_cases(test, examples: int) -> None:
    from hypothesis import seed

    test = settings(max_examples=examples, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))(test)
    seed(SEED)(test)()


# ---------------------------------------------------------------------------------------- schedules
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=30)
grids = st.lists(st.lists(st.one_of(st.integers(-1, 20), st.integers(-10**30, 10**30), st.floats()),
                          min_size=0, max_size=5), max_size=5)
schedule_objects = st.one_of(
    json_values, grids,
    st.fixed_dictionaries(
        {"format": st.sampled_from(["ordersearch.schedule", "x"]), "version": st.sampled_from([1, 2, 1.0, "1"]),
         "stages": grids},
        optional={"patch": st.one_of(st.integers(-1, 2**64), st.floats()),
                  "kernel": st.one_of(st.integers(-3, 2**64), st.floats(), st.text(max_size=3)),
                  "name": json_values, "metrics": json_values, "provenance": json_values}))


def schedules(work: Path, examples: int) -> None:
    path = work / "s.json"

    picture, junk = work / "picture.png", work / "junk.osc"
    _picture(picture)
    junk.write_bytes(b"OSMC junk")

    @given(st.one_of(schedule_objects.map(lambda o: json.dumps(o).encode()), st.binary(max_size=200)),
           st.sampled_from(["validate", "show", "encode", "decode"]))
    def case(data: bytes, command: str) -> None:
        path.write_bytes(data)
        # encode and decode read the whole file, provenance included (where its weights are kept)
        check({"encode": ["encode", str(picture), str(work / "out.osc"), "--schedule", str(path)],
               "decode": ["decode", str(junk), str(work / "out.png"), "--schedule", str(path)]}.get(
            command, [command, str(path)]))

    run_cases(case, examples)


# ---------------------------------------------------------------------------------------- latent files
arrays = st.one_of(
    st.builds(lambda shape, dtype: np.zeros(shape, dtype=dtype),
              st.lists(st.integers(0, 5), max_size=5).map(tuple),
              st.sampled_from([np.int8, np.int32, np.int64, np.uint64, np.float16, np.float32, np.float64,
                               np.bool_, np.complex64])),
    st.builds(lambda v, dtype: np.full((2, 1, 6, 6), v, dtype=dtype),
              st.sampled_from([0, 1, -1, 2**31 - 1, -2**31, 2**62, -2**63]), st.sampled_from([np.int64])),
    st.builds(lambda v: np.full((2, 1, 6, 6), v), st.floats(allow_nan=True, allow_infinity=True)),
    st.builds(lambda s: np.array([s]), st.text(max_size=4)))
keys = st.sampled_from(["y", "y_0", "y_1", "y_²", "prior", "prior_0", "image_sizes", "groups", "split", "0", "x"])


def _npy_header_bomb(shape: tuple[int, ...]) -> bytes:
    """A .npz whose one member's .npy header declares ``shape`` of float64 with almost no data."""
    header = f"{{'descr': '<f8', 'fortran_order': False, 'shape': {shape}, }}".encode()
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    npy = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + b"\0" * 64
    buf = io.BytesIO()
    import zipfile

    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("y_0.npy", npy)
    return buf.getvalue()


def latents(work: Path, examples: int) -> None:
    schedule = work / "raster.json"
    schedule.write_text('{"format": "ordersearch.schedule", "version": 1, "stages": [[0, 1], [2, 3]]}')

    def write_npz(contents: dict) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, **contents)
        return buf.getvalue()

    files = st.one_of(
        st.dictionaries(keys, arrays, max_size=5).map(write_npz).map(lambda b: (".npz", b)),
        st.binary(max_size=300).map(lambda b: (".npz", b)),
        st.binary(max_size=300).map(lambda b: (".pt", b)),
        st.lists(st.integers(1, 10**6), min_size=4, max_size=4).map(
            lambda s: (".npz", _npy_header_bomb(tuple(s)))),
        st.tuples(st.dictionaries(keys, arrays, min_size=1, max_size=3).map(write_npz), st.integers(0, 10**6),
                  st.integers(0, 255)).map(lambda t: (".npz", _flip(*t))))

    train = ["--max-steps", "1", "--device", "cpu", "--quiet"]
    # every command that reads latents, one drawn per case; each reads them before any work (a step if fine)
    commands = {
        "verify": lambda p: ["verify", str(schedule), "--latents", p, "--seeds", "1", "--store", str(work / "store"),
                             *train],
        "compare": lambda p: ["compare", str(schedule), str(schedule), "--latents", p, "--seeds", "1", "--store",
                              str(work / "store"), *train],
        "search": lambda p: ["search", "--patch", "2", "--latents", p, "--out", str(work / "s"), "--budget", "2",
                             "--strategies", "dp", "--device", "cpu", "--quiet"],
        "run": lambda p: ["run", "--patch", "2", "--latents", p, "--out", str(work / "r"), "--budget", "2",
                          "--strategies", "dp", "--seeds", "1", "--max-seeds", "1", "--report-seeds", "1", *train],
        "worker": lambda p: ["worker", "--study", "s", "--storage", f"sqlite:///{work / 'w.db'}", "--patch", "2",
                             "--latents", p, "--trials", "1", *train]}

    @given(files, st.sampled_from(sorted(commands)))
    def case(file: tuple[str, bytes], command: str) -> None:
        suffix, data = file
        path = work / f"latents{suffix}"
        path.write_bytes(data)
        check(commands[command](str(path)))

    run_cases(case, examples)


def _flip(data: bytes, at: int, value: int) -> bytes:
    b = bytearray(data)
    b[at % len(b)] = value
    return bytes(b)


# ---------------------------------------------------------------------------------------- bitstreams
def bitstreams(work: Path, examples: int) -> None:
    import dataclasses

    import torch
    from PIL import Image

    from ordersearch import Schedule, save_schedule
    from ordersearch.codec import MultistageCodec
    from ordersearch.codec.bitstream import pack, read_header, read_streams
    from ordersearch.models.multistage import ModelConfig, MultistageContextModel

    torch.manual_seed(0)
    schedule = Schedule.named("checkerboard", 2)
    model = MultistageContextModel(schedule, 64, 64, ModelConfig(prior_scale=True))
    torch.nn.init.normal_(model.weight, std=0.02)
    weights, spath = work / "cb.pt", save_schedule(schedule, work / "cb.json")
    torch.save(model.state_dict(), weights)
    rng = np.random.default_rng(0)
    picture = (rng.random((48, 64, 3)) * 255).astype(np.uint8)
    good = MultistageCodec(schedule, model).compress(picture)
    header, pos = read_header(good)
    streams = [s.tobytes() for s in read_streams(good, pos, header.count)]
    fields = {"image": st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)),
              "y_shape": st.tuples(st.integers(0, 2**16 - 1), st.integers(0, 2**16 - 1), st.integers(0, 2**16 - 1)),
              "z_shape": st.tuples(st.integers(0, 2**16 - 1), st.integers(0, 2**16 - 1), st.integers(0, 2**16 - 1)),
              "y_range": st.integers(0, 2**16 - 1), "z_range": st.integers(0, 2**16 - 1),
              "kernel": st.integers(0, 255), "patch": st.integers(0, 255)}
    c, nz = header.y_shape[0], header.z_shape[0]

    def consistent(side: int, y_range: int, z_range: int) -> dict:
        """A forged image size with the latent shapes it implies: only the streams can betray it."""
        y = (side + 63) // 64 * 4
        return {"image": (side, side), "y_shape": (c, y, y), "z_shape": (nz, y // 4, y // 4), "y_range": y_range,
                "z_range": z_range}

    def forged(changes: dict, extra: list[bytes]) -> bytes:
        h = dataclasses.replace(header, **changes)
        if "patch" in changes:
            h = dataclasses.replace(h, grid=np.zeros((h.patch, h.patch), dtype=np.uint8))
        try:  # a valid checksum over the forged header: only the decoder's own checks can refuse it
            return pack(h, streams + extra)
        except (struct.error, ValueError):
            return good

    streams_changes = st.lists(st.binary(min_size=4, max_size=4), max_size=2)
    inputs = st.one_of(
        st.fixed_dictionaries({}, optional=fields).flatmap(lambda d: streams_changes.map(lambda e: forged(d, e))),
        st.builds(consistent, st.integers(1, 4096), st.integers(1, 4095), st.integers(1, 4095)).map(
            lambda d: forged(d, [])),
        st.tuples(st.integers(0, len(good) - 1), st.integers(0, 255)).map(lambda t: _flip(good, *t)),
        st.integers(0, len(good)).map(lambda n: good[:n]),
        st.binary(max_size=200))

    @given(inputs)
    def case(data: bytes) -> None:
        path = work / "in.osc"
        path.write_bytes(data)
        check(["decode", str(path), str(work / "out.png"), "--schedule", str(spath), "--weights", str(weights)])

    run_cases(case, examples)
    Image.fromarray(picture).save(work / "picture.png")  # the genuine stream still decodes
    (work / "in.osc").write_bytes(good)
    check(["decode", str(work / "in.osc"), str(work / "out.png"), "--schedule", str(spath), "--weights",
           str(weights)])
    assert (work / "out.png").is_file()


# ---------------------------------------------------------------------------------------- model files
def models(work: Path, examples: int) -> None:
    """Forged codec files (``encode --codec``) and context-model weights (``--weights``, the sidecar)."""
    import torch

    from ordersearch import Schedule, save_schedule
    from ordersearch.codec.codec_file import save_codec
    from ordersearch.models import BaseCodec, BaseCodecConfig, ModelConfig, MultistageContextModel
    from ordersearch.models.joint import JointModel, context_model

    schedule = Schedule.named("checkerboard", 2)
    spath = save_schedule(schedule, work / "cb.json")
    torch.manual_seed(0)
    base = BaseCodec(BaseCodecConfig(N=8, M=8, Nz=8))  # a small genuine codec: forgeries of it stay small
    context = context_model(schedule, base.config)
    torch.nn.init.normal_(context.weight, std=0.02)
    save_codec(work / "good.pt", schedule, JointModel(base, context))
    codec_blob = torch.load(work / "good.pt", weights_only=True)
    small = MultistageContextModel(schedule, 64, 64, ModelConfig(context_channels=2, hidden=8, prior_scale=True))
    weights_blob = {k: v.clone() for k, v in small.state_dict().items()}  # the bundled codec's width, 2 features
    _picture(work / "picture.png")
    good_bytes = (work / "good.pt").read_bytes()
    tensors = st.one_of(
        st.lists(st.integers(0, 6), max_size=5).map(lambda shape: torch.zeros(shape)),
        st.sampled_from([torch.tensor(float("nan")), torch.full((3,), float("inf")), torch.zeros(2, dtype=torch.int64),
                         torch.zeros(0)]))

    def forge(blob: dict, nested: str | None, key: str, value) -> dict:
        blob = dict(blob)
        if nested is None:
            blob[key] = value
        else:
            inner = dict(blob[nested])
            name = sorted(inner)[hash(key) % len(inner)]
            if value is None:
                inner.pop(name)
            elif isinstance(value, torch.Tensor) and value.numel() == 1 and value.isnan():
                inner[name] = torch.full_like(inner[name], float("nan"))  # right shape, poisoned values
            else:
                inner[name] = value
            blob[nested] = inner
        return blob

    def saved(blob) -> bytes:
        buf = io.BytesIO()
        torch.save(blob, buf)
        return buf.getvalue()

    codec_files = st.one_of(
        st.builds(lambda k, v: saved(forge(codec_blob, None, k, v)), st.sampled_from(sorted(codec_blob)),
                  json_values | tensors),
        st.builds(lambda n, k, v: saved(forge(codec_blob, n, k, v)), st.sampled_from(["base", "context"]),
                  st.text(max_size=4), st.none() | tensors),
        st.tuples(st.integers(0, len(good_bytes) - 1), st.integers(0, 255)).map(lambda t: _flip(good_bytes, *t)),
        st.integers(0, len(good_bytes)).map(lambda n: good_bytes[:n]),
        st.binary(max_size=200))
    weight_files = st.one_of(
        st.builds(lambda k, v: saved(forge({"w": weights_blob}, "w", k, v)["w"]), st.text(max_size=4),
                  st.none() | tensors),
        st.builds(lambda v: saved(v), json_values),
        st.binary(max_size=200))

    # streams made with the genuine files, for the decoders handed forged ones
    torch.save(weights_blob, work / "good_w.pt")
    check(["encode", str(work / "picture.png"), str(work / "by_codec.osc"), "--codec", str(work / "good.pt")])
    check(["encode", str(work / "picture.png"), str(work / "by_weights.osc"), "--schedule", str(spath), "--weights",
           str(work / "good_w.pt")])
    photos = work / "photos"
    for split in ("train", "val", "test"):
        (photos / split).mkdir(parents=True, exist_ok=True)
        _picture(photos / split / "p.png", (64, 64))
    c, w = str(work / "c.pt"), str(work / "w.pt")
    # every command that reads a codec file or weights, one drawn per case
    codec_commands = {
        "encode": ["encode", str(work / "picture.png"), str(work / "out.osc"), "--codec", c],
        "decode": ["decode", str(work / "by_codec.osc"), str(work / "out.png"), "--codec", c],
        "codec eval": ["codec", "eval", c, "--photos", str(photos), "--out", str(work / "eval"), "--resamples", "10",
                       "--quiet"],
        "codec train": ["codec", "train", "--schedule", str(spath), "--base", c, "--photos", str(photos), "--out",
                        str(work / "trained.pt"), "--max-steps", "1", "--crop", "64", "--batch", "1", "--device",
                        "cpu", "--quiet"],
        "search --codec": ["search", "--patch", "2", "--codec", c, "--photos", str(photos), "--out",
                           str(work / "search"), "--strategies", "dp", "--device", "cpu", "--quiet"]}
    weight_commands = {
        "encode": ["encode", str(work / "picture.png"), str(work / "out.osc"), "--schedule", str(spath), "--weights",
                   w],
        "decode": ["decode", str(work / "by_weights.osc"), str(work / "out.png"), "--weights", w]}

    @given(codec_files, weight_files, st.sampled_from(sorted(codec_commands)), st.sampled_from(sorted(weight_commands)))
    def case(codec_bytes: bytes, weight_bytes: bytes, codec_command: str, weight_command: str) -> None:
        (work / "c.pt").write_bytes(codec_bytes)
        (work / "w.pt").write_bytes(weight_bytes)
        check(codec_commands[codec_command])
        check(weight_commands[weight_command])

    run_cases(case, examples)
    check(["encode", str(work / "picture.png"), str(work / "out.osc"), "--codec", str(work / "good.pt")])
    assert (work / "out.osc").is_file()  # the genuine file still compresses


# ---------------------------------------------------------------------------------------- paths
def paths(work: Path, examples: int) -> None:
    schedule = work / "raster.json"
    schedule.write_text('{"format": "ordersearch.schedule", "version": 1, "stages": [[0, 1], [2, 3]]}')
    a_file = work / "file"
    a_file.write_text("x")
    fifo = work / "fifo"
    if not fifo.exists():
        os.mkfifo(fifo)
    for name, target in (("loop_a", "loop_b"), ("loop_b", "loop_a"), ("zero", "/dev/zero"),
                         ("dangling", "no/such/target")):
        if not (work / name).is_symlink():
            (work / name).symlink_to(target)
    readonly = work / "readonly"
    readonly.mkdir(exist_ok=True)
    readonly.chmod(0o555)
    places = st.sampled_from([work, a_file, a_file / "inside", fifo, work / "loop_a", work / "zero",
                              work / "dangling", work / "missing" / "deeper", readonly / "x", Path("/proc/self"),
                              Path("/proc/version"), Path("/dev/null"), Path("/")])
    names = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="/\0"), min_size=1,
                    max_size=12)
    anywhere = st.one_of(places, st.tuples(places, names).map(lambda t: t[0] / t[1]),
                         st.integers(256, 5000).map(lambda n: work / ("n" * n)))
    commands = st.sampled_from([
        lambda p: ["validate", str(p)],
        lambda p: ["show", str(p)],
        lambda p: ["decode", str(p), str(work / "out.png"), "--schedule", str(schedule)],
        lambda p: ["decode", str(a_file), str(p), "--schedule", str(schedule)],
        lambda p: ["encode", str(p), str(work / "out.osc"), "--schedule", str(schedule)],
        lambda p: ["latents", "--images", str(p), "--out", str(work / "l.npz"), "--device", "cpu"],
        lambda p: ["run", "--patch", "2", "--latents", str(p), "--out", str(work / "runs"), "--quiet"],
        lambda p: ["plot", str(p)],
        lambda p: ["verify", str(p), "--store", str(work / "store"), "--quiet"],
    ])

    @given(commands, anywhere)
    def case(command, path: Path) -> None:
        check(command(path))

    run_cases(case, examples)


KINDS = {"schedules": schedules, "latents": latents, "bitstreams": bitstreams, "models": models, "paths": paths}

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=list(KINDS))
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--seed", type=int, help="hypothesis seed (default: a fresh one, printed)")
    args = parser.parse_args()
    import random

    SEED = args.seed if args.seed is not None else random.randrange(2**32)
    print(f"hostile seed {SEED} (replay: python tests/hostile_inputs.py {args.kind} --examples {args.examples} "
          f"--work DIR --seed {SEED})", flush=True)
    import torch

    torch.set_num_threads(1)
    KINDS[args.kind](args.work, args.examples)
    print(f"{args.kind}: {args.examples} cases, every one a clean exit")
    # this process's own peak (ru_maxrss would also count the parent's memory at fork time)
    from ordersearch.files import peak_memory_bytes

    print("peak kB", peak_memory_bytes() // 1024)
    sys.exit(0)
