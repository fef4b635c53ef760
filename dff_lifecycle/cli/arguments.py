"""argparse helpers shared by the command-line tools (no heavy imports here)."""
import argparse
import os
from pathlib import Path


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be >= 1, got {value}')
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f'must be >= 0, got {value}')
    return value


MAX_SECONDS = 1e7  # about 115 days: more overflows the clocks a wait is measured on


def non_negative_seconds(text: str) -> float:
    value = float(text)
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f'must be >= 0, got {text}')
    return _at_most_max(value, text)


def positive_seconds(text: str) -> float:
    value = float(text)
    if not value > 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f'must be > 0, got {text}')
    return _at_most_max(value, text)


def _at_most_max(value: float, text: str) -> float:
    if value > MAX_SECONDS:  # also refuses inf
        raise argparse.ArgumentTypeError(f'must be at most {MAX_SECONDS:g} seconds, got {text}')
    return value


def output_file(text: str) -> Path:
    """Check a file to write: not a folder, and no file where one of its folders must be."""
    path = Path(text).expanduser()
    if not text.strip():
        raise argparse.ArgumentTypeError('an empty path')
    if path.is_dir():
        raise argparse.ArgumentTypeError(f'{text} is a folder, not a file')
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise argparse.ArgumentTypeError(f'{parent} is a file, so {text} cannot be '
                                                 'written under it')
            if not os.access(parent, os.W_OK):
                raise argparse.ArgumentTypeError(f'cannot write in {parent}')
            break
    return path
