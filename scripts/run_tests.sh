#!/usr/bin/env bash
# Set up (if needed) and run the default test suite: unit, multi-process
# integration and end-to-end tests, and the tests against the real ROS 2 tools
# (test/ros2_tools: ros2 launch, ros2 lifecycle, and test/launch/*.py under launch_test),
# which skip where those tools are not installed. Extra arguments go to pytest.
# The suite runs on DFF_TEST_WORKERS pytest-xdist workers (default 2), one test module per
# worker at a time (modules share deployments); DFF_TEST_WORKERS=0 runs it in one process.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$repo/scripts/setup.sh"
cd "$repo"
export DFF_DATA_ROOT="${DFF_DATA_ROOT:-$repo/../shared/data}"
workers="${DFF_TEST_WORKERS:-2}"
[[ "$workers" =~ ^[0-9]+$ ]] || { echo "run_tests: DFF_TEST_WORKERS must be a whole number, not '$workers'" >&2; exit 2; }
parallel=()
(( workers > 0 )) && parallel=(-n "$workers" --dist loadfile)
exec "$repo/.venv/bin/python" -m pytest test "${parallel[@]}" "$@"
