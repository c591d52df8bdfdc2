"""What every bench prints about the machine its numbers come from."""

from __future__ import annotations

import os
import platform
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ("unknown CPU" where there is none)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return "unknown CPU"
    for line in lines:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def host() -> str:
    """The system, its CPUs and Python: `Linux 6.18, 2 × AMD EPYC ..., Python 3.11.7`."""
    return (
        f"{platform.system()} {platform.release()}, {os.cpu_count()} × {cpu_model()}, "
        f"Python {platform.python_version()}"
    )
