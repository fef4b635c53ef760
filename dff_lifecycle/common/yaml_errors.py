"""One line for a YAML syntax error, as the command-line tools print it (no torch, no ROS)."""
from __future__ import annotations

import yaml


def yaml_error_text(err: yaml.YAMLError) -> str:
    """`line 1, column 6: expected ',' or ']', but got '<stream end>'` (PyYAML's is 6 lines)."""
    mark = getattr(err, 'problem_mark', None)
    problem = getattr(err, 'problem', None)
    if problem is None:
        return ' '.join(str(err).split())
    where = f'line {mark.line + 1}, column {mark.column + 1}: ' if mark is not None else ''
    context = getattr(err, 'context', None)
    return f'{where}{problem}' + (f' ({context})' if context else '')
