"""launch_testing twins of the multi-process scenarios in test/scenarios.py.

They are launch_testing files, run by the real `launch_test` command:
test/ros2_tools/test_launch_test_files.py does that (from the ordinary pytest run
and so from .ci/run), one `launch_test` per file, where launch, launch_ros and
launch_testing are installed (a ROS 2 install, or scripts/install_ros2_tools.sh).
pytest itself leaves them out unless launch_testing's own pytest plugin is
loaded: pytest.ini keeps it out, because the plugin of launch_testing 3.7.1
does not load under pytest 9. On a ROS 2 install whose launch_testing plugin
works with its pytest, `pytest -p launch_testing -p launch_ros test/launch`
runs them through the plugin, as colcon test does.
"""
from pathlib import Path

import pytest


HERE = Path(__file__).resolve().parent


def _launch_file(path: Path) -> bool:
    """Return True for a launch_testing file of this folder (hooks here see every test)."""
    return (Path(path).resolve().parent == HERE and path.name.startswith('test_')
            and path.name.endswith('_launch.py'))


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Leave the launch files to `launch_test` unless launch_testing's plugin is loaded."""
    if _launch_file(collection_path):
        return not config.pluginmanager.has_plugin('launch_testing')
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Named on the command line, a launch file is collected anyway: skip it, saying how."""
    if config.pluginmanager.has_plugin('launch_testing'):
        return
    for item in items:
        if _launch_file(item.path):
            item.add_marker(pytest.mark.skip(reason=(
                'a launch_testing file: run it with PYTHONPATH=test launch_test '
                f'test/launch/{item.path.name}, or test/ros2_tools/test_launch_test_files.py')))
