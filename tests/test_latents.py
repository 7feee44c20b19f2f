"""LatentSet, latent files and their errors, fingerprints, splits."""

import numpy as np
import pytest
import torch

from ordersearch.data import LatentSet, load_latents, save_latents
from ordersearch.errors import LatentError


def make(n=5, c=3, h=6, w=7, prior=True, seed=0, **kw):
    rng = np.random.default_rng(seed)
    y = rng.integers(-5, 6, size=(n, c, h, w))
    p = rng.normal(size=(n, 2 * c, h, w)).astype(np.float32) if prior else None
    return LatentSet.create(y, p, **kw)


def ragged(n=4, seed=0):
    rng = np.random.default_rng(seed)
    ys = [rng.integers(-3, 4, size=(2, 4 + i, 5 + 2 * i)) for i in range(n)]
    ps = [rng.normal(size=(3, 4 + i, 5 + 2 * i)) for i in range(n)]
    return LatentSet.create(ys, ps, image_sizes=[(64 + 16 * i, 80 + 32 * i) for i in range(n)])


def assert_same(a: LatentSet, b: LatentSet):
    assert len(a) == len(b)
    for x, y in zip(a.y, b.y):
        assert x.dtype == np.int32 and (x == y).all()
    assert (a.prior is None) == (b.prior is None)
    if a.prior is not None:
        for x, y in zip(a.prior, b.prior):
            assert x.dtype == np.float32 and (x == y).all()
    for field in ("image_sizes", "groups", "split_labels"):
        fa, fb = getattr(a, field), getattr(b, field)
        assert (fa is None and fb is None) or (fa == fb).all()
    assert a.fingerprint == b.fingerprint


@pytest.mark.parametrize("suffix", [".npz", ".pt"])
@pytest.mark.parametrize("factory", [make, ragged])
def test_round_trip(tmp_path, suffix, factory):
    a = factory()
    path = save_latents(a, tmp_path / f"lat{suffix}")
    b = load_latents(path)
    assert_same(a, b)
    assert b.name == "lat"


def test_ragged_npz_uses_indexed_keys(tmp_path):
    path = save_latents(ragged(3), tmp_path / "r.npz")
    with np.load(path) as f:
        assert sorted(f.files) == ["image_sizes", "prior_0", "prior_1", "prior_2", "y_0", "y_1", "y_2"]


def test_pt_file_with_lists_and_whole_floats(tmp_path):
    ys = [torch.tensor(np.arange(24.0).reshape(2, 3, 4)), torch.zeros(2, 5, 5)]
    torch.save({"y": ys}, tmp_path / "l.pt")
    s = load_latents(tmp_path / "l.pt")
    assert s.y[0].dtype == np.int32 and s.y[0][1, 2, 3] == 23 and s.y[1].shape == (2, 5, 5)
    assert s.prior is None and s.num_positions == 12 + 25


def test_properties():
    s = make(n=4, c=3, h=6, w=7)
    assert len(s) == 4 and s.channels == 3 and s.prior_channels == 6 and s.num_positions == 4 * 42
    assert "4 entries" in repr(s)


def test_fingerprint_changes_with_any_value_and_not_otherwise():
    a, b = make(), make()
    assert a.fingerprint == b.fingerprint and len(a.fingerprint) == 16
    y = [v.copy() for v in a.y]
    y[3][1, 2, 4] += 1
    assert LatentSet.create(y, a.prior).fingerprint != a.fingerprint
    p = [v.copy() for v in a.prior]
    p[0][0, 0, 0] += 1e-3
    assert LatentSet.create(a.y, p).fingerprint != a.fingerprint
    assert LatentSet.create(a.y, a.prior, image_sizes=[(16, 16)] * 5).fingerprint != a.fingerprint
    assert LatentSet.create(a.y).fingerprint != a.fingerprint
    # same values, different shape: different content
    assert LatentSet.create([v.reshape(3, 7, 6) for v in a.y]).fingerprint != LatentSet.create(a.y).fingerprint
    # the name is not content
    assert LatentSet.create(a.y, a.prior, name="other").fingerprint == a.fingerprint


def test_split_is_deterministic_by_image_and_group():
    s = make(n=20)
    a, b = s.split(seed=3), s.split(seed=3)
    assert [len(p) for p in a] == [14, 3, 3]
    for pa, pb in zip(a, b):
        assert pa.fingerprint == pb.fingerprint
    assert s.split(seed=4).test.fingerprint != a.test.fingerprint
    assert a.train.name.endswith(":train")
    # entries of one group never straddle splits
    g = make(n=12, groups=np.repeat(np.arange(6), 2))
    parts = g.split(seed=1)
    seen = [set(p.groups.tolist()) for p in parts]
    assert not (seen[0] & seen[1]) and not (seen[0] & seen[2]) and not (seen[1] & seen[2])
    assert sum(len(p) for p in parts) == 12


