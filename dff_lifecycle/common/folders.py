"""Folders a run writes into (weights, results): made, or refused in one line (no ROS)."""
from __future__ import annotations

import os
from pathlib import Path


def writable_folder(path: Path, label: str) -> Path:
    """
    Create `path` if needed and check that it is a writable folder.

    ValueError naming `label` (e.g. "--out runs/x") when it cannot be one: a file stands
    there, a parent cannot be made, or it is not writable.
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ValueError(f'{label}: exists and is not a folder') from None
    except OSError as exc:
        raise ValueError(f'{label}: cannot create it ({exc.strerror})') from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f'{label}: not writable')
    return path
