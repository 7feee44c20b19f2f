"""Schedule: constructors, properties, context sets, masks, symmetry, named baselines."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ordersearch import Schedule, ScheduleError
from ordersearch.schedule import NAMED_SCHEDULES

LIN4 = [[0, 2, 5, 4], [1, 7, 11, 8], [6, 12, 13, 10], [3, 14, 15, 9]]


# ---------------------------------------------------------------- strategies
@st.composite
def permutations(draw, sizes=(2, 3, 4, 5)):
    n = draw(st.sampled_from(sizes))
    perm = draw(st.permutations(range(n * n)))
    return Schedule.from_grid(np.array(perm).reshape(n, n))


@st.composite
def grouped(draw, sizes=(1, 2, 3, 4, 5)):
    """Any surjective map of the patch onto 0..S-1."""
    n = draw(st.sampled_from(sizes))
    s = draw(st.integers(1, n * n))
    labels = list(range(s)) + draw(st.lists(st.integers(0, s - 1), min_size=n * n - s, max_size=n * n - s))
    labels = draw(st.permutations(labels))
    return Schedule.from_grid(np.array(labels).reshape(n, n))


kernels = st.sampled_from([3, 5, 7])


def brute_force_masks(s: Schedule, kernel: int) -> np.ndarray:
    """Masks read off an explicitly tiled (3n + K) grid of stages."""
    n, h = s.patch, kernel // 2
    size = 3 * n + kernel
    tiled = np.array([[s.stages[i % n][j % n] for j in range(size)] for i in range(size)])
    out = np.zeros((n, n, kernel, kernel), dtype=bool)
    for r in range(n):
        for c in range(n):
            base = n * -(-h // n)  # first multiple of n with a full window above/left of it
            y, x = base + r, base + c  # a copy of (r, c) well inside the tiled grid
            assert tiled[y, x] == s.stages[r][c]
            window = tiled[y - h:y + h + 1, x - h:x + h + 1]
            out[r, c] = window < tiled[y, x]
    return out


# ---------------------------------------------------------------- constructors
def test_from_grid_accepts_lists_arrays_tensors():
    import torch

    a = Schedule.from_grid(LIN4)
    assert Schedule.from_grid(np.array(LIN4)) == a
    assert Schedule.from_grid(torch.tensor(LIN4)) == a
    assert a.stages == tuple(tuple(r) for r in LIN4)
    assert a.patch == 4 and a.num_stages == 16 and a.is_permutation


def test_schedule_is_immutable_and_hashable():
    s = Schedule.from_grid([[0, 1], [2, 3]])
    with pytest.raises(AttributeError):
        s.stages = ((0,),)
    assert len({s, Schedule.from_grid([[0, 1], [2, 3]])}) == 1
    arr = s.array()
    arr[0, 0] = 9
    assert s.stages[0][0] == 0


def test_from_order_and_order_round_trip():
    order = [(0, 0), (1, 1), (0, 1), (1, 0)]
    s = Schedule.from_order(order)
    assert s.stages == ((0, 2), (3, 1))
    assert s.order() == order
    assert Schedule.named("lin2023", 4).order()[:3] == [(0, 0), (1, 0), (0, 1)]


def test_from_order_with_groups_builds_grouped_schedule():
    s = Schedule.from_order([[(0, 0), (1, 1)], [(0, 1), (1, 0)]])
    assert s == Schedule.named("checkerboard", 2)
    assert s.num_stages == 2 and not s.is_permutation
    assert s.groups() == [[(0, 0), (1, 1)], [(0, 1), (1, 0)]]
    assert s.order() == [(0, 0), (1, 1), (0, 1), (1, 0)]


@pytest.mark.parametrize(
    "grid, message",
    [
        ([], "stages is empty"),
        (5, "stages must be a square grid (a list of rows), got int"),
        ("ab", "stages must be a square grid (a list of rows), got str"),
        ([1, 2], "stages[0] is not a row (a list), got int"),
        ([[0, 1], [2]], "stages is not a square grid: row 1 has 1 entries, expected 2"),
        ([[0, 1, 2], [3, 4, 5]], "stages is not a square grid: row 0 has 3 entries, expected 2"),
        ([[0, 1.5], [2, 3]], "stages[0][1] is not an integer: 1.5"),
        ([[0, 1], [2, "3"]], "stages[1][1] is not an integer: '3'"),
        ([[0, True], [2, 3]], "stages[0][1] is not an integer: True"),
        ([[0, 1], [-1, 2]], "stages[1][0] is negative: -1"),
        ([[0, 1], [3, 4]], "stages[1][1] is 4: a 2x2 grid has at most 4 stages (0..3)"),
        ([[0, 1, 3], [4, 4, 4], [4, 4, 4]], "stages must use every stage 0..4, but stage 2 is missing"),
        ([[1, 1], [1, 1]], "stages must use every stage 0..1, but stage 0 is missing"),
        ([[0] * 17] * 17, "stages is 17x17; the largest supported patch is 16x16"),
    ],
)
def test_from_grid_errors(grid, message):
    with pytest.raises(ScheduleError) as e:
        Schedule.from_grid(grid)
    assert str(e.value) == message


@pytest.mark.parametrize(
    "order, message",
    [
        ([(0, 0), (0, 1), (1, 0)], "order has 3 positions; an n x n patch needs a square number of them"),
        ([], "order has 0 positions; an n x n patch needs a square number of them"),
        ([(0, 0), (0, 1), (1, 0), (2, 0)], "position (2, 0) is outside the 2x2 patch"),
        ([(0, 0), (0, 1), (1, 0), (0, 1)], "position (0, 1) appears twice in the order"),
        ([(0, 0), [], (0, 1), (1, 0), (1, 1)], "order stage 1 is empty"),
        ([[(0, 0, 1)]], "order entry (0, 0, 1) is not a position (r, c)"),
    ],
)
def test_from_order_errors(order, message):
    with pytest.raises(ScheduleError) as e:
        Schedule.from_order(order)
    assert str(e.value) == message


# ---------------------------------------------------------------- named baselines
def test_named_baselines_exact_grids():
    assert Schedule.named("raster", 3).stages == ((0, 1, 2), (3, 4, 5), (6, 7, 8))
    assert Schedule.named("column", 2).stages == ((0, 2), (1, 3))
    assert Schedule.named("snake", 3).stages == ((0, 1, 2), (5, 4, 3), (6, 7, 8))
    assert Schedule.named("diagonal", 3).stages == ((0, 1, 5), (2, 4, 6), (3, 7, 8))
    assert Schedule.named("checkerboard", 2).stages == ((0, 1), (1, 0))
    assert Schedule.named("checkerboard", 4).num_stages == 2
    assert Schedule.named("quadtree", 2).order() == [(0, 0), (1, 1), (0, 1), (1, 0)]
    assert Schedule.named("lin2023", 2).stages == ((0, 1), (2, 3))
    assert Schedule.named("lin2023", 4).stages == tuple(map(tuple, LIN4))
    assert Schedule.named("single", 3).num_stages == 1


def test_quadtree_4x4_is_coarse_to_fine():
    q = Schedule.named("quadtree", 4)
    assert q.is_permutation
    # the stride-2 lattice comes first, in the 2x2 quadtree order of its coarse coordinates
    assert q.order()[:4] == [(0, 0), (2, 2), (0, 2), (2, 0)]
    # then each residue class of the fine level in quadtree order: (1,1), (0,1), (1,0) offsets
    assert {(r % 2, c % 2) for r, c in q.order()[4:8]} == {(1, 1)}
    assert {(r % 2, c % 2) for r, c in q.order()[8:12]} == {(0, 1)}
    assert {(r % 2, c % 2) for r, c in q.order()[12:]} == {(1, 0)}


def test_random_is_seeded_permutation():
    a, b = Schedule.named("random", 4, seed=3), Schedule.named("random", 4, seed=3)
    assert a == b and a.is_permutation
    assert Schedule.named("random", 4, seed=4) != a


@pytest.mark.parametrize(
    "name, patch, message",
    [
        ("checkerboard", 3, "checkerboard needs an even patch size (it would not tile), got 3"),
        ("quadtree", 3, "quadtree is defined for patch 2, 4, 8 or 16, got 3"),
        ("lin2023", 3, "lin2023 released orders for patch 2 and 4 only, got 3"),
        ("raster", 0, "patch must be an integer from 1 to 16, got 0"),
        ("raster", 17, "patch must be an integer from 1 to 16, got 17"),
        ("nope", 2, "unknown schedule name 'nope'; known: " + ", ".join(NAMED_SCHEDULES)),
    ],
)
def test_named_errors(name, patch, message):
    with pytest.raises(ScheduleError) as e:
        Schedule.named(name, patch)
    assert str(e.value) == message


@pytest.mark.parametrize("name", [n for n in NAMED_SCHEDULES if n not in ("checkerboard", "single")])
def test_named_permutations_for_patch_4(name):
    assert Schedule.named(name, 4).is_permutation


# ---------------------------------------------------------------- context sets
def test_context_set_examples():
    raster = Schedule.named("raster", 2)
    assert raster.context_set((0, 0)) == frozenset()
    assert raster.context_set((0, 1)) == {(0, 1)}  # (0,0) - (0,1) = (0,-1) = (0,1) mod 2
    assert raster.context_set((1, 1)) == {(1, 1), (1, 0), (0, 1)}
    cb = Schedule.named("checkerboard", 2)
    assert cb.context_sets() == {(0, 0): frozenset(), (1, 1): frozenset(),
                                 (0, 1): {(0, 1), (1, 0)}, (1, 0): {(0, 1), (1, 0)}}
    # positions at the same step never see each other
    assert Schedule.named("single", 3).context_sets() == {p: frozenset() for p in itertools.product(range(3), range(3))}


@given(grouped())
def test_context_set_definition(s):
    n = s.patch
    for p, cset in s.context_sets().items():
        assert (0, 0) not in cset
        expected = {((q[0] - p[0]) % n, (q[1] - p[1]) % n) for q in itertools.product(range(n), repeat=2)
                    if s.stage(q) < s.stage(p)}
        assert cset == expected


# ---------------------------------------------------------------- masks
def test_masks_checkerboard_kernel3():
    m = Schedule.named("checkerboard", 2).masks(3)
    assert not m[0, 0].any() and not m[1, 1].any()
    plus = np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]], dtype=bool)
    assert (m[0, 1] == plus).all() and (m[1, 0] == plus).all()


def test_masks_raster_2x2_kernel5_counts_neighbouring_copies():
    m = Schedule.named("raster", 2).masks(5)
    # position (0, 1): decoded is (0, 0) and its copies at even-column offsets; window offsets with odd dc, even dr
    expected = np.zeros((5, 5), dtype=bool)
    expected[np.ix_([0, 2, 4], [1, 3])] = True
    assert (m[0, 1] == expected).all()
    assert m.shape == (2, 2, 5, 5) and m.dtype == bool


@pytest.mark.parametrize("kernel", [0, 2, -3, 4.0, "5", True])
def test_masks_bad_kernel(kernel):
    with pytest.raises(ScheduleError) as e:
        Schedule.named("raster", 2).masks(kernel)
    assert str(e.value) == f"kernel must be a positive odd integer, got {kernel!r}"


@settings(max_examples=60, deadline=None)
@given(grouped(), kernels)
def test_masks_match_brute_force_tiling(s, kernel):
    m = s.masks(kernel)
    assert (m == brute_force_masks(s, kernel)).all()
    assert not m[:, :, kernel // 2, kernel // 2].any()


def test_masks_agree_with_context_sets():
    s = Schedule.named("lin2023", 4)
    m = s.masks(7)
    for (r, c), cset in s.context_sets().items():
        for i, j in zip(*np.nonzero(m[r, c])):
            assert ((i - 3) % 4, (j - 3) % 4) in cset


# ---------------------------------------------------------------- invariants (docs/design.md)
@pytest.mark.parametrize("n, kernel, total", [(4, 5, 192), (2, 5, 32)])
def test_conserved_context_links_known_values(n, kernel, total):
    for name in ("raster", "snake", "lin2023", "quadtree", "random"):
        assert Schedule.named(name, n).context_sizes(kernel).sum() == total


@settings(max_examples=80, deadline=None)
@given(permutations(), kernels)
def test_conserved_context_links(s, kernel):
    """Every permutation order of (n, kernel) sees the same total number of window offsets."""
    n, h = s.patch, kernel // 2
    # offsets d != 0 with d = 0 mod n on both axes are copies of the position itself: never decoded
    same = sum(1 for d in range(-h, h + 1) if d % n == 0) ** 2
    assert s.context_sizes(kernel).sum() == n * n * (kernel * kernel - same) // 2
    assert s.context_sizes(kernel).sum() == Schedule.named("raster", n).context_sizes(kernel).sum()


@settings(max_examples=60, deadline=None)
@given(permutations(), kernels)
def test_first_sees_nothing_last_sees_all_but_own_copies(s, kernel):
    n, h = s.patch, kernel // 2
    m = s.masks(kernel)
    first, last = s.order()[0], s.order()[-1]
    assert not m[first].any()
    d = np.arange(-h, h + 1)
    own_copy = (d[:, None] % n == 0) & (d[None, :] % n == 0)
    assert (m[last] == ~own_copy).all()
    assert len(s.context_set(last)) == n * n - 1 and s.context_set(first) == frozenset()


# ---------------------------------------------------------------- stage map
def test_stage_map_tiles_from_origin():
    s = Schedule.named("lin2023", 2)
    sm = s.stage_map(3, 5)
    assert sm.shape == (3, 5)
    assert sm.tolist() == [[0, 1, 0, 1, 0], [2, 3, 2, 3, 2], [0, 1, 0, 1, 0]]
    assert s.stage_map(0, 4).shape == (0, 4)
    with pytest.raises(ScheduleError, match="height must be a non-negative integer, got -1"):
        s.stage_map(-1, 4)


# ---------------------------------------------------------------- symmetry
def translate(s: Schedule, dr: int, dc: int) -> Schedule:
    return Schedule.from_grid(np.roll(s.array(), (dr, dc), axis=(0, 1)))


DIHEDRAL = [lambda a: a, lambda a: a.T, lambda a: a[::-1], lambda a: a[:, ::-1], lambda a: a[::-1, ::-1],
            lambda a: a.T[::-1], lambda a: a.T[:, ::-1], lambda a: a.T[::-1, ::-1]]


def test_orbit_sizes():
    raster = Schedule.named("raster", 4)
    assert len(raster.orbit()) == 16
    assert len(raster.orbit("dihedral")) == 8 * 16
    cb = Schedule.named("checkerboard", 2)
    assert cb.orbit() == {cb, Schedule.from_grid([[1, 0], [0, 1]])}
    assert len(Schedule.named("single", 3).orbit("dihedral")) == 1
    with pytest.raises(ScheduleError, match="unknown symmetry group 'rotations'"):
        raster.orbit("rotations")


def test_raster_and_column_are_dihedral_but_not_translation_equivalent():
    raster, column = Schedule.named("raster", 3), Schedule.named("column", 3)
    assert not raster.equivalent(column)
    assert raster.equivalent(column, group="dihedral")
    assert not raster.equivalent(Schedule.named("raster", 2), group="dihedral")


def test_2x2_orders_fall_into_three_classes():
    """24 orders of 2x2: 6 translation classes of size 4, 3 classes up to dihedral maps."""
    orders = [Schedule.from_order(p) for p in itertools.permutations(itertools.product(range(2), repeat=2))]
    assert len({o.canonical() for o in orders}) == 6
    assert len({o.canonical("dihedral") for o in orders}) == 3


@settings(max_examples=60, deadline=None)
@given(grouped(), st.integers(0, 15), st.integers(0, 15), st.integers(0, 7))
def test_canonical_is_invariant(s, dr, dc, k):
    moved = translate(s, dr, dc)
    assert moved.canonical() == s.canonical()
    assert moved.equivalent(s)
    flipped = Schedule.from_grid(np.ascontiguousarray(DIHEDRAL[k](moved.array())))
    assert flipped.canonical("dihedral") == s.canonical("dihedral")
    assert s.canonical() in s.orbit() and s in s.canonical().orbit()


@settings(max_examples=40, deadline=None)
@given(grouped(sizes=(2, 3, 4)), st.integers(0, 7))
def test_translation_keeps_context_sets(s, dr):
    """Translations are an exact symmetry: the multiset of context sets is unchanged."""
    moved = translate(s, dr, 1)
    assert sorted(map(sorted, s.context_sets().values())) == sorted(map(sorted, moved.context_sets().values()))


def test_str_and_repr():
    s = Schedule.named("lin2023", 4)
    assert str(s).splitlines()[0] == " 0  2  5  4"
    assert eval(repr(s), {"Schedule": Schedule}) == s


# ---------------------------------------------------------------- context-set codes
def test_context_index_round_trip_and_examples():
    from ordersearch.schedule import context_from_index, context_index

    assert context_index([], 4) == 0
    assert context_index([(0, 1)], 2) == 2 and context_index([(1, 1), (1, 0), (0, 1)], 2) == 14
    for code in range(0, 2**9, 2):
        assert context_index(context_from_index(code, 3), 3) == code
    with pytest.raises(ScheduleError, match="cannot contain"):
        context_index([(0, 0)], 3)
    s = Schedule.named("raster", 2)
    assert s.context_indices().tolist() == [[0, 2], [12, 14]]
