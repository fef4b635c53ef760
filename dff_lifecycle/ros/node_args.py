"""
The command line of a node executable, outside its --ros-args: `--help`, and nothing else.

A node takes its settings as ROS parameters (`--ros-args -p name:=value`, a
`--params-file`, or a launch file). Words outside `--ros-args` used to be ignored
without a word: `master --help` started a master that asked for model_config, and
`dff_infer -p weights:=...` (the --ros-args forgotten) ran on the defaults. Now
`-h`/`--help` prints the node's parameters and exits 0, and any other word outside
--ros-args is refused with a one-line error that shows where parameters go.

Inside --ros-args, rclpy ignores a parameter the node does not declare: `dff_image_publisher
--ros-args -p rate_hz:=5` (the parameter is `rate`) played at the default 30 Hz without a
word. A `-p` whose name the node's table lacks is refused, naming the closest one. (Params
files are not checked: one file may carry the settings of several nodes under `/**`.)
"""
from __future__ import annotations

from dataclasses import dataclass
import difflib
import sys
from typing import Optional, Sequence, TextIO

from dff_lifecycle.common.parameter_table import ParameterTable

HELP = ('-h', '--help')
# Parameters rclpy declares on every node itself.
BUILT_IN = ('use_sim_time', 'start_type_description_service')


@dataclass(frozen=True)
class NodeUsage:
    """What `--help` says about one node executable."""

    prog: str
    summary: str
    params: ParameterTable

    def text(self) -> str:
        lines = [f'usage: {self.prog} [--ros-args [-p NAME:=VALUE ...] '
                 '[--params-file FILE] ...]', '', self.summary, '',
                 'parameters (ros2 param; a launch file or --params-file sets them too):']
        width = max((len(name) for name in self.params), default=0)
        for name, p in self.params.items():
            kind = 'string[]' if p.type is list else p.type.__name__
            default = 'required' if p.required else f'default {p.default!r}'
            bounds = ''
            if p.minimum is not None or p.maximum is not None:
                low = '' if p.minimum is None else f'{p.minimum:g}'
                high = '' if p.maximum is None else f'{p.maximum:g}'
                bounds = f', {low}..{high}'
            lines.append(f'  {name:<{width}}  {kind}, {default}{bounds}: {p.description}')
        return '\n'.join(lines) + '\n'


def _outside_ros_args(argv: Sequence[str]) -> list[str]:
    """Return the words of argv that rcl does not take (the program's name left out)."""
    words, inside = [], False
    for word in argv:
        if word == '--ros-args':
            inside = True
        elif word == '--':
            inside = False
        elif not inside:
            words.append(word)
    if words and argv and words[0] == argv[0] and not argv[0].startswith('-'):
        words = words[1:]  # sys.argv[0]
    return words


def _command_line_parameters(argv: Sequence[str]) -> list[str]:
    """Return the names given by `-p NAME:=VALUE` inside --ros-args (node-scoped ones left out)."""
    names, inside, expect = [], False, False
    for word in argv:
        if word == '--ros-args':
            inside = True
        elif word == '--':
            inside = False
        elif inside and word in ('-p', '--param'):
            expect = True
            continue
        elif inside and expect and ':=' in word:
            target = word.split(':=', 1)[0]
            if ':' not in target:     # `-p other_node:name:=v` is for another node
                names.append(target)
        expect = False
    return names


def _unknown_parameter(names: Sequence[str], usage: NodeUsage) -> Optional[str]:
    for name in names:
        if name in usage.params or name in BUILT_IN or name.startswith('qos_overrides.'):
            continue
        close = difflib.get_close_matches(name, list(usage.params), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ''
        return (f"{usage.prog}: error: no parameter '{name}' ({hint}{usage.prog} --help "
                'lists them)\n')
    return None


def check_node_args(argv: Sequence[str], usage: NodeUsage, out: Optional[TextIO] = None,
                    err: Optional[TextIO] = None) -> Optional[int]:
    """Return None to go on, or the exit code: 0 after printing help, 2 after an error."""
    out, err = out or sys.stdout, err or sys.stderr
    words = _outside_ros_args(argv)
    if any(word in HELP for word in words):
        out.write(usage.text())
        return 0
    if words:
        example = next((w for w in words if ':=' in w), 'NAME:=VALUE')
        err.write(f'{usage.prog}: error: unrecognized arguments: {" ".join(words)} '
                  f'(parameters go after --ros-args: {usage.prog} --ros-args -p '
                  f'{example}; {usage.prog} --help lists them)\n')
        return 2
    unknown = _unknown_parameter(_command_line_parameters(argv), usage)
    if unknown is not None:
        err.write(unknown)
        return 2
    return None