def test_fixed_split_is_used_as_is():
    s = make(n=5, split_labels=[0, 2, 1, 0, 2])
    parts = s.split(seed=99)
    assert [len(p) for p in parts] == [2, 1, 2]
    assert (parts.test.y[0] == s.y[1]).all()


def test_split_errors():
    with pytest.raises(LatentError, match="need at least 3 images to split into train/val/test, got 2"):
        make(n=2).split()
    with pytest.raises(LatentError, match="need at least 3 images to split into train/val/test, got 2"):
        make(n=6, groups=[0, 0, 0, 1, 1, 1]).split()
    with pytest.raises(LatentError, match="the val split of 'latents' is empty"):
        make(n=3, split_labels=[0, 2, 2]).split()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(y=np.zeros((2, 3, 4))), r"y must have shape \(N, C, H, W\), got shape \(2, 3, 4\)"),
        (dict(y=[np.zeros((3, 4))]), r"y\[0\] must have shape \(C, H, W\), got shape \(3, 4\)"),
        (dict(y=[np.zeros((1, 2, 2)), np.full((1, 2, 2), 0.5)]), r"y\[1\] has non-integer values \(e.g. 0.5 at \(0, 0, 0\)\)"),
        (dict(y=[np.full((1, 2, 2), np.nan)]), r"y\[0\] has non-integer values"),
        (dict(y=[np.zeros((1, 2, 2), dtype=bool)]), r"y\[0\] must hold integers, got dtype bool"),
        (dict(y=[np.zeros((1, 2, 2)), np.zeros((2, 2, 2))]), r"y\[1\] has 2 channels but y\[0\] has 1"),
        (dict(y=[]), "y holds no latents"),
        (dict(y=[np.zeros((1, 0, 2))]), r"y\[0\] is empty"),
        (dict(y=np.zeros((1, 1, 2, 2)), prior=np.full((1, 1, 2, 2), np.inf)), r"prior\[0\] contains NaN or inf"),
        (dict(y=np.zeros((1, 1, 4, 4)), prior=np.zeros((1, 2, 2, 2))), r"prior\[0\] is 2x2 but y\[0\] is 4x4"),
        (dict(y=np.zeros((2, 1, 4, 4)), prior=np.zeros((1, 2, 4, 4))), "prior has 1 entries but y has 2"),
        (dict(y=np.zeros((1, 1, 4, 4)), image_sizes=[[4, 4, 4]]), r"image_sizes must be an integer array of shape \(1, 2\)"),
        (dict(y=np.zeros((1, 1, 4, 4)), image_sizes=[[0, 4]]), r"image_sizes must be positive"),
        # sizes of 2^32 overflowed the pixel count to 0 (ZeroDivisionError); int64-max gave 1567 bpp, exit 0
        (dict(y=np.zeros((1, 1, 4, 4)), image_sizes=[[2**32, 2**32]]), r"image_sizes\[0\] = .* does not fit latent 0"),
        (dict(y=np.zeros((1, 1, 4, 4)), image_sizes=[[64, 2]]), r"covers 1 to 256 pixels per side"),
        (dict(y=np.zeros((1, 1, 4, 4)), split_labels=[3]), r"split must hold 0 \(train\), 1 \(val\) or 2 \(test\)"),
    ],
)
def test_create_errors(kwargs, message):
    with pytest.raises(LatentError, match=message):
        LatentSet.create(**kwargs)


def test_file_errors_name_the_file_and_problem(tmp_path):
    def err(path):
        with pytest.raises(LatentError) as e:
            load_latents(path)
        return str(e.value)

    p = tmp_path / "empty.npz"
    p.write_bytes(b"")
    assert err(p) == f"{p}: empty file"
    p = tmp_path / "junk.npz"
    p.write_bytes(b"not a zip at all")
    assert err(p).startswith(f"{p}: cannot read as .npz")
    p = tmp_path / "junk.pt"
    p.write_bytes(b"\x00\x01garbage")
    assert err(p).startswith(f"{p}: cannot read as .pt")
    p = tmp_path / "noy.npz"
    np.savez(p, prior=np.zeros((1, 1, 2, 2)))
    assert err(p) == f"{p}: no 'y' array (expected 'y' or 'y_0', 'y_1', ...)"
    p = tmp_path / "gap.npz"
    np.savez(p, y_0=np.zeros((1, 2, 2)), y_2=np.zeros((1, 2, 2)))
    assert err(p) == f"{p}: y_0, y_1, ... must be numbered without gaps"
    p = tmp_path / "nothing.npz"
    np.savez(p)
    assert err(p) == f"{p}: the file holds no arrays"
    p = tmp_path / "frac.npz"
    np.savez(p, y=np.full((1, 1, 2, 2), 1.25))
    assert err(p) == f"{p}: y[0] has non-integer values (e.g. 1.25 at (0, 0, 0))"
    p = tmp_path / "list.pt"
    torch.save([1, 2], p)
    assert err(p) == f"{p}: a .pt latent file must hold a dict, got list"
    assert err(tmp_path / "missing.npz") == f"{tmp_path / 'missing.npz'}: no such file"
    p = tmp_path / "lat.txt"
    p.write_text("1 2 3")
    assert err(p) == f"{p}: unknown latent file type '.txt' (use .npz or .pt)"
    with pytest.raises(LatentError, match="unknown latent file type"):
        save_latents(make(), tmp_path / "out.csv")


