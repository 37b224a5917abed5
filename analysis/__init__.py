"""semcollab engine: semantic vs collaborative views of a catalogue, importable without Streamlit.

Notebook use::

    import analysis
    r = analysis.run(analysis.RunConfig(dataset="ml-100k"), out="runs/ml-100k")
    r.table("metrics")
    r = analysis.open_run("runs/ml-100k")
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .config import BUILTIN_DATASETS, RunConfig
from .errors import SemcollabError
from .runstore import Run, open_run

__all__ = ["BUILTIN_DATASETS", "Run", "RunConfig", "SemcollabError", "open_run", "run", "sweep"]
__version__ = "0.1.0"


def run(config: RunConfig, out=None, force: bool = False, log=print, progress: bool = True, executor=None) -> Run:
    """Compute (or reuse from cache) the run for ``config``; see :func:`analysis.pipeline.run`."""
    from .pipeline import run as _run

    return _run(config, out=out, force=force, log=log, progress=progress, executor=executor)


def sweep(config: RunConfig, out, keep=(1.0, 0.5, 0.2, 0.1), cold=(0.2,), force: bool = False, log=print):
    """Run a list of regimes into sibling runs; see :func:`analysis.regimes.sweep`."""
    from .regimes import sweep as _sweep

    return _sweep(config, out, keep=keep, cold=cold, force=force, log=log)
