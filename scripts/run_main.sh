#!/usr/bin/env bash
# Set up (if needed) and run the main job: distributed Forward-Forward training
# of MNIST across two server container processes plus the master, on an
# isolated ROS domain of this machine. Prints the distribution table and the
# test accuracy. Arguments go to dff_launch (e.g. another deployment YAML).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$repo/scripts/setup.sh"
cd "$repo"
export DFF_DATA_ROOT="${DFF_DATA_ROOT:-$repo/../shared/data}"
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( 20 + RANDOM % 60 ))}"
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
if [[ $# -eq 0 ]]; then set -- params/mnist_2servers.yaml; fi
exec "$repo/.venv/bin/dff_launch" "$@"
