"""Fuzzing the loaders: random bytes and random JSON / arrays give the toolkit's own error, never a crash."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ordersearch.data.latents import LatentSet, load_latents
from ordersearch.errors import LatentError, OrdersearchError, ScheduleError
from ordersearch.schedule_io import load_schedule, loads_schedule

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 40) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=10), inner, max_size=6),
    max_leaves=40)

schedule_like = st.fixed_dictionaries(
    {"format": st.sampled_from(["ordersearch.schedule", "x"]), "version": st.sampled_from([1, 2, "1"]),
     "stages": st.lists(st.lists(st.integers(-1, 17), min_size=0, max_size=5), max_size=5)},
    optional={"patch": st.integers(-1, 20), "kernel": st.one_of(st.integers(-3, 20), st.text(max_size=3)),
              "name": json_values, "metrics": json_values, "provenance": json_values})


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_schedule_loader_on_random_bytes(data):
    try:
        loads_schedule(data)
    except ScheduleError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.one_of(json_values, schedule_like))
def test_schedule_loader_on_random_json(obj):
    try:
        loads_schedule(json.dumps(obj))
    except ScheduleError:
        pass


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=400), st.sampled_from([".npz", ".pt", ".json"]))
def test_latent_and_schedule_files_of_random_bytes(tmp_path, data, suffix):
    path = tmp_path / f"f{suffix}"
    path.write_bytes(data)
    with pytest.raises(OrdersearchError):
        load_latents(path) if suffix != ".json" else load_schedule(path)


arrays = st.one_of(
    st.builds(lambda shape, dtype: np.zeros(shape, dtype=dtype),
              st.lists(st.integers(0, 4), min_size=0, max_size=5).map(tuple),
              st.sampled_from([np.int32, np.float32, np.float64, np.bool_, np.uint8])),
    st.builds(lambda v: np.full((2, 1, 3, 3), v), st.floats(allow_nan=True, allow_infinity=True)),
    st.builds(lambda s: np.array([s]), st.text(max_size=4)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(["y", "y_0", "y_1", "prior", "prior_0", "image_sizes", "groups", "split",
                                        "other"]), arrays, max_size=5))
def test_latent_loader_on_random_npz_contents(tmp_path, contents):
    buf = io.BytesIO()
    np.savez(buf, **contents)
    path = tmp_path / "r.npz"
    path.write_bytes(buf.getvalue())
    try:
        latents = load_latents(path)
    except LatentError:
        return
    assert isinstance(latents, LatentSet) and len(latents) > 0
