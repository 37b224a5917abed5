"""Error types of the engine.

Every error raised for bad input is a :class:`SemcollabError` whose message names the
file, line, column or id at fault, so the CLI and the dashboard can show it as is.
"""
from __future__ import annotations


class SemcollabError(Exception):
    """Base class: a problem the user can fix (bad input, missing data, bad config)."""


class DataError(SemcollabError):
    """Input data is malformed: missing columns, bad lines, unknown or duplicate ids."""


class VectorError(SemcollabError):
    """Precomputed vectors are unusable: ids do not match, NaN/inf or zero-norm rows."""


class ConfigError(SemcollabError):
    """A configuration value is invalid."""


class FetchError(SemcollabError):
    """A built-in dataset could not be fetched or failed its checksum."""


class RunError(SemcollabError):
    """A saved run is missing, incomplete or from an incompatible schema."""


class DataWarning(UserWarning):
    """Input data was read, but not as written: bad bytes replaced, items without metadata, ..."""


class CacheWarning(UserWarning):
    """A cache entry (tuning outcome, encoded vectors) could not be read: it is rebuilt, and the
    message names the file."""
