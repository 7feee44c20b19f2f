"""ordersearch: find, prove and export the best decoding order of multistage context models."""

from ._version import __version__
from .errors import OrdersearchError, ScheduleError
from .schedule import NAMED_SCHEDULES, Schedule
from .schedule_io import ScheduleMeta, load_schedule, save_schedule

__all__ = [
    "NAMED_SCHEDULES",
    "OrdersearchError",
    "Schedule",
    "ScheduleError",
    "ScheduleMeta",
    "load_schedule",
    "save_schedule",
    "__version__",
]
