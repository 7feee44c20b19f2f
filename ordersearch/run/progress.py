"""What ``run`` tells a person while it works: a line per phase and per finished training, one overall bar.

::

    ordersearch: [1/4] cost table: ...          lines on stderr, in a terminal, a log file or CI alike
    ordersearch: verified 3/33 (41 min to 58 min left): raster selection seed 0: ...
    run 4x4 |#####-----| 9/36 [02:10, verification, 41 min to 58 min left]    the bar: terminals only

The bar counts the three quick phases and every training verification has
planned so far (adaptive seeds may add more); the time left is the
trainings' own pace, not tqdm's average over unequal units, plus what the
run's estimate knows is still to come (any-order models, consistency checks;
the adaptive seeds still possible in the higher figure: ``Estimate.left``).
"""

from __future__ import annotations

import sys

from ..evaluation.verify import Finished, duration, span


class RunProgress:
    """Phase lines and the overall bar of one run; silent when ``enabled`` is false (``--quiet``)."""

    PHASES = 3  # cost table, search, Pareto front; verification counts its trainings

    def __init__(self, patch: int, enabled: bool = True):
        from tqdm.auto import tqdm

        self.enabled = enabled
        # disable=None: a bar only on a terminal; a log gets the lines alone
        self.bar = tqdm(total=self.PHASES, desc=f"run {patch}x{patch}", position=0, leave=False,
                        disable=not enabled or None, file=sys.stderr,
                        bar_format="{desc} |{bar}| {n}/{total} [{elapsed}{postfix}]")
        self.bar.set_postfix_str("cost table", refresh=False)

    def say(self, line: str) -> None:
        """One line of progress on stderr (above the bar on a terminal)."""
        if not self.enabled:
            return
        if self.bar.disable:
            print(f"ordersearch: {line}", file=sys.stderr, flush=True)
        else:
            self.bar.write(f"ordersearch: {line}", file=sys.stderr)

    def phase_done(self, next_phase: str) -> None:
        self.bar.update(1)
        self.bar.set_postfix_str(next_phase)

    def plan(self, trainings: int, seconds: float) -> None:
        """Verification starts: the bar counts its planned trainings from now on, with the estimate."""
        self.bar.total = self.PHASES + trainings
        self.bar.set_postfix_str(f"verification, about {duration(seconds)} expected")

    def finished(self, f: Finished, left: tuple[float, float] | None = None) -> None:
        """A training of verification ended: its line, and the bar moved on (its total grown if needed);
        ``left``: (low, high) seconds of the run left, else the trainings' own ``seconds_left``."""
        left = left or (f.seconds_left, f.seconds_left)
        self.say(f.line(left))
        self.bar.total = self.PHASES + f.planned
        self.bar.n = self.PHASES + f.done
        self.bar.set_postfix_str(f"verification, {span(*left)} left")

    def close(self) -> None:
        self.bar.close()
