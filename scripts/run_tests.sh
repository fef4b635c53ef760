#!/usr/bin/env bash
# Set up (if needed) and run the default test suite: unit, multi-process
# integration and end-to-end tests, and the tests against the real ROS 2 tools
# (test/ros2_tools: ros2 launch, ros2 lifecycle, and test/launch/*.py under launch_test),
# which skip where those tools are not installed. Extra arguments go to pytest.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$repo/scripts/setup.sh"
cd "$repo"
export DFF_DATA_ROOT="${DFF_DATA_ROOT:-$repo/../shared/data}"
exec "$repo/.venv/bin/python" -m pytest test "$@"
