"""The toolkit's own error types.

Every problem with user input (a malformed schedule file, an impossible patch
size, ...) is raised as an :class:`OrdersearchError` whose message is one line
that names the problem. The CLI prints that line and exits with code 2.
"""


class OrdersearchError(Exception):
    """Base class of every error ordersearch raises about user input."""


class ScheduleError(OrdersearchError, ValueError):
    """A schedule grid, order or file is not valid."""


class LatentError(OrdersearchError, ValueError):
    """A latent file or latent set is not valid."""


class ImageError(OrdersearchError, ValueError):
    """An image cannot be read or is unusable."""
