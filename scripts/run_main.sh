#!/usr/bin/env bash
# Set up (if needed) and run the main job: distributed Forward-Forward training
# of MNIST across two server container processes plus the master, on an
# isolated ROS domain of this machine. Prints the distribution table and the
# test accuracy. Arguments go to dff_launch (e.g. another deployment YAML).
# Data: $DFF_DATA_ROOT, else ../shared/data if there, else ./data; a dataset
# missing there is downloaded (torchvision, md5-checked; $DFF_DATA_MIRROR picks
# the mirror). `-p master.download:=false` turns that off.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$repo/scripts/setup.sh"
cd "$repo"
if [[ -z "${DFF_DATA_ROOT:-}" && -d "$repo/../shared/data" ]]; then
  export DFF_DATA_ROOT="$repo/../shared/data"
fi
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( 20 + RANDOM % 60 ))}"
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
if [[ $# -eq 0 ]]; then set -- params/mnist_2servers.yaml; fi
exec "$repo/.venv/bin/dff_launch" -p master.download:=true "$@"
