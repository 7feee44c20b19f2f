"""Decoding schedules of multistage spatial context models.

A schedule assigns every position of an n x n patch the stage at which it is
decoded; the patch tiles the latent grid periodically and all patches decode
in parallel. ``stages[r][c]`` is the stage of patch position (r, c), exactly the
``pattern`` convention of the official code of Lin et al. (ICASSP 2023)::

    lin2023 4x4               decoding stage 0    stage 1     ...   stage 15
    [[ 0,  2,  5,  4],        X . . . X . . .    X . . .          X X X X
     [ 1,  7, 11,  8],        . . . . . . . .    X . . .          X X X X
     [ 6, 12, 13, 10],        . . . . . . . .    . . . .          X X X X
     [ 3, 14, 15,  9]]        . . . . . . . .    . . . .          X X X X

A schedule may have fewer stages than positions (a *grouped* schedule): the
checkerboard is the 2x2 grid ``[[0, 1], [1, 0]]``. Positions that share a stage
are decoded together and do not see each other.

The quantity everything else is built on is the *relative context set* of a
position p, ``C_p = {(q - p) mod n : stage(q) < stage(p)}`` (see docs/design.md):
under stationarity the rate of a latent depends only on ``C_p``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .errors import ScheduleError

Position = tuple[int, int]
Group = Literal["translations", "dihedral"]

#: Largest patch side a schedule may have (a 16x16 permutation has 256 stages).
MAX_PATCH = 16
#: Largest patch side a search covers: cost tables and the exact search hold 2^(n*n) context sets.
MAX_SEARCH_PATCH = 4
#: Largest context window side: far beyond what context models use (5), small enough for masks of every patch
MAX_KERNEL = 31

#: The 2x2 order of DCVC-DC / TinyLIC: (0,0) -> (1,1) -> (0,1) -> (1,0).
_QUADTREE_2X2 = ((0, 2), (3, 1))

#: Orders released with the official code of Lin et al. 2023.
_LIN2023 = {
    2: ((0, 1), (2, 3)),
    4: ((0, 2, 5, 4), (1, 7, 11, 8), (6, 12, 13, 10), (3, 14, 15, 9)),
}

NAMED_SCHEDULES: dict[str, str] = {
    "raster": "row by row, left to right",
    "snake": "row by row, alternating direction (boustrophedon)",
    "column": "column by column, top to bottom",
    "diagonal": "anti-diagonal zigzag, as the JPEG zigzag scan",
    "checkerboard": "2 stages: (r + c) even, then odd (He et al. 2021); even patch only",
    "quadtree": "DCVC-DC/TinyLIC 2x2 order (0,0),(1,1),(0,1),(1,0), applied recursively "
    "coarse-to-fine for patch 4, 8, 16",
    "lin2023": "the orders released with Lin et al. 2023 (patch 2 and 4)",
    "random": "a uniformly random order (seeded)",
    "single": "everything in one stage: no spatial context (hyperprior only)",
}


def baselines(patch: int) -> dict[str, Schedule]:
    """The named schedules people use today that are defined for this patch size, ``single`` last."""
    out = {}
    for name in ("raster", "lin2023", "checkerboard", "quadtree", "single"):
        try:
            out[name] = Schedule.named(name, patch)
        except ScheduleError:
            pass
    return out


def check_patch(patch: Any, search: bool = False) -> int:
    """``patch`` if it is a patch side the toolkit takes (the one place that says which), else ScheduleError.

    Schedules: 1 to ``MAX_PATCH``. Searches (``search=True``: cost tables,
    ``run``, ``search``, workers): 2 to ``MAX_SEARCH_PATCH``.
    """
    low, high = (2, MAX_SEARCH_PATCH) if search else (1, MAX_PATCH)
    if not _is_int(patch) or not low <= patch <= high:
        if search:
            raise ScheduleError(f"patch {patch!r}: the search covers patches 2 to {MAX_SEARCH_PATCH} (a cost table "
                                f"of an n x n patch holds 2^(n*n) context sets)")
        raise ScheduleError(f"patch must be an integer from 1 to {MAX_PATCH}, got {patch!r}")
    return int(patch)


def check_kernel(kernel: Any) -> int:
    """Return ``kernel`` if it is an odd integer from 1 to ``MAX_KERNEL``, else raise ScheduleError."""
    if not _is_int(kernel) or kernel <= 0 or kernel % 2 == 0:
        raise ScheduleError(f"kernel must be a positive odd integer, got {kernel!r}")
    if kernel > MAX_KERNEL:  # masks and tables grow with kernel^2 per position
        raise ScheduleError(f"kernel {kernel} is larger than the largest supported context window, {MAX_KERNEL}")
    return int(kernel)


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _validate_grid(stages: Any) -> tuple[tuple[int, ...], ...]:
    """Check a stage grid and return it as a tuple of int tuples."""
    if hasattr(stages, "tolist"):  # numpy arrays and torch tensors
        stages = stages.tolist()
    if not isinstance(stages, Sequence) or isinstance(stages, (str, bytes)):
        raise ScheduleError(f"stages must be a square grid (a list of rows), got {type(stages).__name__}")
    n = len(stages)
    if n == 0:
        raise ScheduleError("stages is empty")
    for r, row in enumerate(stages):
        if not isinstance(row, Sequence) or isinstance(row, (str, bytes)):
            raise ScheduleError(f"stages[{r}] is not a row (a list), got {type(row).__name__}")
        if len(row) != n:
            raise ScheduleError(f"stages is not a square grid: row {r} has {len(row)} entries, expected {n}")
    if n > MAX_PATCH:  # check_patch's limit, said in the grid's own terms
        raise ScheduleError(f"stages is {n}x{n}; the largest supported patch is {MAX_PATCH}x{MAX_PATCH}")
    for r, row in enumerate(stages):
        for c, value in enumerate(row):
            if not _is_int(value):
                raise ScheduleError(f"stages[{r}][{c}] is not an integer: {value!r}")
            if value < 0:
                raise ScheduleError(f"stages[{r}][{c}] is negative: {value}")
            if value >= n * n:  # n*n positions make at most n*n stages
                raise ScheduleError(f"stages[{r}][{c}] is {value}: a {n}x{n} grid has at most {n * n} stages "
                                    f"(0..{n * n - 1})")
    used = {int(v) for row in stages for v in row}
    num = max(used) + 1
    missing = sorted(set(range(num)) - used)
    if missing:
        shown = ", ".join(map(str, missing[:5])) + (", ..." if len(missing) > 5 else "")
        raise ScheduleError(f"stages must use every stage 0..{num - 1}, but stage {shown} is missing")
    return tuple(tuple(int(v) for v in row) for row in stages)


@dataclass(frozen=True)
class Schedule:
    """An immutable decoding schedule of an n x n patch.

    ``stages[r][c]`` is the stage (0-based) at which patch position (r, c) is
    decoded. Stages must be exactly 0..S-1 (every stage used); S = n*n makes a
    permutation order, fewer makes a grouped schedule.
    """

    stages: tuple[tuple[int, ...], ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "stages", _validate_grid(self.stages))

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_grid(cls, stages: Any) -> Schedule:
        """Build from a grid (nested lists, numpy array or torch tensor) of stages."""
        return cls(stages)

    @classmethod
    def from_order(cls, order: Iterable[Position | Iterable[Position]]) -> Schedule:
        """Build from the decoding order: one entry per stage.

        Each entry is a position ``(r, c)`` or, for a grouped schedule, a
        collection of positions decoded together. The patch size is inferred
        from the number of positions, which must be a square number.
        """
        groups: list[list[Position]] = []
        for item in order:
            item = list(item)
            if len(item) == 2 and all(_is_int(v) for v in item):
                groups.append([(int(item[0]), int(item[1]))])
            else:
                group = []
                for p in item:
                    p = tuple(p)
                    if len(p) != 2 or not all(_is_int(v) for v in p):
                        raise ScheduleError(f"order entry {p!r} is not a position (r, c)")
                    group.append((int(p[0]), int(p[1])))
                if not group:
                    raise ScheduleError(f"order stage {len(groups)} is empty")
                groups.append(group)
        count = sum(len(g) for g in groups)
        n = math.isqrt(count)
        if count == 0 or n * n != count:
            raise ScheduleError(f"order has {count} positions; an n x n patch needs a square number of them")
        grid = [[-1] * n for _ in range(n)]
        for stage, group in enumerate(groups):
            for r, c in group:
                if not (0 <= r < n and 0 <= c < n):
                    raise ScheduleError(f"position ({r}, {c}) is outside the {n}x{n} patch")
                if grid[r][c] >= 0:
                    raise ScheduleError(f"position ({r}, {c}) appears twice in the order")
                grid[r][c] = stage
        return cls(grid)

    @classmethod
    def named(cls, name: str, patch: int, seed: int = 0) -> Schedule:
        """A well-known schedule; ``NAMED_SCHEDULES`` lists the names.

        ``seed`` is used only by ``random``.
        """
        n = check_patch(patch)
        r, c = np.indices((n, n))
        if name == "raster":
            grid = r * n + c
        elif name == "column":
            grid = c * n + r
        elif name == "snake":
            grid = r * n + np.where(r % 2 == 0, c, n - 1 - c)
        elif name == "diagonal":
            # JPEG zigzag: anti-diagonal s = r + c, r rising on odd s, falling on even s.
            cells = sorted(((i, j) for i in range(n) for j in range(n)),
                           key=lambda p: (p[0] + p[1], p[0] if (p[0] + p[1]) % 2 else -p[0]))
            return cls.from_order(cells)
        elif name == "checkerboard":
            if n % 2:
                raise ScheduleError(f"checkerboard needs an even patch size (it would not tile), got {n}")
            grid = (r + c) % 2
        elif name == "quadtree":
            if n & (n - 1) or n < 2:
                raise ScheduleError(f"quadtree is defined for patch 2, 4, 8 or 16, got {n}")
            grid = _quadtree(n)
        elif name == "lin2023":
            if n not in _LIN2023:
                raise ScheduleError(f"lin2023 released orders for patch 2 and 4 only, got {n}")
            grid = _LIN2023[n]
        elif name == "random":
            perm = np.random.default_rng(seed).permutation(n * n)
            grid = perm.reshape(n, n)
        elif name == "single":
            grid = np.zeros((n, n), dtype=int)
        else:
            raise ScheduleError(f"unknown schedule name {name!r}; known: {', '.join(NAMED_SCHEDULES)}")
        return cls(np.asarray(grid))

    # ------------------------------------------------------------------ basic properties
    @property
    def patch(self) -> int:
        """Side n of the n x n patch."""
        return len(self.stages)

    @property
    def num_stages(self) -> int:
        """Number S of sequential decoding stages."""
        return max(max(row) for row in self.stages) + 1

    @property
    def is_permutation(self) -> bool:
        """True when every position has its own stage (S = n*n)."""
        return self.num_stages == self.patch**2

    def array(self) -> np.ndarray:
        """The stage grid as a fresh (n, n) int64 array."""
        return np.array(self.stages, dtype=np.int64)

    def stage(self, p: Position) -> int:
        """Stage at which position ``p`` (taken modulo n) is decoded."""
        n = self.patch
        return self.stages[p[0] % n][p[1] % n]

    def order(self) -> list[Position]:
        """Positions in decoding order (positions sharing a step in raster order)."""
        n = self.patch
        return sorted(((r, c) for r in range(n) for c in range(n)), key=lambda p: (self.stage(p), p))

    def groups(self) -> list[list[Position]]:
        """For each stage, the positions decoded at it (raster order)."""
        out: list[list[Position]] = [[] for _ in range(self.num_stages)]
        for p in self.order():
            out[self.stage(p)].append(p)
        return out

    # ------------------------------------------------------------------ context
    def context_set(self, p: Position) -> frozenset[Position]:
        """Relative context set ``C_p = {(q - p) mod n : stage(q) < stage(p)}``."""
        n = self.patch
        s = self.stage(p)
        return frozenset(
            ((q_r - p[0]) % n, (q_c - p[1]) % n)
            for q_r in range(n)
            for q_c in range(n)
            if self.stages[q_r][q_c] < s
        )

    def context_sets(self) -> dict[Position, frozenset[Position]]:
        """Relative context set of every patch position."""
        n = self.patch
        return {(r, c): self.context_set((r, c)) for r in range(n) for c in range(n)}

    def context_indices(self) -> np.ndarray:
        """(n, n) int array: :func:`context_index` of every position's context set."""
        n = self.patch
        return np.array([[context_index(self.context_set((r, c)), n) for c in range(n)] for r in range(n)])

    def masks(self, kernel: int = 5) -> np.ndarray:
        """Decoded window offsets of every patch position.

        Returns a bool array ``m`` of shape (n, n, kernel, kernel):
        ``m[r, c, i, j]`` is True when the latent at offset
        ``(i - kernel // 2, j - kernel // 2)`` from a latent at patch position
        (r, c) is decoded before it, counting copies of positions in
        neighbouring patches (periodic tiling). The centre is never set. The
        window is aligned like a PyTorch convolution kernel, so ``m[r, c]`` can
        multiply the weights of position (r, c)'s masked convolution directly.
        """
        return decoded_offsets(self.array()[None], check_kernel(kernel))[0]

    def context_sizes(self, kernel: int = 5) -> np.ndarray:
        """(n, n) int array: how many window offsets each position sees decoded."""
        return self.masks(kernel).sum(axis=(2, 3))

    def stage_map(self, height: int, width: int) -> np.ndarray:
        """(height, width) int array: the stage of every latent position (tiled from (0, 0))."""
        for label, v in (("height", height), ("width", width)):
            if not _is_int(v) or v < 0:
                raise ScheduleError(f"{label} must be a non-negative integer, got {v!r}")
        n = self.patch
        grid = self.array()
        return grid[np.arange(height)[:, None] % n, np.arange(width)[None, :] % n]

    # ------------------------------------------------------------------ symmetry
    def orbit(self, group: Group = "translations") -> frozenset[Schedule]:
        """All distinct schedules equivalent to this one under ``group``.

        ``translations`` (moving the patch grid on the image) is an exact
        symmetry of the rate. ``dihedral`` adds the 8 flips/rotations, which
        are only approximately rate-preserving on real images.
        """
        grid = self.array()
        if group == "translations":
            bases = [grid]
        elif group == "dihedral":
            bases = []
            for g in (grid, grid.T):
                bases += [g, np.flip(g, 0), np.flip(g, 1), np.flip(g, (0, 1))]
        else:
            raise ScheduleError(f"unknown symmetry group {group!r}; use 'translations' or 'dihedral'")
        n = self.patch
        return frozenset(
            Schedule(np.roll(b, (dr, dc), axis=(0, 1)))
            for b in bases
            for dr in range(n)
            for dc in range(n)
        )

    def canonical(self, group: Group = "translations") -> Schedule:
        """The representative of this schedule's orbit with the smallest grid (row-major)."""
        return min(self.orbit(group), key=lambda s: s.stages)

    def translation_to(self, other: Schedule) -> tuple[int, int] | None:
        """The shift (dr, dc) that moves this schedule onto ``other`` (``np.roll`` of the grid), or None.

        Per-position numbers (weights, bits) of this schedule are those of
        ``other`` after the same roll.
        """
        if other.patch != self.patch:
            return None
        n, grid, target = self.patch, self.array(), other.array()
        for dr in range(n):
            for dc in range(n):
                if np.array_equal(np.roll(grid, (dr, dc), axis=(0, 1)), target):
                    return dr, dc
        return None

    def equivalent(self, other: Schedule, group: Group = "translations") -> bool:
        """True when ``other`` is in this schedule's orbit under ``group``."""
        return self.patch == other.patch and self.canonical(group) == other.canonical(group)

    # ------------------------------------------------------------------ display
    def __str__(self) -> str:
        width = len(str(self.num_stages - 1))
        return "\n".join(" ".join(f"{v:>{width}d}" for v in row) for row in self.stages)

    def __repr__(self) -> str:
        return f"Schedule.from_grid({[list(row) for row in self.stages]})"


