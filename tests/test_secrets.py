"""No database password reaches a message or a file."""


from pathlib import Path

import pytest

from ordersearch.cli import main
from ordersearch.errors import OrdersearchError, redact
from ordersearch.schedule import Schedule
from ordersearch.schedule_io import save_schedule

SECRET = "S3cret-pw"
# port 1 on localhost: nothing listens, the driver fails at once
URL = f"postgresql+psycopg://alice:{SECRET}@127.0.0.1:1/ordersearch"


@pytest.mark.parametrize("text, expected", [
    (f"cannot open {URL}", "cannot open postgresql+psycopg://alice:***@127.0.0.1:1/ordersearch"),
    ("sqlite:///x.db and mysql://bob:p%40ss@h/db", "sqlite:///x.db and mysql://bob:***@h/db"),
    ("dbname=x user=y password=hunter2 host=z", "dbname=x user=y password=*** host=z"),
    ("postgresql://carol@host/db (no password)", "postgresql://carol@host/db (no password)"),
])
def test_redact_masks_every_url_password(text, expected):
    assert redact(text) == expected


def test_redact_masks_a_password_the_driver_quotes_alone():
    assert SECRET not in redact(f'authentication failed for "{SECRET}"', URL)


@pytest.mark.parametrize("command", [
    ["worker", "--study", "s", "--storage", URL, "--patch", "2"],
    ["worker", "--study", "s", "--storage", "sqlite:///:memory:", "--store", URL, "--patch", "2"],
    ["verify", "--store", URL, "SCHEDULE"],
])
def test_cli_errors_never_print_the_password(command, tmp_path, capsys):
    schedule = tmp_path / "raster.json"
    save_schedule(Schedule.named("raster", 2), schedule)
    code = main([str(schedule) if a == "SCHEDULE" else a for a in command])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert SECRET not in err and "alice:***@127.0.0.1" in err


def test_optuna_storage_error_is_masked():
    from ordersearch.search import Budget, OptunaSearch
    from ordersearch.search.base import FunctionScorer

    scorer = FunctionScorer(lambda order: 0.0, 2)
    with pytest.raises(OrdersearchError) as info:
        OptunaSearch(storage=URL).search(scorer, Budget(trials=1))
    assert SECRET not in str(info.value) and "alice:***@" in str(info.value)


def test_a_run_on_a_password_storage_writes_the_password_nowhere(postgres_url, tmp_path, capsys):
    import numpy as np

    from ordersearch.data.gaussian import gaussian_field
    from ordersearch.data.latents import LatentSet, save_latents

    sample = gaussian_field("separable").sample(8, 16, 16, seed=0)
    path = tmp_path / "grf.npz"
    save_latents(LatentSet.create(sample.y, split_labels=np.array([0] * 4 + [1] * 2 + [2] * 2)), path)
    url = postgres_url.replace("://postgres@", f"://postgres:{SECRET}@")  # trust auth: any password is accepted
    out = tmp_path / "out"
    assert main(["run", "--patch", "2", "--latents", str(path), "--out", str(out), "--storage", url,
                 "--max-steps", "10", "--seeds", "1", "--max-seeds", "1", "--report-seeds", "1", "--budget", "8",
                 "--quiet"]) == 0
    captured = capsys.readouterr()
    assert SECRET not in captured.out + captured.err
    files = [f for f in out.rglob("*") if f.is_file()]
    assert any(f.name == "best.json" for f in files)
    for f in files:
        assert SECRET.encode() not in f.read_bytes(), f


@pytest.mark.parametrize("command", [
    ["worker", "--study", "s", "--storage", "URL", "--patch", "2"],
    ["worker", "--study", "s", "--storage", "sqlite:///:memory:", "--store", "URL", "--patch", "2"],
    ["verify", "--store", "URL", "SCHEDULE"],
    ["compare", "--store", "URL", "SCHEDULE", "SCHEDULE"],
])
def test_a_password_of_any_characters_is_masked_in_the_error(command, tmp_path, capsys):
    """Quotes and spaces end a password for the pattern that finds URLs in free text; the CLI masks the
    password of the URLs it was given whatever it holds."""
    secret = "p\"w'x y"
    schedule = tmp_path / "raster.json"
    save_schedule(Schedule.named("raster", 2), schedule)
    url = f"postgresql+psycopg://alice:{secret}@127.0.0.1:1/ordersearch"
    code = main([url if a == "URL" else str(schedule) if a == "SCHEDULE" else a for a in command])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert secret not in err and "alice:***@127.0.0.1" in err, err


@pytest.mark.parametrize("secret", ["s3 cr\"e't"])  # a plain one is masked alike (same path)
def test_the_real_command_line_writes_the_password_nowhere(secret, postgres_url, tmp_path):
    """The console script records its command line in summary.md, search.md and every JSON it writes (under
    pytest the recorded command is empty, so this drives the real `ordersearch` executable)."""
    import shutil
    import subprocess
    import sys

    import numpy as np

    from ordersearch.data.gaussian import gaussian_field
    from ordersearch.data.latents import LatentSet, save_latents

    sample = gaussian_field("separable").sample(8, 16, 16, seed=0)
    path = tmp_path / "grf.npz"
    save_latents(LatentSet.create(sample.y, split_labels=np.array([0] * 4 + [1] * 2 + [2] * 2)), path)
    url = postgres_url.replace("://postgres@", f"://postgres:{secret}@")  # trust auth: any password is accepted
    exe = shutil.which("ordersearch") or str(Path(sys.executable).with_name("ordersearch"))
    common = ["--patch", "2", "--latents", str(path), "--storage", url, "--budget", "8", "--quiet"]
    for command in (["search", *common, "--out", str(tmp_path / "s")],
                    ["run", *common, "--out", str(tmp_path / "r"), "--max-steps", "10", "--seeds", "1",
                     "--max-seeds", "1", "--report-seeds", "1"]):
        r = subprocess.run([exe, *command], capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr
        assert secret not in r.stdout + r.stderr
    files = [f for f in tmp_path.rglob("*") if f.is_file() and f.suffix in (".md", ".json", ".csv")]
    assert {"summary.md", "search.md", "best.json"} <= {f.name for f in files}
    summary = (tmp_path / "r" / "patch2" / "summary.md").read_text()
    assert "Command: `ordersearch run --patch 2" in summary and "postgres:***@" in summary  # recorded, masked
    for f in files:
        assert secret.encode() not in f.read_bytes(), f
