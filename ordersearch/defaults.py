"""Names and defaults the command line shows before anything heavy is imported (``--help`` never loads torch).

The registries they name check themselves against these lists (tests/test_cli.py).
"""

#: search strategies ``run`` uses unless told otherwise
DEFAULT_STRATEGIES = ("dp", "greedy", "optuna-tpe")
#: the estimators of ``estimators.ESTIMATORS``, by name, and run's default
ESTIMATOR_NAMES = ("linear-gaussian", "heldout", "shared", "any-order", "dedicated-set")
DEFAULT_ESTIMATOR = "linear-gaussian"
