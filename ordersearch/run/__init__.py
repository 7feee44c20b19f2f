"""The ``ordersearch run`` job: configuration, pipeline, the run folder it writes, its report and figures."""

from .config import DEFAULT_ESTIMATOR, DEFAULT_STRATEGIES, RunConfig
from ..models.context_weights import load_weights, save_weights, weights_file
from .folder import COLUMNS, read_evaluations, read_report_seeds, run_folders, stored_weights
from .pipeline import Cheap, run, scorer_rate, search_only
from .plots import FIGURES, plot, plot_run
from .result import Placement, RunResult
from .summary import order_answer, summary, terminal_table, trust_line

__all__ = [
    "COLUMNS",
    "Cheap",
    "DEFAULT_ESTIMATOR",
    "DEFAULT_STRATEGIES",
    "FIGURES",
    "Placement",
    "RunConfig",
    "RunResult",
    "load_weights",
    "order_answer",
    "plot",
    "plot_run",
    "read_evaluations",
    "read_report_seeds",
    "run",
    "run_folders",
    "save_weights",
    "scorer_rate",
    "search_only",
    "stored_weights",
    "summary",
    "terminal_table",
    "trust_line",
    "weights_file",
]
