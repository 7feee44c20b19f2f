"""Everything ``ordersearch run`` takes besides the data."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..defaults import DEFAULT_ESTIMATOR, DEFAULT_STRATEGIES
from ..evaluation.config import TrainConfig

#: label prefix of the negative controls run verifies (the table's worst order, random orders)
CONTROL = "control-"


@dataclass
class RunConfig:
    """Patch, search, verification and output settings of one run."""

    patch: int
    kernel: int = 5
    strategies: tuple[str, ...] = DEFAULT_STRATEGIES
    trials: int = 200
    seconds: float | None = None
    verify_top: int = 2
    seeds: int = 2  # selection seeds to start with; candidates unresolved on val get more, up to max_seeds
    max_seeds: int = 4
    report_seeds: int = 2  # fresh seeds of every candidate, trained after every choice: the reported test numbers
    estimator: str = DEFAULT_ESTIMATOR
    device: str = "auto"
    out: Path = Path("runs")
    storage: str | None = None
    seed: int = 0
    train: TrainConfig = field(default_factory=TrainConfig)
    #: where the leader is the lowest on val: "whole" images (what a codec spends, the border included) or their
    #: "interior" (where translates of an order cannot differ)
    choose_on: str = "whole"

    @property
    def choice_split(self) -> str:
        return {"whole": "val", "interior": "val-interior"}[self.choose_on]

    @property
    def folder(self) -> Path:
        return Path(self.out) / f"patch{self.patch}"
