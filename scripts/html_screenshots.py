"""Screenshots of the HTML report for the docs: ResNet-50 and Llama-2-70B's shape.

    .venv/bin/python scripts/html_screenshots.py   # writes docs/html-report-*.png

Needs Debian's chromium (apt-get install chromium) and Playwright (requirements-dev.txt).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch
import torchvision
from transformers import LlamaConfig, LlamaForCausalLM

import torchtally

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from torchtally_browser import Page, launched_browser  # noqa: E402

LLAMA_70B = LlamaConfig(
    hidden_size=8192,
    intermediate_size=28672,
    num_hidden_layers=80,
    num_attention_heads=64,
    num_key_value_heads=8,
    vocab_size=32000,
)


def analyses() -> dict[str, tuple[str, torchtally.Analysis]]:
    resnet = torchvision.models.resnet50().eval()
    with torch.device("meta"):
        llama = LlamaForCausalLM(LLAMA_70B)
    tokens = {"input_ids": torch.zeros(1, 2048, dtype=torch.long), "use_cache": False}
    return {
        "resnet50": ("ResNet-50", torchtally.analyze(resnet, torch.randn(1, 3, 224, 224))),
        "llama": ("Llama-2-70B shape, 2048 tokens", torchtally.analyze(llama, tokens)),
    }


def main() -> None:
    with launched_browser() as browser, tempfile.TemporaryDirectory() as folder:
        for name, (title, analysis) in analyses().items():
            path = analysis.save(Path(folder) / f"{name}.html", "html", title=title)
            print(f"{name}: {path.stat().st_size / 1e6:.2f} MB of HTML")
            page = Page(browser, path, width=1400, height=860)
            if name == "llama":
                page.page.click("[aria-label='expand model.layers']")
                page.page.click("[aria-label='expand model.layers.0']")
                page.page.click("#tab-modules .row[data-name='model.layers.0.mlp'] .name")
            else:
                page.page.click("#tab-modules .head [data-col=flops]")
                page.page.click("#tab-modules .row[data-name='layer3'] .name")
            page.page.screenshot(path=str(ROOT / "docs" / f"html-report-{name}.png"))
            page.page.click("button[data-tab=map]")
            page.page.screenshot(path=str(ROOT / "docs" / f"html-report-{name}-treemap.png"))
            assert not page.errors, page.errors
            page.close()


if __name__ == "__main__":
    main()
