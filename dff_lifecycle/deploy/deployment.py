"""
Deployments: which processes make up a DFF system, read from a ROS 2 parameter file.

A deployment file is an ordinary ROS 2 parameter YAML, so it can also be passed
to any node with `--ros-args --params-file`. Three kinds of section are known:

    /**:                      # every node of every process
      ros__parameters: {device: cpu}
    /dff/master:              # the master; `servers` says how many containers to start
      ros__parameters: {model_config: params/models/mnist_ff.yaml,
                        layer_config: params/layers.yaml, servers: 2}
    /dff/server_2:            # one server container (optional, one per server as needed)
      ros__parameters: {weight_dir: weights/server_2}

Relative `model_config` / `layer_config` paths are resolved against the folder
above the deployment file (the repository root or the installed share folder,
for files in params/), then against the package's own folders. Relative
`weight_dir` / `out_dir` (the data a run writes) are taken from the folder the
launcher was started in (`Deployment.base`), wherever they are given; the
processes get them as absolute paths, so where a run writes never depends on a
process's own working folder, and `directories()` says where that is.

Pure Python (no rclpy): `dff_launch` and `launch/dff.launch.py` both build
their processes from `Deployment.processes()`, so the two cannot drift.
"""
from __future__ import annotations

from dataclasses import dataclass, field
import os
from pathlib import Path
import re
from typing import Any, Iterable, Mapping, Optional, Sequence

from dff_lifecycle.common.names import join, MASTER_NAME, NAMESPACE, server_name
from dff_lifecycle.common.package_files import PACKAGE, package_roots
from dff_lifecycle.common.parameter_table import coerce as coerce_value
from dff_lifecycle.common.parameter_table import type_problem, types_of
from dff_lifecycle.common.yaml_errors import yaml_error_text
from dff_lifecycle.master.parameters import MASTER_PARAMETERS
from dff_lifecycle.nodes.parameters import SERVER_PARAMETERS
import yaml

MASTER_SECTION = join(NAMESPACE, MASTER_NAME)
COMMON_SECTION = '/**'
CONFIG_KEYS = ('model_config', 'layer_config')
# Set by the launcher for each server; a deployment must not choose them.
LAUNCHER_SET = ('server_name',)
# Parameters every rclpy node declares itself.
NODE_BUILTINS = {'use_sim_time': bool, 'start_type_description_service': bool}
# Folders a run writes to, per process kind: relative ones are from the launch folder.
SERVER_DIRECTORY = 'weight_dir'
MASTER_DIRECTORY = 'out_dir'

_SERVER_SECTION = re.compile(r'^/dff/server_([1-9][0-9]*)$')
_TARGET = re.compile(r'^(master|servers|server_([1-9][0-9]*))$')


class DeploymentError(ValueError):
    """A deployment file or override that cannot be used; the message names file and key."""


@dataclass(frozen=True)
class ProcessSpec:
    """One process of a deployment, as `dff_launch` and launch_ros start it."""

    name: str                  # label of the process, also its node name: server_1, master
    executable: str            # console script (colcon: lib/dff_lifecycle/<executable>)
    module: str                # the same entry point as `python -m <module>`
    namespace: str
    params_file: Path
    overrides: Mapping[str, Any] = field(default_factory=dict)  # after the file, like -p
    ready_text: str = ''       # output line that says the process is up ('' for the master)
    respawn: bool = False      # start it again when it dies (servers: the master recovers)

    @property
    def node_name(self) -> str:
        return self.name

    @property
    def full_name(self) -> str:
        return f'{self.namespace}/{self.name}'

    def ros_arguments(self, overrides_file: Optional[Path] = None) -> list[str]:
        """
        Return the `--ros-args ...` part of the command line.

        As launch_ros builds it for a Node with name, namespace and
        parameters=[params_file, overrides]: the overrides go in a second parameter
        file under the node's own name (`overrides_yaml`), because rcl lets a node's
        section of a file beat `-p name:=value` (which is for every node). Without
        `overrides_file` they go as `-p`, which loses to such a section.
        """
        args = ['--ros-args', '-r', f'__node:={self.name}', '-r', f'__ns:={self.namespace}',
                '--params-file', str(self.params_file)]
        if overrides_file is not None and self.overrides:
            return args + ['--params-file', str(overrides_file)]
        for name, value in self.overrides.items():
            args += ['-p', f'{name}:={ros_value(value)}']
        return args

    def overrides_yaml(self) -> str:
        """Return the overrides as this node's section of a parameter file (later files win)."""
        return yaml.safe_dump({self.full_name: {'ros__parameters': dict(self.overrides)}},
                              default_flow_style=False)


