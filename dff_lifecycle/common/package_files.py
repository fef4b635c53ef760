"""Where this package's own files are: params/ and launch/ in a checkout or an install."""
from __future__ import annotations

from pathlib import Path
import sys

PACKAGE = 'dff_lifecycle'
_SOURCE = Path(__file__).resolve().parents[2]  # the checkout: package.xml, params/, launch/


def package_roots() -> list[Path]:
    """
    Return the folders that hold this package's params/ (and launch/).

    They are the source checkout it runs from, the ament share folder, and
    <prefix>/share/dff_lifecycle of a pip install.
    """
    roots = []
    if (_SOURCE / 'package.xml').is_file() and (_SOURCE / 'params').is_dir():
        roots.append(_SOURCE)
    try:
        from ament_index_python.packages import get_package_share_directory
        roots.append(Path(get_package_share_directory(PACKAGE)))
    except Exception:  # noqa: B902 - no ament index here (plain venv): skip it
        pass
    roots.append(Path(sys.prefix) / 'share' / PACKAGE)
    unique: list[Path] = []
    for root in roots:
        if root.is_dir() and root.resolve() not in unique:
            unique.append(root.resolve())
    return unique


def resolve_config_path(value: str) -> str:
    """
    Return a relative config path as a node should open it.

    From the current folder when it exists there, else from the package's folders
    (repository or install share); unchanged when it is nowhere, so that the error
    names the path as given.
    """
    path = Path(value).expanduser()
    if not value or path.is_absolute() or path.is_file():
        return value
    for root in package_roots():
        if (root / path).is_file():
            return str(root / path)
    return value
