"""The house's floors, read from the imports: the wire at the bottom, the core without ROS."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / 'dff_lifecycle'
ROS = ('rclpy', 'dff_msgs', 'lifecycle_msgs', 'builtin_interfaces', 'std_msgs')


def imports_of(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def modules(folder: str) -> list[Path]:
    return sorted((PACKAGE / folder).rglob('*.py'))


@pytest.mark.parametrize('path', modules('wire'), ids=lambda p: p.name)
def test_the_wire_imports_nothing_of_dff_above_it(path):
    above = {n for n in imports_of(path)
             if n.startswith('dff_lifecycle') and not n.startswith('dff_lifecycle.wire')}
    assert not above, f'{path.name} imports {sorted(above)}'


@pytest.mark.parametrize('name', ['header.py', 'chunks.py', 'cdr.py'])
def test_chunks_and_bytes_need_no_ros(name):
    ros = {n for n in imports_of(PACKAGE / 'wire' / name) if n.split('.')[0] in ROS}
    assert not ros, f'{name} imports {sorted(ros)}'


@pytest.mark.parametrize('path', modules('core'), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_the_core_imports_no_ros_and_no_wire(path):
    found = {n for n in imports_of(path)
             if n.split('.')[0] in ROS or n.startswith(('dff_lifecycle.wire',
                                                        'dff_lifecycle.ros'))}
    assert not found, f'{path.name} imports {sorted(found)}'
