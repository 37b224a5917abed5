"""The dashboard's data layer: one module per page (``overview``, ``maps``, ``items``, ``hits``, ``fusion``,
``users``, ``regimes``, ``alignment``, ``structure``) and ``common`` (the run, its cache key, its system
vocabulary, the item frame). Typed functions ``fn(key: RunKey, ...)`` cached per process; every number comes
from the run or from :mod:`analysis` (run-level reads: :mod:`analysis.run_queries`)."""