def test_builtin_fingerprint_does_not_depend_on_thread_count():
    """Stored evaluations are keyed by the data fingerprint: it must be the same on every machine."""
    import os
    import subprocess
    import sys

    code = "from ordersearch.models import builtin; print(builtin().fingerprint)"
    prints = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={**os.environ, "OMP_NUM_THREADS": str(t), "MKL_NUM_THREADS": str(t)}).stdout
              for t in (1, 2)}
    assert len(prints) == 1 and len(prints.pop().strip()) == 16


def test_hostile_latent_files_are_one_line_errors(tmp_path):
    """Overflowing minima, zip bombs, lying .npy headers, flipped bytes in .pt, odd tensors, keys and paths."""
    import os
    import zipfile

    def err(path):
        with pytest.raises(LatentError) as e:
            load_latents(path)
        return str(e.value)

    for dtype in (np.int64, np.int32):  # abs() of the smallest value overflows to itself
        p = tmp_path / f"min_{np.dtype(dtype).name}.npz"
        y = np.zeros((1, 1, 4, 4), dtype=dtype)
        y[0, 0, 0, 0] = np.iinfo(dtype).min
        np.savez(p, y=y)
        assert "values out of range" in err(p)

    bomb = tmp_path / "bomb.npz"  # a few hundred kB that unpack to 400 MB
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("y.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "<i4", "fortran_order": False,
                                                     "shape": (100, 1, 1000, 1000)})
            chunk = bytes(4 * 10**6)
            for _ in range(100):
                f.write(chunk)
    assert bomb.stat().st_size < 2 * 10**6 and "more than 100 times its size" in err(bomb)

    liar = tmp_path / "liar.npz"  # a .npy header that declares 40 GB in a tiny member
    with zipfile.ZipFile(liar, "w") as z:
        with z.open("y.npy", "w") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "<i4", "fortran_order": False,
                                                     "shape": (10**4, 1, 1000, 1000)})
    assert "its header declares 40000000000 bytes" in err(liar)

    good = tmp_path / "good.pt"
    save_latents(LatentSet.create(np.arange(64).reshape(1, 1, 8, 8)), good)
    data = good.read_bytes()
    payload = data.index((np.arange(64, dtype=np.int32)).tobytes())
    flipped = bytearray(data)
    flipped[payload + 4 * 10] ^= 1  # one value of y changes
    bad = tmp_path / "flipped.pt"
    bad.write_bytes(bytes(flipped))
    assert "checksum" in err(bad)

    for name, value in [("bf16", torch.zeros(1, 1, 4, 4, dtype=torch.bfloat16)),
                        ("sparse", torch.zeros(1, 1, 4, 4).to_sparse()),
                        ("meta", torch.zeros(1, 1, 4, 4, device="meta"))]:
        p = tmp_path / f"{name}.pt"
        torch.save({"y": value}, p)
        assert "must be a dense tensor" in err(p)
    p = tmp_path / "ragged.pt"
    torch.save({"y": [[[[1, 2], [3]]]]}, p)
    assert "is not a rectangular array" in err(p)
    p = tmp_path / "intkeys.pt"
    torch.save({0: torch.zeros(1, 1, 4, 4)}, p)
    assert err(p).endswith("the names of the arrays must be strings")
    p = tmp_path / "superscript.npz"
    np.savez(p, **{"y_0": np.zeros((1, 4, 4)), "y_²": np.zeros((1, 4, 4))})
    assert load_latents(p).y[0].shape == (1, 4, 4)  # y_² is not entry 2 of y

    loop = tmp_path / "loop.npz"
    loop.symlink_to(loop)
    assert "cannot read" in err(loop)
    fifo = tmp_path / "fifo.npz"
    os.mkfifo(fifo)
    assert err(fifo).endswith("not a regular file (a FIFO, device or socket is not read)")


def test_a_small_file_that_unpacks_a_thousandfold_is_refused_before_loading(tmp_path):
    """A 262 KB .npz holding 243 MB of int8 y reached 2.2 GB once converted, and died in the allocator."""
    path = tmp_path / "bomb.npz"
    np.savez_compressed(path, y_0=np.zeros((1, 9000, 9000), dtype=np.int8))
    assert path.stat().st_size < 2**20
    with pytest.raises(LatentError, match="more than 100 times its size"):
        load_latents(path)
