"""Where independent pieces of work run: in this process (``local``, the default) or on a Ray cluster.

The heavy stages hand their independent jobs (one ranked list per system and part, one fusion curve
per part and method, one run per regime of a sweep) to an :class:`Executor`:
``executor.map(fn, jobs, desc=..., **shared)`` returns ``[fn(job, **shared) for job in jobs]`` in job
order. ``shared`` holds what every job reads (models, the split): the Ray executor puts each value
in the object store once and passes references, so a job ships only its own small argument. The
results are the same whichever executor ran them (every job is deterministic; tested).

- :class:`LocalExecutor`: a loop in this process. Nothing to start, what ``make app`` and every
  default run use.
- :class:`RayExecutor`: ``ray.remote`` tasks on the cluster at ``address`` (``"auto"``, ``HOST:PORT``,
  or ``$SEMCOLLAB_RAY_ADDRESS``); without an address it starts a local cluster for this process and
  shuts it down on :meth:`close`. A cluster it only connected to is left running. Each node needs
  semcollab installed (``pip install -e '.[distributed]'``) and, for sweeps, the runs folder on a
  path every node can write (a shared file system), or a single-node cluster.

:func:`get_executor` is the factory (as ``implicit`` picks its backends).
"""
from __future__ import annotations

import os
from typing import Any, Callable, Sequence

from tqdm.auto import tqdm

from .errors import ConfigError

EXECUTORS = ("local", "ray")


class LocalExecutor:
    """Jobs one after the other in this process."""

    name = "local"

    def map(self, fn: Callable, jobs: Sequence, desc: str = "", progress: bool = False, gpus_per_job: float = 0.0,
            **shared: Any) -> list:
        return [fn(job, **shared) for job in tqdm(jobs, desc=desc, disable=not progress, leave=False)]

    def gpus(self) -> float:
        return 0.0

    def close(self) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}


def _call(fn: Callable, job: Any, **shared: Any) -> Any:
    return fn(job, **shared)


class RayExecutor:
    """Jobs as Ray tasks (one CPU each); shared values put in the object store once per :meth:`map`."""

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None):
        try:
            import ray
        except ImportError:  # pragma: no cover - the extra is installed in CI
            raise ConfigError("--executor ray needs Ray: pip install -e '.[distributed]'") from None
        self.ray = ray
        self.address = address or os.environ.get("SEMCOLLAB_RAY_ADDRESS") or None
        self.started = False
        if not ray.is_initialized():
            kw = {"include_dashboard": False, "log_to_driver": False}
            if self.address:
                ray.init(address=self.address, **kw)
            else:
                ray.init(num_cpus=num_cpus, **kw)
                self.started = True
        self._task = ray.remote(num_cpus=1)(_call)

    def map(self, fn: Callable, jobs: Sequence, desc: str = "", progress: bool = False, gpus_per_job: float = 0.0,
            **shared: Any) -> list:
        """``gpus_per_job``: GPUs each task requests from Ray (a sweep asks for one per regime where the
        cluster has GPUs; Ray then places each run on its own device)."""
        refs = {k: self.ray.put(v) for k, v in shared.items()}
        task = self._task.options(num_gpus=gpus_per_job) if gpus_per_job else self._task
        pending = [task.remote(fn, job, **refs) for job in jobs]
        bar = tqdm(total=len(pending), desc=desc, disable=not progress, leave=False)
        left = list(pending)
        while left:  # wait in any order for the bar; results are read back in job order below
            done, left = self.ray.wait(left, num_returns=1)
            bar.update(len(done))
        bar.close()
        return self.ray.get(pending)

    def gpus(self) -> float:
        """GPUs in the cluster."""
        return float(self.ray.cluster_resources().get("GPU", 0))

    def close(self) -> None:
        if self.started and self.ray.is_initialized():
            self.ray.shutdown()
            self.started = False

    def describe(self) -> dict[str, Any]:
        res = self.ray.cluster_resources()
        return {"name": self.name, "address": self.address or "local cluster started by this run",
                "cpus": float(res.get("CPU", 0)), "gpus": float(res.get("GPU", 0))}


def get_executor(name: str | None = "local", address: str | None = None) -> LocalExecutor | RayExecutor:
    """``local`` (default) or ``ray`` (``address``: ``auto``, ``HOST:PORT``; default
    ``$SEMCOLLAB_RAY_ADDRESS``, else a local cluster started for this process)."""
    name = (name or "local").lower()
    if name == "local":
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(address)
    raise ConfigError(f"unknown executor {name!r}: use one of {list(EXECUTORS)}")
