"""Relative weight_dir / out_dir: taken from the launch folder, passed on as absolute paths."""
from __future__ import annotations

from pathlib import Path

from dff_lifecycle.cli import launcher
from dff_lifecycle.deploy.deployment import load_deployment
import yaml

REPO = Path(__file__).resolve().parents[2]
MODEL = str(REPO / 'params' / 'models' / 'mnist_ff.yaml')
LAYERS = str(REPO / 'params' / 'layers.yaml')


def deployment_file(folder: Path, common: dict | None = None, **sections: dict) -> Path:
    data = {'/dff/master': {'ros__parameters': {'model_config': MODEL, 'layer_config': LAYERS,
                                                'servers': 3, **sections.pop('master', {})}}}
    if common:
        data['/**'] = {'ros__parameters': common}
    for name, params in sections.items():
        data[f'/dff/{name}'] = {'ros__parameters': params}
    path = folder / 'params' / 'deploy.yaml'
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data), encoding='utf-8')
    return path


def folders(deployment) -> dict[str, str]:
    return {f'{process}.{name}': path for process, name, path in deployment.directories()}


def test_relative_folders_are_taken_from_the_launch_folder_not_the_files(tmp_path):
    path = deployment_file(tmp_path, server_1={'weight_dir': 'w/one'},
                           server_2={'weight_dir': '/abs/two'}, master={'out_dir': 'runs/x'})
    run = tmp_path / 'run'
    d = load_deployment(path, base=run)
    assert folders(d) == {'server_1.weight_dir': str(run / 'w/one'),
                          'server_2.weight_dir': '/abs/two',
                          'server_3.weight_dir': str(run / 'weights'),  # the server default
                          'master.out_dir': str(run / 'runs/x')}
    # what the processes are given: the same absolute paths, as overrides that beat the file
    given = {spec.name: spec.overrides for spec in d.processes()}
    assert given['server_1']['weight_dir'] == str(run / 'w/one')
    assert given['master']['out_dir'] == str(run / 'runs/x')


def test_overrides_and_the_common_section_follow_the_same_rule(tmp_path):
    path = deployment_file(tmp_path, common={'weight_dir': 'shared'},
                           server_2={'weight_dir': 'own'})
    d = load_deployment(path, base=tmp_path, overrides=['server_3.weight_dir:=../up',
                                                        'master.out_dir:=~/out'])
    assert folders(d) == {'server_1.weight_dir': str(tmp_path / 'shared'),
                          'server_2.weight_dir': str(tmp_path / 'own'),
                          'server_3.weight_dir': str(tmp_path.parent / 'up'),
                          'master.out_dir': str(Path.home() / 'out')}


def test_no_out_dir_means_none_and_the_default_base_is_the_current_folder(tmp_path,
                                                                          monkeypatch):
    monkeypatch.chdir(tmp_path)
    d = load_deployment(deployment_file(tmp_path))
    assert d.base == tmp_path
    assert 'out_dir' not in d.processes()[-1].overrides
    rule = d.describe_directories('dff_launch')[0]
    assert str(tmp_path) in rule and 'dff_launch' in rule


def test_dff_launch_says_where_before_it_starts_anything(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path = deployment_file(tmp_path, server_1={'weight_dir': 'w1'})
    started = []

    class Stop(Exception):
        pass

    def no_processes(self):
        started.append(capsys.readouterr().out)
        raise Stop

    monkeypatch.setattr(launcher.Launcher, 'run', no_processes)
    try:
        launcher.main([str(path), '--servers', '1'])
    except Stop:
        pass
    said = [line for line in started[0].splitlines() if line.startswith('[dff_launch] ')]
    assert any('server_1' in line and line.endswith(str(tmp_path / 'w1')) for line in said)
