#!/usr/bin/env bash
# Install the real ROS 2 tools (launch, launch_ros, launch_testing, ros2cli with its
# lifecycle/node/topic/param/service/action/run/pkg/interface verbs, rosidl_runtime_py and
# composition_interfaces) into the venv, from the upstream sources in ../shared/ros2-tools.
# For machines without a ROS 2 install; called by scripts/setup.sh. Idempotent: with nothing
# changed it returns in about a second. Skipped, with one line, where a ROS 2 install already
# provides the tools or where ../shared/ros2-tools is absent (their tests then skip).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${DFF_VENV:-$repo/.venv}"
sources="${DFF_ROS2_TOOLS:-$repo/../shared/ros2-tools}"
stamp="$venv/.dff-ros2-tools-stamp"
work="$repo/build/ros2_tools"
log="$repo/build/ros2_tools.log"
python="$venv/bin/python"
# Their PyPI dependencies (lark-parser and packaging come with the ROS wheels already).
pypi_deps=(osrf-pycommon==2.0.2 psutil==7.2.2 argcomplete==3.7.2)
# The pure-Python packages, <archive prefix>/<folder in it>, dependencies first.
packages=(
  rosidl_runtime_py/.
  launch/launch launch/launch_xml launch/launch_yaml launch/launch_testing
  ros2cli/ros2cli ros2cli/ros2node ros2cli/ros2param ros2cli/ros2pkg ros2cli/ros2run
  ros2cli/ros2topic ros2cli/ros2service ros2cli/ros2action ros2cli/ros2interface
  ros2cli/ros2lifecycle
  launch_ros/launch_ros launch_ros/launch_testing_ros launch_ros/ros2launch
)
imports='import launch, launch_ros, launch_testing, ros2cli, ros2lifecycle, ros2launch, composition_interfaces.srv'

fail() { echo "setup: ERROR: $*" >&2; exit 1; }
step() { echo "setup: $*"; }

[[ -x "$python" ]] || fail "no venv at $venv (run scripts/setup.sh)"
inputs_hash() { cat "$sources"/*.tar.gz "${BASH_SOURCE[0]}" 2>/dev/null | sha256sum | cut -d' ' -f1; }
if [[ -f "$stamp" && -x "$venv/bin/ros2" && -x "$venv/bin/launch_test" &&
      "$(cat "$stamp")" == "$(inputs_hash)" ]]; then
  exit 0  # installed here, and the sources have not changed
fi
# A ROS 2 install (sourced setup.bash) that has the tools: use it, install nothing.
where="$("$python" -c "$imports; print(launch_testing.__file__)" 2>/dev/null || true)"
if [[ -n "$where" && "$where" != "$venv"/* ]]; then
  step "ROS 2 tools from the ROS 2 install (${where%/launch_testing/*}): not installing them"
  exit 0
fi
if ! compgen -G "$sources/*.tar.gz" >/dev/null; then
  step "no $sources: skipping the real ROS 2 tools (ros2 launch, ros2 lifecycle, launch_test); their tests skip"
  exit 0
fi
sources="$(cd "$sources" && pwd)"
want="$(inputs_hash)"

step "installing the ROS 2 tools from $sources (log: build/ros2_tools.log)"
rm -rf "$work"
mkdir -p "$work/src"
: >"$log"
for archive in "$sources"/*.tar.gz; do
  name="$(basename "$archive" .tar.gz)"      # launch-02595baf
  mkdir -p "$work/src/${name%-*}"
  tar -xzf "$archive" -C "$work/src/${name%-*}" --strip-components=1
done

run() { "$@" >>"$log" 2>&1 || { tail -30 "$log" >&2; fail "$1 ${2:-} failed (log: $log)"; }; }
export VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH"
run "$python" -m pip install -q "${pypi_deps[@]}"
run "$python" -m pip install -q --no-deps --no-build-isolation "${packages[@]/#/$work/src/}"

# composition_interfaces (launch_ros imports it) is an ament_cmake interface package: built
# like dff_msgs, with the same fix for the PyPI wheels' include directories (appended to our
# copy of its CMakeLists.txt; set_target_properties is read when CMake generates, so the end of
# the file is early enough).
pkg="$work/src/rcl_interfaces/composition_interfaces"
cat >>"$pkg/CMakeLists.txt" <<'EOF'

# Added by dff scripts/install_ros2_tools.sh: PyPI ROS wheels export
# *__rosidl_generator_py targets whose include directories point at the build machine's
# Python (/opt/python/...); point those that do not exist here at this Python.
find_package(Python3 REQUIRED COMPONENTS Interpreter Development NumPy)
get_directory_property(dff_imported IMPORTED_TARGETS)
foreach(target IN LISTS dff_imported)
  if(target MATCHES "__rosidl_generator_py$")
    get_target_property(dirs ${target} INTERFACE_INCLUDE_DIRECTORIES)
    foreach(dir IN LISTS dirs)
      if(NOT dir MATCHES "^\\$<" AND NOT EXISTS "${dir}")
        set_target_properties(${target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES
          "${Python3_INCLUDE_DIRS};${Python3_NumPy_INCLUDE_DIRS}")
        break()
      endif()
    endforeach()
  endif()
endforeach()
EOF
export CMAKE_PREFIX_PATH="$venv" AMENT_PREFIX_PATH="$venv"
run cmake -S "$pkg" -B "$work/composition_interfaces" -DCMAKE_INSTALL_PREFIX="$venv" \
    -DCMAKE_BUILD_TYPE=Release -DPython3_EXECUTABLE="$python" -DBUILD_TESTING=OFF
run cmake --build "$work/composition_interfaces" -j "$(nproc)"
run cmake --install "$work/composition_interfaces"

"$python" -c "$imports" || fail "the ROS 2 tools do not import; see $log"
echo "$want" >"$stamp"
step "ROS 2 tools installed: ros2, launch_test in $venv/bin"
