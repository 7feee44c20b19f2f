"""Dedicated evaluation: the training loop, measurement, statistics, verification and the evaluation store.

=====================  ====================================================
``TrainConfig``        the training protocol of a dedicated evaluation
``Evaluator``          data + protocol + device + store: ``evaluate(schedule, seed)``
``Evaluation``         one measurement (per image, per position, per stage)
``EvaluationStore``    finished evaluations and weights, in a folder or a database
``compare``            paired comparison of two schedules with an interval
``agreement``          rank agreement of a cheap estimator with dedicated rates
``verify``             dedicated training of labelled candidates, winner vs each
``train_loop``         the one training loop every trainer uses
``train_stacked``      K dedicated models trained as one stacked module (the GPU path)
``fine_tune``          the whole codec fine-tuned end to end with a schedule (``JointConfig``)
=====================  ====================================================
"""

from .config import LoopConfig, TrainConfig
from .evaluator import Evaluator, as_splits, data_fingerprint
from .joint import FineTuned, JointConfig, fine_tune
from .means import weighted_mean_se
from .record import Evaluation
from .statistics import (Agreement, Comparison, agreement, compare, detectable, larger_seed_variance,
                         order_agreement, pooled_seed_variance, rate_interval, seed_variance, sign_agreement)
from .store import EvaluationStore, evaluation_key, is_url, retry_table_race
from .training import Trained, train_dedicated, train_loop, train_stacked
from .verify import Verified, conclude, verify

__all__ = [
    "Agreement",
    "Comparison",
    "Evaluation",
    "EvaluationStore",
    "Evaluator",
    "FineTuned",
    "JointConfig",
    "LoopConfig",
    "TrainConfig",
    "Trained",
    "Verified",
    "agreement",
    "as_splits",
    "compare",
    "conclude",
    "data_fingerprint",
    "detectable",
    "evaluation_key",
    "fine_tune",
    "is_url",
    "larger_seed_variance",
    "order_agreement",
    "pooled_seed_variance",
    "rate_interval",
    "retry_table_race",
    "seed_variance",
    "sign_agreement",
    "train_dedicated",
    "train_loop",
    "train_stacked",
    "verify",
    "weighted_mean_se",
]
