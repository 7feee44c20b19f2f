"""JSON schedule format v1: round trips and every validation error."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ordersearch import Schedule, ScheduleError, __version__, load_schedule, save_schedule
from ordersearch.schedule_io import loads_schedule, schedule_to_dict

OFFICIAL_4X4_PATTERN = "[[0, 2, 5, 4], [1, 7, 11, 8], [6, 12, 13, 10], [3, 14, 15, 9]]"


def v1(**overrides):
    obj = {"format": "ordersearch.schedule", "version": 1, "patch": 2, "kernel": 5, "stages": [[0, 1], [1, 0]]}
    obj.update(overrides)
    return {k: v for k, v in obj.items() if v is not ...}


def test_save_load_round_trip_with_metadata(tmp_path):
    s = Schedule.named("lin2023", 4)
    path = save_schedule(s, tmp_path / "sub" / "best.json", kernel=7, name="lin2023-4x4",
                         metrics={"bits_per_latent": 1.25, "estimator": "dedicated"},
                         provenance={"strategy": "dp", "config": {"seeds": 3}})
    loaded, meta = load_schedule(path)
    assert loaded == s
    assert meta.kernel == 7 and meta.name == "lin2023-4x4"
    assert meta.metrics == {"bits_per_latent": 1.25, "estimator": "dedicated"}
    assert meta.provenance["strategy"] == "dp" and meta.provenance["config"] == {"seeds": 3}
    assert meta.provenance["package_version"] == __version__ and meta.provenance["created"]
    obj = json.loads(path.read_text())
    assert obj["format"] == "ordersearch.schedule" and obj["version"] == 1 and obj["patch"] == 4
    assert obj["stages"] == [list(r) for r in s.stages]
    # one grid row per line, so the file reads like the grid
    assert "    [0, 2, 5, 4]," in path.read_text()
    assert list(tmp_path.joinpath("sub").iterdir()) == [path]  # no temp file left behind


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 16).flatmap(lambda n: st.tuples(st.just(n), st.integers(1, n * n), st.randoms())))
def test_round_trip_random_grouped(args):
    n, s, rnd = args
    labels = list(range(s)) + [rnd.randrange(s) for _ in range(n * n - s)]
    rnd.shuffle(labels)
    sched = Schedule.from_grid(np.array(labels).reshape(n, n))
    text = json.dumps(schedule_to_dict(sched, kernel=3))
    loaded, meta = loads_schedule(text)
    assert loaded == sched and meta.kernel == 3


def test_bare_official_pattern_equals_named_lin2023(tmp_path):
    path = tmp_path / "pattern.json"
    path.write_text(OFFICIAL_4X4_PATTERN)
    s, meta = load_schedule(path)
    assert s == Schedule.named("lin2023", 4)
    assert meta.kernel == 5 and meta.name is None and meta.metrics == {}


def test_minimal_object_defaults():
    s, meta = loads_schedule(json.dumps(v1(patch=..., kernel=...)))
    assert s == Schedule.named("checkerboard", 2) and meta.kernel == 5


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", "not valid JSON: Expecting property name enclosed in double quotes at line 1 column 2"),
        ("", "not valid JSON: Expecting value at line 1 column 1"),
        (b"[\x80]", "not valid JSON: not UTF-8 text (invalid start byte at byte 1)"),
        ("42", "expected a JSON object or a nested list, got int"),
        (json.dumps(v1(format="compressai.pattern")),
         "wrong format 'compressai.pattern' (expected 'ordersearch.schedule')"),
        (json.dumps(v1(format=...)), "missing field 'format' (expected 'ordersearch.schedule')"),
        (json.dumps(v1(version=2)), "unknown version 2 (this ordersearch reads version 1)"),
        (json.dumps(v1(version="1")), "unknown version '1' (this ordersearch reads version 1)"),
        (json.dumps(v1(version=True)), "unknown version True (this ordersearch reads version 1)"),
        (json.dumps(v1(version=1.0)), "unknown version 1.0 (this ordersearch reads version 1)"),
        (json.dumps(v1(patch=2.0)), "patch is 2.0 but stages is 2x2"),
        (json.dumps(v1(version=...)), "missing field 'version'"),
        (json.dumps(v1(stages=...)), "missing field 'stages'"),
        (json.dumps(v1(stages=[[0, 1, 2], [3, 4, 5]])),
         "stages is not a square grid: row 0 has 3 entries, expected 2"),
        (json.dumps(v1(stages=[[0, 1], [2, 3.5]])), "stages[1][1] is not an integer: 3.5"),
        (json.dumps(v1(stages=[[0, 1], [2, None]])), "stages[1][1] is not an integer: None"),
        (json.dumps(v1(stages=[[0, -1], [1, 2]])), "stages[0][1] is negative: -1"),
        (json.dumps(v1(stages=[[0, 1], [3, 3]])), "stages must use every stage 0..3, but stage 2 is missing"),
        (json.dumps(v1(patch=4)), "patch is 4 but stages is 2x2"),
        (json.dumps(v1(kernel=4)), "kernel must be a positive odd integer, got 4"),
        (json.dumps(v1(kernel=-1)), "kernel must be a positive odd integer, got -1"),
        (json.dumps(v1(kernel=5.0)), "kernel must be a positive odd integer, got 5.0"),
        (json.dumps(v1(patch=17, stages=[[0] * 17] * 17)),
         "stages is 17x17; the largest supported patch is 16x16"),
        (json.dumps(v1(name=3)), "name must be a string, got int"),
        (json.dumps(v1(metrics=[1])), "metrics must be a JSON object, got list"),
        ("[[0, 1], [1]]", "stages is not a square grid: row 1 has 1 entries, expected 2"),
        ("[" * 100000, "not valid JSON: nested too deeply"),
        # hostile but tiny: no allocation that grows with a number in the file
        ("[[0, 1], [2, 1000000000]]", "stages[1][1] is 1000000000: a 2x2 grid has at most 4 stages (0..3)"),
        ("[[0, 1], [2, 100000000000000000000]]",
         "stages[1][1] is 100000000000000000000: a 2x2 grid has at most 4 stages (0..3)"),
        (json.dumps(v1(kernel=20001)), "kernel 20001 is larger than the largest supported context window, 31"),
        (json.dumps(v1(name="\ud800")), "name must be printable text of at most 1000 characters"),
        ('{"format": "ordersearch.schedule", "version": 1, "stages": [[0]], "stages": [[0, 1], [2, 3]]}',
         "not a usable schedule file: key 'stages' appears twice"),
    ],
)
def test_validation_errors(text, message):
    with pytest.raises(ScheduleError) as e:
        loads_schedule(text)
    assert str(e.value) == message


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(ScheduleError) as e:
        load_schedule(tmp_path / "missing.json")
    assert str(e.value) == f"{tmp_path / 'missing.json'}: no such file"
    with pytest.raises(ScheduleError) as e:
        load_schedule(tmp_path)
    assert str(e.value) == f"{tmp_path}: is a directory, not a schedule file"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(v1(version=9)))
    with pytest.raises(ScheduleError) as e:
        load_schedule(bad)
    assert str(e.value) == f"{bad}: unknown version 9 (this ordersearch reads version 1)"


def test_huge_integers_and_files_that_are_not_files(tmp_path):
    with pytest.raises(ScheduleError, match="not a usable schedule file: Exceeds the limit"):
        loads_schedule("[[0, 1], [2, " + "9" * 5000 + "]]")
    import os

    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)  # nobody writes into it: reading would block for ever
    zero = tmp_path / "zero.json"
    zero.symlink_to("/dev/zero")  # reading would never end
    for path in (fifo, zero):
        with pytest.raises(ScheduleError) as e:
            load_schedule(path)
        assert str(e.value) == f"{path}: not a regular file (a FIFO, device or socket is not read)"
