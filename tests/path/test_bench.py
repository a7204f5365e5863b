"""The micro-benchmark runs (its numbers are printed, never asserted)."""

from __future__ import annotations

from tests.path import bench_path


def test_benchmark_runs(tmp_path, capsys):
    rows = bench_path.run(str(bench_path.build_tree(tmp_path / "rootfs")), n=50)
    assert len(rows) >= 2 * len(bench_path.TYPICAL)
    assert all(us > 0 for _, us in rows)
