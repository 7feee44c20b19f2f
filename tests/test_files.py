"""Output files are written atomically and with the user's umask, like a plain open() would."""

import os
from pathlib import Path

import pytest

from ordersearch import Schedule, save_schedule
from ordersearch.files import atomic_write


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_get_the_users_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        written = [atomic_write(tmp_path / "a.txt", "x"), save_schedule(Schedule.named("raster", 2), tmp_path / "s.json")]
    finally:
        os.umask(old)
    assert [p.stat().st_mode & 0o777 for p in written] == [mode, mode]
    assert (tmp_path / "a.txt").read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "s.json"]  # no temporary file left behind


def test_an_output_that_is_a_device_is_written_through_never_replaced(tmp_path, capsys):
    """`encode photo.png /dev/full` once exited 0 and, as root, left a regular file where the device was. Links
    in tmp_path stand for the devices, so a regression replaces a link, never /dev/null itself."""
    import numpy as np
    from PIL import Image

    from ordersearch.cli import main
    from ordersearch.files import atomic_write

    null, full = tmp_path / "null", tmp_path / "full"
    null.symlink_to("/dev/null")
    full.symlink_to("/dev/full")
    atomic_write(null, b"bytes")
    assert null.is_symlink() and null.is_char_device()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "in.png")
    schedule = Path(__file__).resolve().parents[1] / "results" / "patch2" / "best.json"
    assert main(["encode", str(tmp_path / "in.png"), str(full), "--schedule", str(schedule)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err, err
    assert full.is_symlink() and full.is_char_device()
    assert main(["encode", str(tmp_path / "in.png"), str(null), "--schedule", str(schedule)]) == 0
    assert null.is_symlink() and null.is_char_device()
