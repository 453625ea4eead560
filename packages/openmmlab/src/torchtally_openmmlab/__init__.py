"""torchtally's OpenMMLab model source: ``torchtally CONFIG.py`` for mmengine config files.

Loading this plugin imports nothing heavy: mmengine and the codebase are imported when a config
file is read (`torchtally_openmmlab.source`).
"""

from __future__ import annotations

from typing import Any

from torchtally.plugin import hookimpl


@hookimpl
def torchtally_sources() -> list[Any]:
    from torchtally_openmmlab.source import OPENMMLAB_SOURCE

    return [OPENMMLAB_SOURCE]