@dataclass(frozen=True)
class Deployment:
    path: Path
    servers: int
    common: Mapping[str, Any]                    # /** parameters
    master: Mapping[str, Any]                    # /dff/master parameters, as in the file
    server_sections: Mapping[int, Mapping[str, Any]]  # /dff/server_<n> parameters
    model_config: Path                           # resolved
    layer_config: Path                           # resolved
    master_overrides: Mapping[str, Any] = field(default_factory=dict)
    # -p overrides per server index; index 0: every server (`servers.name:=value`)
    server_overrides: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    # where relative weight_dir / out_dir are taken from: the folder the launcher started in
    base: Path = field(default_factory=Path.cwd)

    def server_names(self) -> list[str]:
        return [server_name(i) for i in range(1, self.servers + 1)]

    def processes(self) -> list[ProcessSpec]:
        """
        Return the processes: the server containers (in order), then the master.

        Each server's weight_dir, and the master's out_dir when it has one, is in its
        overrides as an absolute path (see `directories`).
        """
        specs = []
        for i, name in enumerate(self.server_names(), start=1):
            overrides = {'server_name': name, **self.server_overrides.get(0, {}),
                         **self.server_overrides.get(i, {})}
            overrides[SERVER_DIRECTORY] = self._absolute(overrides.get(
                SERVER_DIRECTORY, self._from_file(self.server_sections.get(i, {}),
                                                  SERVER_DIRECTORY)))
            specs.append(ProcessSpec(
                name=name, executable='server_container',
                module=f'{PACKAGE}.nodes.server_container',
                namespace=NAMESPACE, params_file=self.path, overrides=overrides,
                ready_text=f'server container {NAMESPACE}/{name} up', respawn=True))
        master = {'model_config': str(self.model_config), 'layer_config': str(self.layer_config),
                  'servers': self.servers, **self.master_overrides}
        out_dir = master.get(MASTER_DIRECTORY, self._from_file(self.master, MASTER_DIRECTORY))
        if out_dir:  # empty: the master writes no files
            master[MASTER_DIRECTORY] = self._absolute(out_dir)
        specs.append(ProcessSpec(name=MASTER_NAME, executable='master',
                                 module=f'{PACKAGE}.master.master_node', namespace=NAMESPACE,
                                 params_file=self.path, overrides=master))
        return specs

    def describe(self) -> str:
        """Short summary for logs: model, servers, parameter file."""
        return (f'{self.path.name}: {self.model_config.name} on {self.servers} server '
                'container(s)')

    def directories(self) -> list[tuple[str, str, str]]:
        """(process, parameter, absolute path) of every folder the processes write to."""
        return [(spec.name, name, spec.overrides[name]) for spec in self.processes()
                for name in (SERVER_DIRECTORY, MASTER_DIRECTORY) if spec.overrides.get(name)]

    def describe_directories(self, launcher: str) -> list[str]:
        """Log lines: where relative folders are taken from, and each process's folders."""
        return [f'relative weight_dir / out_dir are taken from {self.base} (where {launcher} '
                'started)', *(f'{process} {name}: {path}'
                              for process, name, path in self.directories())]

    def _from_file(self, section: Mapping[str, Any], name: str) -> Any:
        """Return the file's `name` for a process: its own section, else /**, else default."""
        tables = {SERVER_DIRECTORY: SERVER_PARAMETERS, MASTER_DIRECTORY: MASTER_PARAMETERS}
        return section.get(name, self.common.get(name, tables[name][name].default))

    def _absolute(self, value: Any) -> str:
        path = Path(str(value)).expanduser()
        return str(path if path.is_absolute() else Path(os.path.normpath(self.base / path)))


# ----------------------------------------------------------------------------- loading

