"""Output files are written atomically and with the user's umask, like a plain open() would."""

import os

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
