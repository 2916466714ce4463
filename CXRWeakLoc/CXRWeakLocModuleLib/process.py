"""The engine in a child process: start it, poll it without blocking, cancel it.

Slicer's main thread never waits on the engine: a reader thread collects the
child's output lines and :meth:`EngineProcess.poll` hands them over. tqdm's
carriage returns count as line ends, so each progress update is a line; its
description is the engine's stage (``reading``, ``localising``, ``exporting``).
"""

from __future__ import annotations

import enum
import os
import queue
import re
import signal
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["State", "Progress", "EngineProcess", "engineCommand", "engineEnvironment"]

#: A tqdm line: ``<stage>:  40%|####      | 2/5 [...]``.
_PROGRESS = re.compile(r"(?:(?P<stage>[A-Za-z][\w ]*?): *)?(?P<percent>\d{1,3})%\|")


class State(enum.Enum):
    """Where one run stands (SlicerMONAIAuto3DSeg's state machine)."""

    IDLE = "Idle"
    INITIALIZING = "Initializing"
    RUNNING = "Running"
    IMPORTING = "Importing"
    FINISHED = "Finished"
    CANCELLED = "Cancelled"
    FAILED = "Failed"

    @property
    def busy(self) -> bool:
        return self in (State.INITIALIZING, State.RUNNING, State.IMPORTING)


@dataclass(frozen=True)
class Progress:
    """A progress line of the engine: its stage and the fraction of inputs done."""

    stage: str
    fraction: float


def engineCommand(
    python: str,
    inputs: Sequence[Path],
    outDir: Path,
    model: str,
    findings: str = "positive",
    device: str = "auto",
    overwrite: bool = True,
) -> list[str]:
    """The ``localize`` command line of the engine's CLI (without ``overwrite``, inputs
    with complete results in ``outDir`` are skipped)."""
    return [
        python, "-m", "CXRWeakLocLib", "localize", *map(str, inputs),
        "--out", str(outDir), "--model", model, "--findings", findings,
        "--device", device, *(["--overwrite"] if overwrite else []),
    ]


def engineEnvironment(engineRoot: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with ``engineRoot`` (the folder holding
    CXRWeakLocLib) first on PYTHONPATH, so the child imports the engine beside the module."""
    env = dict(os.environ if base is None else base)
    paths = [str(engineRoot), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class EngineProcess:
    """One command in a child process (its own process group, so cancel ends it all)."""

    def __init__(self, args: Sequence[str], env: dict[str, str] | None = None) -> None:
        self.args = list(args)
        self.env = env
        self.progress: Progress | None = None
        self.lastMessage = ""
        self._lines: queue.Queue[str] = queue.Queue()
        self._process: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> None:
        options: dict = {}
        if os.name == "nt":
            info = subprocess.STARTUPINFO()
            info.dwFlags |= subprocess.STARTF_USESHOWWINDOW  # no console window
            options = {"startupinfo": info,
                       "creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
        else:
            options = {"start_new_session": True}
        self._process = subprocess.Popen(
            self.args, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, text=True, errors="replace", **options,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            self._lines.put(line.rstrip())

    def poll(self) -> tuple[int | None, list[str | Progress]]:
        """The exit code (None while running) and, in order, the output lines and the
        progress updates since the last poll."""
        if self._process is None or self._reader is None:
            raise RuntimeError("the engine process was not started")
        code = self._process.poll()
        if code is not None and self._reader.is_alive():
            code = None  # exited, but its last output is still being read
        output: list[str | Progress] = []
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                break
            match = _PROGRESS.search(line)
            if match:
                progress = Progress(match.group("stage") or "",
                                    int(match.group("percent")) / 100.0)
                if progress != self.progress:
                    self.progress = progress
                    output.append(progress)
            elif line.strip():
                self.lastMessage = line.strip()
                output.append(line)
        return code, output

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def cancel(self, grace: float = 3.0) -> None:
        """End the process and its children: terminate, then kill after ``grace`` seconds."""
        if not self.running:
            return
        assert self._process is not None
        if os.name == "nt":
            subprocess.run(["taskkill", "/F", "/T", "/PID", str(self._process.pid)],
                           capture_output=True, check=False)
        else:
            os.killpg(self._process.pid, signal.SIGTERM)
        try:
            self._process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait()
