"""`make gpu-check` (benchmarks/gpu_check.py): a clear dry run without CUDA, and its comparison logic
(the device code on torch's CPU device against the host path) passing when equal, failing when not."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import gpu_check  # noqa: E402

from analysis.models.base import EmbeddingRecommender  # noqa: E402


def test_dry_run_without_cuda(monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main([]) == 0
    assert "no CUDA device" in capsys.readouterr().out


def test_check_on_the_cpu_device_finds_the_same_results():
    args = gpu_check._parse(["--device", "cpu", "--users", "1500", "--items", "900", "--per-user", "20",
                             "--eval-users", "1000", "--epochs", "1"])
    lines = []
    code, table = gpu_check.check(args, log=lines.append)
    assert code == 0
    assert "lists differing: 0 of 1,000 users, beyond float tolerance: 0" in "\n".join(table)
    assert table[-1] == "RESULT: same results within float tolerance"


def test_tolerance_accepts_near_ties_and_rejects_other_lists():
    U = np.array([[1.0], [1.0]], np.float32)
    V = np.array([[3.0], [2.0], [2.0 + 1e-7], [1.0]], np.float32)
    m = EmbeddingRecommender("m", U, V, np.ones(4, bool))
    users = np.arange(2)
    host = np.array([[0, 2, 1], [0, 2, 1]])
    near = np.array([[0, 1, 2], [0, 2, 1]])  # items 1 and 2 swapped: scores 1e-7 apart
    assert gpu_check._tolerated(m, users, host, near) == (1, 0)
    wrong = np.array([[0, 2, 3], [2, 0, 1]])  # item 3 (score 1) instead of item 1; 0 and 2 swapped
    assert gpu_check._tolerated(m, users, host, wrong) == (2, 2)
    padded = np.array([[0, 2, -1], [0, 2, 1]])
    assert gpu_check._tolerated(m, users, host, padded) == (1, 1)