def decoded_offsets(grids: np.ndarray, kernel: int) -> np.ndarray:
    """(count, n, n, K, K) bool: ``Schedule.masks`` of each stage grid of ``grids`` (count, n, n), at once."""
    n = grids.shape[-1]
    h = kernel // 2
    d = np.arange(-h, h + 1)
    r = np.arange(n)
    # stage of the neighbour at (r + di, c + dj), shape (count, n, n, k, k)
    rows = (r[:, None, None, None] + d[None, None, :, None]) % n
    cols = (r[None, :, None, None] + d[None, None, None, :]) % n
    return grids[:, rows, cols] < grids[:, :, :, None, None]


def context_index(context: Iterable[Position], patch: int) -> int:
    """Integer code of a relative context set: bit ``r * patch + c`` is set for each (r, c) in it.

    Bit 0 (the position itself) is never set, so codes of an n x n patch are
    the even numbers below ``2 ** (n * n)``: 2^(n*n - 1) sets.
    """
    code = 0
    for r, c in context:
        code |= 1 << ((r % patch) * patch + (c % patch))
    if code & 1:
        raise ScheduleError("a context set cannot contain (0, 0), the position itself")
    return code


def context_from_index(code: int, patch: int) -> frozenset[Position]:
    """Inverse of :func:`context_index`."""
    return frozenset(divmod(b, patch) for b in range(patch * patch) if code >> b & 1)


