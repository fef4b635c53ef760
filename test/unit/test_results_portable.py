"""Recorded results read the same on any machine: no checkout or temporary paths in them."""
from pathlib import Path
import re

REPO = Path(__file__).resolve().parents[2]
MACHINE_PATH = re.compile(r'/(?:work|tmp|root|home)/')


def test_recorded_results_hold_no_machine_paths():
    found = []
    for path in sorted((REPO / 'benchmarks' / 'results').rglob('*')):
        if path.suffix in ('.json', '.txt', '.log'):
            text = path.read_text(encoding='utf-8', errors='replace')
            found += [f'{path.relative_to(REPO)}: {m.group(0)}'
                      for m in MACHINE_PATH.finditer(text)][:1]
            if str(REPO) in text:
                found.append(f'{path.relative_to(REPO)}: {REPO}')
    assert not found, 'scrub them (benchmarks/portable.py): ' + '; '.join(found)
