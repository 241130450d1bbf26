"""Exceptions raised by the store.

`ObjectMissing` is the one callers act on: a lookup that raises it (or its subclass
`ObjectCorrupted`) is a cache miss, and the stage recomputes and republishes its output.
"""

from collections.abc import Sequence
from typing import Any


class StoreError(Exception):
    """Base class of every error the store raises on purpose."""


class ObjectMissing(StoreError):
    """An object is absent or unusable: treat it as a cache miss and recompute it."""


class ObjectCorrupted(ObjectMissing):
    """An object failed an integrity check; it has been moved aside to quarantine/.

    `problems` lists what was found (`store.objects.Problem`: where, file, message).
    """

    def __init__(self, message: str, problems: Sequence[Any] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems)


class CatalogError(StoreError):
    """Rows could not be written to, or read from, a catalog table."""


class QueryError(StoreError):
    """A SQL query was refused or failed."""


class StoreWriteError(StoreError):
    """The store's filesystem refused a write (disk full, read-only, gone): nothing partial
    was published, and the same run again resumes once the cause is fixed."""
