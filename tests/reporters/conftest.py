"""Models and analyses shared by the reporters tests, and the golden cases.

`update_golden.py` imports this file too, so the golden files and the tests build the same
analyses the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision
from torch import nn

import torchtally

GOLDEN_DIR = Path(__file__).parent / "golden"
FORMATS = ("table", "arch", "json", "markdown", "parameters")


class InnerNet(nn.Module):
    """The inner module of the seed document's TestNet."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(10, 10)
        self.fc2 = nn.Linear(10, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.fc1(self.fc2(x))
        return out


class TestNet(nn.Module):
    """The seed document's example model (0.44K parameters, 0.4K flops, 40 activations)."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(10, 10)
        self.fc2 = nn.Linear(10, 10)
        self.inner = InnerNet()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.fc1(self.fc2(self.inner(x)))
        return out


class Head(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.fc(x)
        return out


class Neck(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gap = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.gap(x)
        return out


class Tricky(nn.Module):
    """Every case mmengine's printer treats specially.

    A single-child chain (``stem`` -> ``stem.0``, ``neck`` -> ``neck.gap``), a parameter-less
    module with flops, a container without forward, a shared module, unused modules (one without
    parameters), and modules run through ``.forward()`` (uncalled, counted in their parent).
    """

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
        self.blocks = nn.ModuleList([nn.Conv2d(8, 8, 1), nn.Conv2d(8, 8, 1)])
        self.unused = nn.Linear(3, 3)
        self.unused_act = nn.ReLU()
        self.neck = Neck()
        self.head = Head()
        self.shared = self.blocks[0]
        self.direct = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        x = self.shared(x)
        x = self.neck(x).flatten(1)
        x = self.head.forward(x)
        out: torch.Tensor = self.direct.forward(x)
        return out


class Wrapper(nn.Module):
    """A model whose only child does all the work: the table's model row becomes ``backbone``."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = Tricky()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.backbone(x)
        return out


def testnet() -> nn.Module:
    torch.manual_seed(0)
    return TestNet()


def resnet50() -> nn.Module:
    torch.manual_seed(0)
    model: nn.Module = torchvision.models.resnet50(weights=None)
    return model.eval()


# name -> (model builder, input_shape as mmengine takes it: batch size 1 is prepended,
# further arguments of torchtally.analyze)
CASES: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...], dict[str, Any]]] = {
    "testnet": (testnet, (10,), {}),
    "resnet50": (resnet50, (3, 224, 224), {}),
    "testnet_backward": (testnet, (10,), {"backward": True}),
}


def analyze_case(name: str) -> tuple[nn.Module, torchtally.Analysis]:
    """The model of golden case `name` and its analysis (as get_model_complexity_info makes it)."""
    build, input_shape, options = CASES[name]
    model = build()
    analysis = torchtally.analyze(model, input_shape=input_shape, warn_unsupported=False, **options)
    return model, analysis


def render_case(analysis: torchtally.Analysis) -> dict[str, str]:
    """Every golden format of one analysis, with default options."""
    return {fmt: analysis.render(fmt) for fmt in FORMATS}


def golden_path(case: str, fmt: str) -> Path:
    return GOLDEN_DIR / f"{case}.{fmt}.txt"


_analyzed: dict[str, tuple[nn.Module, torchtally.Analysis]] = {}


def cached_case(name: str) -> tuple[nn.Module, torchtally.Analysis]:
    if name not in _analyzed:
        _analyzed[name] = analyze_case(name)
    return _analyzed[name]


@pytest.fixture(scope="session", params=list(CASES))
def golden_case(request: pytest.FixtureRequest) -> tuple[str, nn.Module, torchtally.Analysis]:
    model, analysis = cached_case(request.param)
    return request.param, model, analysis


@pytest.fixture(scope="session")
def testnet_case() -> tuple[nn.Module, torchtally.Analysis]:
    return cached_case("testnet")


@pytest.fixture(scope="session")
def resnet50_case() -> tuple[nn.Module, torchtally.Analysis]:
    return cached_case("resnet50")


@pytest.fixture(scope="session")
def tricky_analysis() -> torchtally.Analysis:
    return torchtally.analyze(Tricky(), input_shape=(3, 16, 16), warn_unsupported=False)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "golden_format" in metafunc.fixturenames:
        metafunc.parametrize("golden_format", FORMATS)


@pytest.fixture(scope="session")
def read_golden() -> Callable[[str, str], str]:
    """Read golden file ``<case>.<fmt>.txt`` without its final newline."""

    def read(case: str, fmt: str) -> str:
        return golden_path(case, fmt).read_text(encoding="utf-8").removesuffix("\n")

    return read


@pytest.fixture(scope="session")
def build_model() -> Callable[[str], nn.Module]:
    """A fresh model of golden case `name` (seeded, in eval mode where it matters)."""
    return lambda name: CASES[name][0]()


@pytest.fixture(scope="session")
def build_tricky() -> Callable[[bool], nn.Module]:
    """`Tricky`, or `Wrapper` around it when `wrapped`."""
    return lambda wrapped: Wrapper() if wrapped else Tricky()


def table_rows(table: str) -> list[list[str]]:
    """Rows of a ``| a | b |`` table, cells stripped, borders and rules left out."""
    return [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in table.splitlines()
        if line.startswith("|") and not set(line) <= set("|:- ")
    ]


@pytest.fixture(scope="session")
def parse_table() -> Callable[[str], list[list[str]]]:
    return table_rows
