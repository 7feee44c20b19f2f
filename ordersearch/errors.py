"""The toolkit's own error types.

Every problem with user input (a malformed schedule file, an impossible patch
size, ...) is raised as an :class:`OrdersearchError` whose message is one line
that names the problem. The CLI prints that line and exits with code 2.
"""

import re


class OrdersearchError(Exception):
    """Base class of every error ordersearch raises about user input."""


class ScheduleError(OrdersearchError, ValueError):
    """A schedule grid, order or file is not valid."""


class LatentError(OrdersearchError, ValueError):
    """A latent file or latent set is not valid."""


class ImageError(OrdersearchError, ValueError):
    """An image cannot be read or is unusable."""


_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s'\"]*:)[^@\s'\"]+@")
#: the password of a URL known to be one: everything from the user's colon to the last @ before the host
_GIVEN_PASSWORD = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^:/@]*:(?P<secret>.*)@[^@]*$", re.S)
_PARAM_PASSWORD = re.compile(r"(?P<head>\bpassword=)[^&\s'\"]+", re.IGNORECASE)


def redact(text: str, *urls: str | None) -> str:
    """``text`` with every database password masked as ``***``.

    Masks ``scheme://user:PASSWORD@host`` and ``password=...`` anywhere in the
    text (a password there ends at a quote or a space), and each password of
    the given ``urls``, whatever characters it holds, wherever it appears (a
    driver may quote it alone in its own message).
    """
    for url in urls:
        m = _GIVEN_PASSWORD.match(url or "")
        if m and m["secret"]:
            text = text.replace(m["secret"], "***")
    text = _URL_PASSWORD.sub(lambda m: m["head"] + "***@", text)
    return _PARAM_PASSWORD.sub(lambda m: m["head"] + "***", text)


def printable(text: str) -> str:
    """``text`` with every unprintable character (line breaks, terminal controls) escaped, as ``\\x1e``:
    a file name holding a newline or an escape sequence can neither split an error line nor drive a
    terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