def load_deployment(path: str | Path, servers: Optional[int] = None,
                    overrides: Sequence[str] = (),
                    declared: Optional[Mapping[str, Mapping[str, type]]] = None,
                    base: Optional[Path] = None) -> Deployment:
    """
    Read and check a deployment file.

    servers: number of server containers (default: the master section's `servers`).
    overrides: `[target.]name:=value` items (target: master, servers or server_<n>;
    without one, every process that declares `name`).
    declared: parameter tables {'master': {name: type}, 'server': {...}}; default:
    read from the node modules by `declared_parameters()`.
    base: where relative weight_dir / out_dir are taken from (default: the current
    folder, where the launcher was started).
    """
    path = Path(path).expanduser().resolve()
    source = str(path)
    try:
        text = path.read_text(encoding='utf-8')
    except OSError as err:
        raise DeploymentError(f'{source}: cannot read the file ({err.strerror or err})') from err
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise DeploymentError(f'{source}: invalid YAML at {yaml_error_text(err)}') from err
    if not isinstance(data, dict) or not data:
        raise DeploymentError(f'{source}: expected ROS 2 parameter sections '
                              f'({COMMON_SECTION}, {MASTER_SECTION}, {NAMESPACE}/server_<n>), '
                              f'got {_kind(data)}')
    tables = declared if declared is not None else declared_parameters()
    common: dict[str, Any] = {}
    master: Optional[dict[str, Any]] = None
    server_sections: dict[int, dict[str, Any]] = {}
    for key, body in data.items():
        section = str(key)
        params = _section_parameters(source, section, body)
        if section == COMMON_SECTION:
            common = _check_section(source, section, params, _union(tables))
        elif section == MASTER_SECTION:
            master = _check_section(source, section, params, tables['master'])
        elif (match := _SERVER_SECTION.match(section)):
            server_sections[int(match.group(1))] = _check_section(
                source, section, params, tables['server'])
        else:
            raise DeploymentError(
                f'{source}: unknown section {section!r}; a deployment has {COMMON_SECTION}, '
                f'{MASTER_SECTION} and {NAMESPACE}/server_<n> sections (layer parameters come '
                'from the model config)')
    if master is None:
        raise DeploymentError(f'{source}: no {MASTER_SECTION} section (it names the model and '
                              'the number of servers)')
    for name in ('servers', *CONFIG_KEYS):
        if name not in master:
            raise DeploymentError(f'{source}: {MASTER_SECTION}: `{name}` is required')
    for section, params in [(COMMON_SECTION, common), *(
            (f'{NAMESPACE}/server_{i}', p) for i, p in server_sections.items())]:
        for name in LAUNCHER_SET:
            if name in params:
                raise DeploymentError(f'{source}: {section}: {name} is set by the launcher '
                                      '(server_<n> after the section name); remove it')

    master_overrides, server_overrides = _split_overrides(overrides, tables)
    count = servers if servers is not None else master_overrides.pop('servers', master['servers'])
    master_overrides.pop('servers', None)
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise DeploymentError(f'{source}: servers must be a positive integer, got {count!r}')
    for index in server_overrides:
        if index > count:  # index 0 is every server
            raise DeploymentError(f'override for server_{index}: the deployment has {count} '
                                  'server(s)')
    warnings = tuple(f'{source}: section {NAMESPACE}/server_{i} is not used ({count} server(s))'
                     for i in sorted(server_sections) if i > count)

    here = [path.parent.parent]
    base = Path.cwd() if base is None else Path(base).expanduser().resolve()
    cwd = [base]
    configs = {}
    for name in CONFIG_KEYS:
        if name in master_overrides:  # given on the command line: relative to where one is
            configs[name] = find_config(master_overrides.pop(name), cwd, f'-p {name}')
        else:
            configs[name] = find_config(master[name], here, f'{source}: {MASTER_SECTION}: {name}')
    return Deployment(path=path, servers=count, common=common, master=master,
                      server_sections=server_sections, model_config=configs['model_config'],
                      layer_config=configs['layer_config'], master_overrides=master_overrides,
                      server_overrides=server_overrides, warnings=warnings, base=base)


def _kind(value: Any) -> str:
    return 'nothing' if value is None else f'{type(value).__name__} {value!r}'[:80]


def _union(tables: Mapping[str, Mapping[str, type]]) -> dict[str, type]:
    merged: dict[str, type] = {}
    for table in tables.values():
        merged.update(table)
    return merged


def _section_parameters(source: str, section: str, body: Any) -> dict[str, Any]:
    if not isinstance(body, dict) or list(body) != ['ros__parameters']:
        raise DeploymentError(f'{source}: {section}: expected exactly one key, '
                              f'`ros__parameters`, got {_kind(body)}')
    params = body['ros__parameters']
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise DeploymentError(f'{source}: {section}: ros__parameters must be a mapping, '
                              f'got {_kind(params)}')
    return dict(params)


def _check_section(source: str, section: str, params: Mapping[str, Any],
                   table: Mapping[str, type]) -> dict[str, Any]:
    known = {**NODE_BUILTINS, **table}
    for name, value in params.items():
        where = f'{source}: {section}: {name}'
        if not isinstance(name, str) or name not in known:
            raise DeploymentError(f'{where}: unknown parameter (known here: '
                                  f'{", ".join(sorted(table))})')
        problem = type_problem(value, known[name])
        if problem:
            raise DeploymentError(f'{where}: {problem}')
    return dict(params)


# --------------------------------------------------------------------------- overrides

