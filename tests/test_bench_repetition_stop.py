"""The scale search of benchmarks/bench_repetition_stop.py (the benchmark itself runs on GPU)."""

import importlib.util
from pathlib import Path

spec = importlib.util.spec_from_file_location(
    "bench_repetition_stop", Path(__file__).parents[1] / "benchmarks" / "bench_repetition_stop.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_pick_scale_bisects_to_the_share_closest_to_the_target():
    shares = {s: min(1.0, s / 400) for s in bench.SCALES}  # grows with the scale
    probed = []

    def share_at(scale):
        probed.append(scale)
        return shares[scale]

    scale, seen = bench.pick_scale(share_at, 0.5)
    assert scale == 192.0 and seen == {s: shares[s] for s in probed}  # 0.48, the closest probed
    assert len(probed) <= 5 and len(set(probed)) == len(probed)
    assert bench.pick_scale(lambda s: 0.0, 0.5)[0] == bench.SCALES[-1]  # never loops: the largest
    assert bench.pick_scale(lambda s: 1.0, 0.5)[0] == bench.SCALES[0]  # always loops: the smallest
