"""The engine localising inputs into the results folder, in its own process, as the
Slicer module runs it (its process helpers)."""

from __future__ import annotations

import logging
from pathlib import Path

from CXRWeakLocModuleLib import ENGINE_ROOT
from CXRWeakLocModuleLib.logic import stageText
from CXRWeakLocModuleLib.process import EngineProcess, Progress, engineCommand, engineEnvironment

__all__ = ["LocalisingJob"]

logger = logging.getLogger(__name__)


class LocalisingJob:
    """The engine localising inputs into the results folder, in its own process (inputs
    with complete results there are skipped, so a restart resumes)."""

    def __init__(self, inputs: list[Path], out_dir: Path, model: str, findings: str,
                 python: str) -> None:
        self.process = EngineProcess(
            engineCommand(python, inputs, out_dir, model, findings, overwrite=False),
            engineEnvironment(ENGINE_ROOT))
        self.count = len(inputs)
        self.stage, self.fraction, self.code = "", 0.0, None

    def poll(self) -> bool:
        """Collect the engine's progress; True once it has exited."""
        self.code, output = self.process.poll()
        for item in output:
            if isinstance(item, Progress):
                self.stage, self.fraction = stageText(item.stage), item.fraction
            else:
                logger.info("engine: %s", item)
        return self.code is not None

    @property
    def error(self) -> str:
        """One line when the engine failed as a whole (1 is "some inputs failed")."""
        return "" if self.code in (None, 0, 1) else self.process.lastMessage or (
            f"the engine exited with code {self.code}")