def context_window_masks(codes: Iterable[int] | np.ndarray, patch: int, kernel: int) -> np.ndarray:
    """(S, kernel, kernel) bool: for each context-set code, the window offsets d with d mod n in the set.

    These are exactly the neighbours a latent with that relative context set
    sees decoded (``Schedule.masks`` row for a position with that set).
    """
    h = check_kernel(kernel) // 2
    d = np.arange(-h, h + 1)
    residue_bit = 1 << ((d[:, None] % patch) * patch + (d[None, :] % patch))  # (K, K)
    masks = (np.array(list(codes), dtype=np.int64)[:, None, None] & residue_bit[None]) != 0
    masks[:, h, h] = False
    return masks


def _quadtree(n: int) -> np.ndarray:
    """Coarse-to-fine recursive 2x2 order for a power-of-two patch.

    The residue class (r mod 2, c mod 2) picks the outer stage group in the 2x2
    quadtree order, and the coarse coordinate (r // 2, c // 2) the stage inside
    it, recursively: for n = 4 the stride-4 lattice point (0, 0) comes first,
    then (2, 2), (0, 2), (2, 0), then the (1, 1) offsets, and so on.
    """
    if n == 1:
        return np.zeros((1, 1), dtype=int)
    q = np.array(_QUADTREE_2X2)
    inner = _quadtree(n // 2)
    r, c = np.indices((n, n))
    return (n // 2) ** 2 * q[r % 2, c % 2] + inner[r // 2, c // 2]
