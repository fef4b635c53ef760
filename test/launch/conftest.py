"""launch_testing twins of the multi-process scenarios in test/scenarios.py.

They need launch, launch_ros and launch_testing from a full ROS 2 install (colcon
test runs them through launch_testing's pytest plugin). Where those are missing,
as in the pip venv, pytest leaves these files out; test/integration/ runs the
same scenarios with dff_launch.
"""
import importlib.util


def _installed(*modules: str) -> bool:
    return all(importlib.util.find_spec(name) is not None for name in modules)


collect_ignore_glob = [] if _installed('launch_testing', 'launch_ros') else ['test_*_launch.py']