def parse_override(text: str) -> tuple[Optional[str], str, Any]:
    """'[target.]name:=value' -> (target or None, name, value parsed as YAML, like ROS does)."""
    name, sep, raw = text.partition(':=')
    if not sep or not name:
        raise DeploymentError(f'override {text!r}: expected [target.]name:=value')
    target, dot, param = name.rpartition('.')
    if dot and not _TARGET.match(target):
        raise DeploymentError(f'override {text!r}: target must be master, servers or '
                              f'server_<n>, got {target!r}')
    try:
        value = yaml.safe_load(raw) if raw.strip() else ''
    except yaml.YAMLError as err:
        raise DeploymentError(f'override {text!r}: value is not valid YAML: '
                              f'{yaml_error_text(err)}') from err
    return (target or None), param, value


def _split_overrides(items: Iterable[str], tables: Mapping[str, Mapping[str, type]]
                     ) -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
    """Route each override to the master and/or the servers (index 0: every server)."""
    master: dict[str, Any] = {}
    servers: dict[int, dict[str, Any]] = {}
    for text in items:
        target, name, value = parse_override(text)
        if target is None:
            targets = [t for t in ('master', 'servers') if name in tables[_table_of(t)]]
            if not targets:
                raise DeploymentError(f'override {text!r}: neither the master nor a server '
                                      f'declares {name!r}')
        else:
            targets = [target]
        for t in targets:
            table = tables[_table_of(t)]
            if name not in table:
                raise DeploymentError(f'override {text!r}: {t} has no parameter {name!r}')
            if name in LAUNCHER_SET:
                raise DeploymentError(f'override {text!r}: {name} is set by the launcher')
            value = coerce(value, table[name], text)
            if t == 'master':
                master[name] = value
            else:
                index = 0 if t == 'servers' else int(t.split('_')[1])
                servers.setdefault(index, {})[name] = value
    return master, servers


def _table_of(target: str) -> str:
    return 'master' if target == 'master' else 'server'


def coerce(value: Any, expected: type, what: str) -> Any:
    """
    Return a command-line value as the parameter's type.

    1 -> 1.0 for a double, '1' for a string.
    """
    try:
        return coerce_value(value, expected)
    except ValueError as err:
        raise DeploymentError(f'override {what!r}: {err}') from None


def ros_value(value: Any) -> str:
    """Write a value so that ROS's YAML parsing of `-p name:=value` gives it back."""
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, int):
        return repr(value)
    if isinstance(value, float):  # 1e-05 -> 1.0e-05: a float to YAML 1.1 as well as to rcl
        text = repr(value)
        mantissa, e, exponent = text.partition('e')
        return f'{mantissa}.0e{exponent}' if e and '.' not in mantissa else text
    if isinstance(value, (list, tuple)):
        return '[' + ', '.join(_quoted(v) if isinstance(v, str) else ros_value(v)
                               for v in value) + ']'
    text = str(value)
    try:
        plain = text != '' and yaml.safe_load(text) == text and '#' not in text
    except yaml.YAMLError:
        plain = False
    return text if plain else _quoted(text)


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# ---------------------------------------------------------------------- files and tables

def find_config(value: Any, bases: Sequence[Path], what: str) -> Path:
    """Find an existing config file: absolute, under one of `bases`, or under a package root."""
    if not isinstance(value, str) or not value:
        raise DeploymentError(f'{what}: expected a file path, got {_kind(value)}')
    path = Path(value).expanduser()
    if path.is_absolute():
        candidates = [path]
    else:
        candidates = [base / path for base in [*bases, *package_roots()]]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    looked = ', '.join(str(c.parent) for c in candidates)
    raise DeploymentError(f'{what}: {value!r} not found (looked in {looked})')


def find_deployment(name_or_path: str) -> Path:
    """Find a deployment file: a path, or the name of a shipped one (`mnist_2servers`)."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path.resolve()
    if path.is_dir():
        raise DeploymentError(f'deployment {name_or_path!r} is a folder: name a parameter '
                              'file (YAML) or a shipped deployment')
    stem = path.name[:-5] if path.name.endswith('.yaml') else path.name
    if path.parent == Path('.'):
        for root in package_roots():
            candidate = root / 'params' / f'{stem}.yaml'
            if candidate.is_file():
                return candidate.resolve()
    shipped = sorted({p.stem for root in package_roots()
                      for p in (root / 'params').glob('*.yaml') if p.stem != 'layers'})
    raise DeploymentError(f'deployment {name_or_path!r} not found: no such file, and no '
                          f'shipped deployment of that name (shipped: {", ".join(shipped)})')


def declared_parameters() -> dict[str, dict[str, type]]:
    """Names and types of the parameters of the master and of a server container."""
    return {'master': types_of(MASTER_PARAMETERS), 'server': types_of(SERVER_PARAMETERS)}
