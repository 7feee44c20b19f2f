"""The command line: show, validate, one-line errors and exit codes."""

import json
import subprocess
import sys

import pytest

from ordersearch import Schedule, save_schedule
from ordersearch.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """The real console entry point, in a fresh interpreter."""
    return subprocess.run([sys.executable, "-m", "ordersearch", *args], capture_output=True, text=True, timeout=60)


def test_show_named_lin2023(capsys):
    assert main(["show", "--named", "lin2023", "--patch", "4"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "lin2023 (4x4, 16 stages, permutation order)"
    assert out[2:6] == ["   0  2  5  4", "   1  7 11  8", "   6 12 13 10", "   3 14 15  9"]
    assert out[6] == "decoded neighbours in the 5x5 window, per position (total 192):"
    assert out[7] == "   0  2  8  5"  # (0,0) sees nothing, (0,2) sees 8 window offsets
    assert "canonical form under translations (exact symmetry):" in out
    assert "canonical form under dihedral (approximate symmetry on images):" in out


def test_show_file_uses_its_kernel_and_name(tmp_path, capsys):
    path = save_schedule(Schedule.named("checkerboard", 2), tmp_path / "cb.json", kernel=3, name="cb")
    assert main(["show", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "cb (2x2, 2 stages, grouped schedule)"
    assert out[4] == "decoded neighbours in the 3x3 window, per position (total 8):"
    assert out[5:7] == ["  0 4", "  4 0"]


def test_show_bare_pattern_file(tmp_path, capsys):
    path = tmp_path / "p.json"
    path.write_text("[[0, 1], [2, 3]]")
    assert main(["show", str(path), "--kernel", "3"]) == 0
    assert capsys.readouterr().out.startswith(f"{path} (2x2, 4 stages, permutation order)")


@pytest.mark.parametrize(
    "args, message",
    [
        (["show"], "ordersearch: error: give either a schedule FILE or --named NAME --patch N"),
        (["show", "--named", "raster"], "ordersearch: error: --named needs --patch N"),
        (["show", "--named", "checkerboard", "--patch", "5"],
         "ordersearch: error: checkerboard needs an even patch size (it would not tile), got 5"),
        (["show", "--named", "raster", "--patch", "3", "--kernel", "4"],
         "ordersearch: error: kernel must be a positive odd integer, got 4"),
        (["show", "nope.json"], "ordersearch: error: nope.json: no such file"),
    ],
)
def test_input_errors_are_one_line_exit_2(args, message, capsys):
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.err == message + "\n" and captured.out == ""


def test_validate_reports_each_file(tmp_path, capsys):
    good = save_schedule(Schedule.named("lin2023", 4), tmp_path / "good.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "ordersearch.schedule", "version": 1, "stages": [[0, 1], [3, 3]]}))
    assert main(["validate", str(good)]) == 0
    assert capsys.readouterr().out == f"OK {good}: 4x4, 16 stages, permutation order, kernel 5\n"
    assert main(["validate", str(good), str(bad), str(tmp_path / "none.json")]) == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [f"OK {good}: 4x4, 16 stages, permutation order, kernel 5"]
    assert captured.err.splitlines() == [
        f"INVALID {bad}: stages must use every stage 0..3, but stage 2 is missing",
        f"INVALID {tmp_path / 'none.json'}: no such file",
    ]


def test_console_script_usage_error_is_one_line():
    r = run_cli("frobnicate")
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1
    assert r.stderr.startswith("ordersearch: error: argument command: invalid choice: 'frobnicate'")
    r = run_cli("show", "--named", "lin2023", "--patch", "four")
    assert r.returncode == 2
    assert r.stderr == ("ordersearch show: error: argument --patch: invalid int value: 'four' "
                        "(see ordersearch show --help)\n")


def test_console_script_no_traceback_unless_debug(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    r = run_cli("show", str(bad))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith(f"ordersearch: error: {bad}: not valid JSON")
    for args in (["--debug", "show", str(bad)], ["show", str(bad), "--debug"]):  # before or after the command
        r = run_cli(*args)
        assert r.returncode != 0 and "Traceback" in r.stderr and "ScheduleError" in r.stderr


def test_warnings_never_bury_a_one_line_error(tmp_path, monkeypatch, capsys):
    """A warning raised on the way to an error is dropped; on success it is printed once, after the output."""
    import warnings

    import ordersearch.cli.schedules as cli
    from ordersearch import Schedule, save_schedule

    good = save_schedule(Schedule.named("raster", 2), tmp_path / "raster.json")
    real = cli.load_schedule

    def loader(path):
        for _ in range(3):
            warnings.warn("odd\nthing", UserWarning)
        return real(path)

    monkeypatch.setattr(cli, "load_schedule", loader)
    assert main(["show", str(tmp_path / "missing.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ordersearch: error:") and "odd" not in err
    assert main(["show", str(good)]) == 0
    captured = capsys.readouterr()
    assert captured.err == "ordersearch: warning: odd\n" and "decoding stage" in captured.out


def test_unprintable_file_names_are_escaped_in_the_one_error_line(tmp_path, capsys):
    name = tmp_path / "a\nb\x1b[31mc\x1e.json"
    assert main(["show", str(name)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "\x1b" not in err and "a\\nb\\x1b[31mc\\x1e.json" in err, err


def test_run_writes_into_runs_not_into_the_committed_results():
    from ordersearch.cli import build_parser
    from ordersearch.run import RunConfig

    assert build_parser().parse_args(["run", "--patch", "2"]).out.name == "runs" and RunConfig(patch=2).out.name == "runs"
    assert build_parser().parse_args(["verify", "x.json"]).store == "runs/store"


def test_console_script_show_and_version():
    r = run_cli("show", "--named", "quadtree", "--patch", "2")
    assert r.returncode == 0 and r.stdout.splitlines()[2:4] == ["  0 2", "  3 1"]
    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.startswith("ordersearch ")


def test_help_needs_no_torch_and_its_lists_match_the_registries():
    """`ordersearch --help` builds every subcommand's parser without importing torch (a second less to wait)."""
    code = ("import sys; from ordersearch.cli import build_parser; build_parser(); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr
    from ordersearch.defaults import DEFAULT_STRATEGIES, ESTIMATOR_NAMES
    from ordersearch.estimators import ESTIMATORS
    from ordersearch.search import STRATEGY_NAMES

    assert tuple(ESTIMATORS) == ESTIMATOR_NAMES and set(DEFAULT_STRATEGIES) <= set(STRATEGY_NAMES)


def test_every_option_of_every_command_has_help_text():
    import argparse

    from ordersearch.cli import build_parser

    def parsers(parser):  # the parser and every command below it, ``codec train`` included
        yield parser
        for a in parser._actions:
            if isinstance(a, argparse._SubParsersAction):
                for child in a.choices.values():
                    yield from parsers(child)

    for command in parsers(build_parser()):
        for action in command._actions:
            if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                assert action.help, f"{command.prog}: {action.option_strings or action.dest} has no help text"


@pytest.mark.parametrize("args, guess", [
    (["serach"], "did you mean 'search'?"),
    (["codec", "trian"], "did you mean 'train'?"),
    (["run", "--patch", "2", "--estimator", "heldot"], "did you mean 'heldout'?"),
    (["run", "--patch", "2", "--sedes", "3"], "did you mean '--seeds'?"),
    (["xyzzy"], None),
])
def test_a_mistyped_command_or_option_gets_a_guess(args, guess, capsys):
    with pytest.raises(SystemExit) as info:
        main(args)
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1 and err.startswith("ordersearch")
    assert (guess in err) if guess else "did you mean" not in err


def test_verify_prints_an_unprintable_file_name_escaped(tmp_path, capsys):
    import numpy as np

    from ordersearch import Schedule, save_schedule
    from ordersearch.data import gaussian_field
    from ordersearch.data.latents import LatentSet, save_latents

    sample = gaussian_field("separable").sample(8, 16, 16, seed=0)
    save_latents(LatentSet.create(sample.y, split_labels=np.array([0] * 4 + [1] * 2 + [2] * 2)), tmp_path / "l.npz")
    path = save_schedule(Schedule.named("raster", 2), tmp_path / "a\x1b[31mb.json")
    assert main(["verify", str(path), "--latents", str(tmp_path / "l.npz"), "--seeds", "1", "--max-steps", "4",
                 "--store", str(tmp_path / "store"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "a\\x1b[31mb:" in out, out
