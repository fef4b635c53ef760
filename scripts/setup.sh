#!/usr/bin/env bash
# Create .venv, install pinned dependencies, the project (editable) and the
# dff_msgs interfaces. Idempotent: with nothing changed it returns in seconds.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${DFF_VENV:-$repo/.venv}"
python="${DFF_PYTHON:-python3}"
stamp="$venv/.dff-setup-stamp"

fail() { echo "setup: ERROR: $*" >&2; exit 1; }
step() { echo "setup: $*"; }

cd "$repo"
inputs_hash() {
  {
    cat requirements.txt setup.py setup.cfg package.xml scripts/setup.sh \
        dff_msgs/CMakeLists.txt dff_msgs/package.xml dff_msgs/msg/* dff_msgs/srv/* dff_msgs/action/*
    ls launch  # the ament index below links each launch file
  } | sha256sum | cut -d' ' -f1
}
want="$(inputs_hash)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] &&
   "$venv/bin/python" -c 'import dff_msgs.msg, rclpy, torch' 2>/dev/null; then
  step "up to date ($venv)"
  exec "$repo/scripts/install_ros2_tools.sh"  # its own stamp: about a second when up to date
fi

command -v "$python" >/dev/null || fail "no '$python' on PATH (set DFF_PYTHON to a Python 3.11 interpreter)"
pyver="$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
[[ "$pyver" == "3.11" ]] || fail "Python 3.11 is needed (ROS 2 Kilted and torch wheels here are cp311); '$python' is $pyver. Set DFF_PYTHON."
command -v cmake >/dev/null || fail "cmake is needed to build dff_msgs (apt-get install cmake g++)"
command -v c++ >/dev/null || fail "a C++ compiler is needed to build dff_msgs (apt-get install g++)"
if ! command -v xmllint >/dev/null; then  # the manifest linter test (test/lint)
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    step "installing xmllint (Debian libxml2-utils)"
    { apt-get install -y -q libxml2-utils || { apt-get update -q && apt-get install -y -q libxml2-utils; }; } \
      >"${TMPDIR:-/tmp}/dff-apt.log" 2>&1 ||
      echo "setup: WARNING: could not install libxml2-utils; the xmllint test will fail" >&2
  else
    echo "setup: WARNING: no xmllint (apt-get install libxml2-utils); the xmllint test will fail" >&2
  fi
fi

if ! command -v nft >/dev/null && [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
  # dff_cluster's packet loss (and its tests, which run as root)
  step "installing nft (Debian nftables)"
  { apt-get install -y -q nftables || { apt-get update -q && apt-get install -y -q nftables; }; } \
    >"${TMPDIR:-/tmp}/dff-apt.log" 2>&1 ||
    echo "setup: WARNING: could not install nftables; dff_cluster --loss will not work" >&2
fi

if [[ ! -x "$venv/bin/python" ]]; then
  step "creating $venv"
  "$python" -m venv "$venv" || fail "could not create the virtual environment $venv"
fi
export VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH"

step "installing pinned dependencies (first run takes a few minutes: torch is large)"
python -m pip install -q -r requirements.txt 2> >(grep -v "is ignored: it is neither" >&2) || fail "pip could not install requirements.txt"

step "building dff_msgs"
build="$repo/build/dff_msgs"
mkdir -p "$build"
export CMAKE_PREFIX_PATH="$venv" AMENT_PREFIX_PATH="$venv"
cmake -S dff_msgs -B "$build" -DCMAKE_INSTALL_PREFIX="$venv" -DCMAKE_BUILD_TYPE=Release \
      -DPython3_EXECUTABLE="$venv/bin/python" -DBUILD_TESTING=OFF >"$repo/build/dff_msgs.log" 2>&1 &&
  cmake --build "$build" -j "$(nproc)" >>"$repo/build/dff_msgs.log" 2>&1 &&
  cmake --install "$build" >>"$repo/build/dff_msgs.log" 2>&1 ||
  { tail -30 "$repo/build/dff_msgs.log" >&2; fail "building dff_msgs failed (log: build/dff_msgs.log)"; }

step "installing dff_lifecycle (editable)"
python -m pip install -q --no-deps --no-build-isolation -e . || fail "pip could not install the project"

step "registering dff_lifecycle in the venv's ament index (ros2 run, ros2 launch)"
# What colcon installs from setup.py's data_files and lib/<package>, as links to this checkout:
# the package marker, share/dff_lifecycle/{package.xml,launch/,params} and
# lib/dff_lifecycle/<console script>. launch/ is a folder of links, not a link: `ros2 launch`
# looks for launch files with os.walk, which does not enter linked folders.
share="$venv/share/dff_lifecycle"
lib="$venv/lib/dff_lifecycle"
mkdir -p "$venv/share/ament_index/resource_index/packages"
cp resource/dff_lifecycle "$venv/share/ament_index/resource_index/packages/dff_lifecycle"
rm -rf "$share" "$lib"
mkdir -p "$share/launch" "$lib"
ln -s "$repo/package.xml" "$share/package.xml"
ln -s "$repo/params" "$share/params"
ln -s "$repo"/launch/*.launch.py "$share/launch/"
for script in $(python -c 'from importlib.metadata import distribution
print(*(e.name for e in distribution("dff_lifecycle").entry_points if e.group == "console_scripts"))'); do
  ln -s "$venv/bin/$script" "$lib/$script"
done
# ament_index_python (ros2 launch, ros2 run, launch_ros) searches AMENT_PREFIX_PATH: every
# Python of this venv puts the venv in front of it when it is not there (a .pth line runs at
# interpreter start), so nothing needs exporting.
site="$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
cat >"$site/dff_ament_prefix.pth" <<'PTH'
import os, sys; _p = os.environ.get('AMENT_PREFIX_PATH', ''); sys.prefix in _p.split(os.pathsep) or os.environ.__setitem__('AMENT_PREFIX_PATH', os.pathsep.join(filter(None, [sys.prefix, _p])))
PTH

python -c 'import rclpy, torch, dff_lifecycle; from dff_msgs.msg import TensorChunk
from ament_index_python.packages import get_package_share_directory
get_package_share_directory("dff_lifecycle")' ||
  fail "the environment does not import; see the messages above"
echo "$want" >"$stamp"
"$repo/scripts/install_ros2_tools.sh"
step "ready: $venv"
