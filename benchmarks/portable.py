"""Results that read the same on any machine: no checkout or temporary paths in them."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

REPO = Path(__file__).resolve().parents[1]


def scrub(text: str, temporary: Iterable[Path] = ()) -> str:
    """Return text with temporary folders as <tmp> and the checkout's paths made relative."""
    for folder in temporary:
        text = text.replace(str(folder), '<tmp>')
    text = text.replace(f'{REPO}/', '').replace(str(REPO), '.')
    return text.replace(f'{Path.home()}/', '~/')
