"""Best of N random orders: the baseline every search must beat for its effort."""

from __future__ import annotations

import numpy as np

from .base import Session, Strategy, SearchResult, order_to_schedule


class RandomOrders(Strategy):
    """Seeded random permutations until the budget's trials (default 100) or seconds run out."""

    name = "random"

    def __init__(self, seed: int = 0, default_trials: int = 100):
        self.seed, self.default_trials = seed, default_trials

    def _run(self, session: Session) -> SearchResult:
        n = session.patch
        rng = np.random.default_rng(self.seed)
        trials = session.budget.trials or self.default_trials
        while session.schedules < trials and not session.out_of_budget():
            session.rate(order_to_schedule(rng.permutation(n * n), n))
        return session.result(self.name, session.best_schedule, session.best_rate)
