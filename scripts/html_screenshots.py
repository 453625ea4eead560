"""Screenshots of the HTML report for the docs: ResNet-50 and Llama-2-70B's shape, a comparison
(ResNet-18 against ResNet-34) and a sweep (GPT-2 at 128 to 2048 tokens).

    .venv/bin/python scripts/html_screenshots.py   # writes docs/html-report-*.png

Needs Debian's chromium (apt-get install chromium) and Playwright (requirements-dev.txt).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch
import torchvision
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

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


def comparisons() -> dict[str, str]:
    """The pages of a diff and of a sweep, by screenshot name."""
    image = torch.randn(1, 3, 224, 224)
    small, large = (
        torchtally.analyze(builder().eval(), image, warn_unsupported=False)
        for builder in (torchvision.models.resnet18, torchvision.models.resnet34)
    )
    change = torchtally.diff(small, large, labels=["resnet18", "resnet34"])
    with torch.device("meta"):
        gpt2 = GPT2LMHeadModel(GPT2Config())
    lengths = (128, 512, 1024, 2048)
    analyses = tuple(
        torchtally.analyze(
            gpt2,
            {"input_ids": torch.zeros(1, n, dtype=torch.long), "use_cache": False},
            warn_unsupported=False,
        )
        for n in lengths
    )
    sweep = torchtally.Sweep(("seq_len",), tuple((n,) for n in lengths), analyses)
    return {"diff": change.render("html"), "sweep": sweep.render("html", title="GPT-2: seq_len")}


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
        for name, text in comparisons().items():
            path = Path(folder) / f"{name}.html"
            path.write_text(text, encoding="utf-8")
            page = Page(browser, path, width=1400, height=700)
            if name == "diff":
                page.page.click("[aria-label='expand layer1.2']")
            page.page.screenshot(path=str(ROOT / "docs" / f"html-report-{name}.png"))
            assert not page.errors, page.errors
            page.close()


if __name__ == "__main__":
    main()
