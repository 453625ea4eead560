"""The zoo against fvcore and mmengine, operator by operator.

fvcore traces every zoo model (torch.jit.trace). torchtally's by_operator flops equal fvcore's for
every operator but those listed in tests/vision/fvcore_differences.py, where both sides' counts
are worked out from the recorded calls and the reason is given. mmengine's counting is a fork of
fvcore's: on a few models it is checked to give fvcore's numbers (scripts/vision_vs_fvcore.py
runs it on all of them for docs/vision-vs-fvcore.md).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import pytest
from vision.conftest import ZooRun, quiet
from vision.fvcore_differences import Difference, differences, installed_plugins

import torchtally

# Test-only dependencies (requirements-dev.txt): the module is skipped without them.
fv = pytest.importorskip("fvcore.nn")
mm = pytest.importorskip("mmengine.analysis")

pytestmark = pytest.mark.slow  # peer cross-check on the reference zoo

# One classifier, one detector (roi_align, nms), the 3d pooling fvcore misses.
MMENGINE_CHECKED = {"regnet_y_400mf", "fasterrcnn_resnet50_fpn", "r3d_18"}

Analyzer = fv.FlopCountAnalysis | mm.FlopAnalyzer


@dataclass
class Compared:
    ours: torchtally.Analysis
    fvcore: dict[str, float]
    fvcore_total: float
    documented: tuple[Difference, ...]


def peer_flops(analyzer: Analyzer) -> tuple[dict[str, float], float]:
    analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    # torchvision warns about torch.tensor(tensor) copies and torch.jit.script while traced
    with quiet("fvcore", "mmengine"), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        return dict(analyzer.by_operator()), analyzer.total()


@pytest.fixture(scope="module")
def compared(zoo: ZooRun) -> Compared:
    fvcore, total = peer_flops(fv.FlopCountAnalysis(zoo.model, zoo.spec.inputs()))
    documented = differences(zoo.spec.name, installed_plugins())
    return Compared(zoo.analysis, fvcore, total, documented)


def test_operators_both_count_are_equal(compared: Compared) -> None:
    ours = compared.ours.by_operator()
    documented = {d.operator for d in compared.documented}
    shared = (set(ours) | set(compared.fvcore)) - documented
    assert shared  # every model has convolutions or matmuls both count
    assert {op: ours.get(op, 0) for op in shared} == {
        op: compared.fvcore.get(op, 0) for op in shared
    }


def test_differences_are_the_documented_ones(compared: Compared) -> None:
    ours = compared.ours.by_operator()
    for difference in compared.documented:
        expected_ours = difference.ours(compared.ours)
        expected_theirs = difference.theirs(compared.ours)
        assert ours.get(difference.operator, 0) == expected_ours, difference.operator
        assert compared.fvcore.get(difference.operator, 0) == expected_theirs, difference.operator
        assert expected_ours != expected_theirs, f"{difference.operator} no longer differs"


def test_totals_differ_by_the_documented_differences(compared: Compared) -> None:
    gap = sum(d.ours(compared.ours) - d.theirs(compared.ours) for d in compared.documented)
    assert compared.ours.total() - compared.fvcore_total == gap


def test_mmengine_counts_as_fvcore(zoo: ZooRun, compared: Compared) -> None:
    if zoo.spec.name not in MMENGINE_CHECKED:
        pytest.skip("mmengine is compared on a few models only (it is fvcore's code)")
    mmengine, total = peer_flops(mm.FlopAnalyzer(zoo.model, zoo.spec.inputs()))
    assert mmengine == compared.fvcore
    assert total == compared.fvcore_total
