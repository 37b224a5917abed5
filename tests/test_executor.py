"""The executor layer: the same results in this process and on a real (local) Ray cluster."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import analysis
from analysis.errors import ConfigError
from analysis.executor import LocalExecutor, RayExecutor, get_executor
from analysis.runstore import TABLES, VECTORS
from conftest import QUICK_TUNING

SMALL = {"n_users": 250, "n_items": 300, "mean_per_user": 30.0}


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")  # installed by the test extra; skipped only outside the project's env
    # one logical GPU (Ray schedules it as a resource; no device needed): GPU requests are exercised too
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
    import sys

    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test module
    yield RayExecutor()  # attached to the cluster the test started: it does not shut it down
    ray.shutdown()


def _scaled(job, scale, offset):
    return (np.asarray(scale) * job + offset).tolist()


def test_both_executors_map_in_job_order_with_shared_values(ray_cluster):
    jobs, scale = [3, 1, 2, 0], np.arange(4.0)
    want = [(scale * j + 1).tolist() for j in jobs]
    assert LocalExecutor().map(_scaled, jobs, scale=scale, offset=1) == want
    assert ray_cluster.map(_scaled, jobs, scale=scale, offset=1) == want
    assert ray_cluster.describe()["cpus"] == 2.0 and not ray_cluster.started
    assert ray_cluster.gpus() == 1.0 and LocalExecutor().gpus() == 0.0
    with pytest.raises(ConfigError, match="unknown executor"):
        get_executor("spark")


def _gpu_ids(job):
    import ray

    return ray.get_gpu_ids()


def test_jobs_can_request_a_gpu_each(ray_cluster):
    """A sweep asks one GPU per regime where the cluster has GPUs: Ray gives each task its own."""
    assert ray_cluster.map(_gpu_ids, [0, 1, 2], gpus_per_job=1.0) == [[0], [0], [0]]
    assert ray_cluster.map(_gpu_ids, [0, 1]) == [[], []]


def _cfg(**kw):
    return analysis.RunConfig(dataset="synthetic", synthetic=SMALL, n_boot=100, n_alphas=6, tuning=QUICK_TUNING,
                              umap=False, **kw)


def _same_runs(a, b) -> None:
    for t in TABLES:
        x, y = a.table(t), b.table(t)
        if t == "tuning":  # seconds and cache hits are not results
            x, y = x.drop(columns=["seconds", "cache_hit"]), y.drop(columns=["seconds", "cache_hit"])
        pd.testing.assert_frame_equal(x, y, check_exact=False, rtol=1e-12, atol=1e-12)
    for v in VECTORS:
        np.testing.assert_array_equal(a.vectors(v), b.vectors(v))
    assert json.dumps(_untimed(a.manifest["summary"]), sort_keys=True) == json.dumps(_untimed(b.manifest["summary"]),
                                                                                      sort_keys=True)


def _untimed(d):
    """The summary without its timings (seconds are not results)."""
    if isinstance(d, dict):
        return {k: _untimed(v) for k, v in d.items() if k not in ("timings", "seconds") and not k.endswith("_s")}
    return [_untimed(v) for v in d] if isinstance(d, list) else d


def test_a_run_on_ray_equals_the_local_run(ray_cluster, tmp_path):
    local = analysis.run(_cfg(), out=tmp_path / "local", log=lambda m: None)
    on_ray = analysis.run(_cfg(executor="ray"), out=tmp_path / "ray", log=lambda m: None, executor=ray_cluster)
    assert local.manifest["executor"]["name"] == "local" and on_ray.manifest["executor"]["name"] == "ray"
    assert _cfg().key() == _cfg(executor="ray").key()  # the executor is not part of what a run is
    _same_runs(local, on_ray)


def test_a_two_regime_sweep_on_ray_equals_the_local_sweep(ray_cluster, tmp_path):
    local = analysis.sweep(_cfg(), tmp_path / "local", keep=(1.0, 0.5), cold=(), log=lambda m: None)
    on_ray = analysis.sweep(_cfg(executor="ray"), tmp_path / "ray", keep=(1.0, 0.5), cold=(), log=lambda m: None)
    pd.testing.assert_frame_equal(local.drop(columns=["path"]), on_ray.drop(columns=["path"]))
    assert sorted(p.name for p in (tmp_path / "ray").iterdir() if p.is_dir()) == ["keep-100", "keep-50"]
    _same_runs(analysis.open_run(tmp_path / "local" / "keep-50"), analysis.open_run(tmp_path / "ray" / "keep-50"))
