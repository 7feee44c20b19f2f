"""Fixtures shared by several test modules."""

from __future__ import annotations

import os
import subprocess

import pytest


@pytest.fixture
def postgres_url():
    """A throwaway PostgreSQL server on a Unix socket in tmp_path (skipped only where none can be started).

    ``.ci/run`` installs the server binaries when absent and sets ORDERSEARCH_REQUIRE_POSTGRES=1, so in CI
    a missing server is a failure, not a skip.
    """
    import glob
    import shutil

    binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    initdb = shutil.which("initdb") or (binaries and os.path.join(binaries[-1], "initdb"))
    if not initdb or not os.path.exists(initdb):
        if os.environ.get("ORDERSEARCH_REQUIRE_POSTGRES"):
            pytest.fail("PostgreSQL server binaries (initdb, pg_ctl) not found")
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) on this machine")
    pytest.importorskip("psycopg", reason="the psycopg driver is not installed")
    import tempfile
    from pathlib import Path

    bindir = os.path.dirname(os.path.realpath(initdb))
    root = Path(tempfile.mkdtemp(prefix="ordersearch-pg-"))  # not under pytest's root-only tmp folders
    data, sock = root / "pgdata", root / "sock"
    sock.mkdir()
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_user:  # PostgreSQL refuses to run as root
        shutil.chown(root, "postgres")
        shutil.chown(sock, "postgres")
    port = 20000 + os.getpid() % 20000
    subprocess.run([*as_user, os.path.join(bindir, "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"],
                   check=True, capture_output=True)
    subprocess.run([*as_user, os.path.join(bindir, "pg_ctl"), "-D", str(data), "-w", "-l", str(root / "pg.log"),
                    "-o", f"-k {sock} -p {port} -c listen_addresses=''", "start"], check=True, capture_output=True)
    try:
        subprocess.run([*as_user, os.path.join(bindir, "createdb"), "-h", str(sock), "-p", str(port), "-U",
                        "postgres", "ordersearch"], check=True, capture_output=True)
        yield f"postgresql+psycopg://postgres@/ordersearch?host={sock}&port={port}"
    finally:
        subprocess.run([*as_user, os.path.join(bindir, "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def _results_snapshot() -> dict:
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "results"
    return {str(p): (p.stat().st_mtime_ns, p.stat().st_mode, p.stat().st_size) for p in root.rglob("*")}


@pytest.fixture(scope="session", autouse=True)
def committed_results_stay_untouched():
    """Tests write only into temporary folders: nothing under results/ is created, changed or re-moded."""
    before = _results_snapshot()
    yield
    after = _results_snapshot()
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"the tests wrote into results/: {changed[:5]}"
