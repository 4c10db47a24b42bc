"""`python -m sageattention info|check|bench` on whatever hardware runs the tests."""

from __future__ import annotations

import subprocess
import sys

import torch

import sageattention.__main__ as cli


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "sageattention", *args], capture_output=True, text=True, timeout=600)


def test_info_reports_versions_and_dispatch():
    res = run_cli("info")
    assert res.returncode == 0, res.stderr
    assert f"torch         {torch.__version__}" in res.stdout
    assert "sm_90" in res.stdout and "dispatch table" in res.stdout


def test_check_prints_accuracy_rows_and_passes():
    res = run_cli("check")
    assert res.returncode == 0, res.stdout + res.stderr
    rows = [line for line in res.stdout.splitlines() if line.rstrip().endswith(" ok")]
    assert len(rows) == len(cli._check_cases(torch.device("cpu")))
    assert "all checks passed" in res.stdout


def test_check_fails_on_a_wrong_kernel(monkeypatch, capsys):
    """A kernel that returns wrong numbers makes `check` exit non-zero (it is not a rubber stamp)."""
    monkeypatch.setattr(cli, "sageattn", lambda q, k, v, **kw: q.flip(-2))
    assert cli.main(["check", "--device", "cpu"]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_bench_on_cpu_says_so():
    res = run_cli("bench", "--seqlen", "64", "--heads", "2", "--batch", "1", "--head-dim", "64", "--device", "cpu")
    assert res.returncode == 0, res.stderr
    assert "no GPU" in res.stdout or "cpu" in res.stdout.lower()
    assert "sageattn (reference)" in res.stdout and "SDPA math" in res.stdout
