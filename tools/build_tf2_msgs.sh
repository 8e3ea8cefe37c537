#!/usr/bin/env bash
# Generate and build tf2_msgs (tools/tf2_msgs: upstream's msg/TFMessage.msg only) with the rosidl
# generator wheels of a venv, and install it into that venv's prefix, where the ROS 2 wheels put
# their own message packages: `from tf2_msgs.msg import TFMessage` then works in that venv.
# The PyPI wheels have no tf2_msgs; a real ROS 2 install has it and never needs this.
#
#   tools/build_tf2_msgs.sh VENV [PREFIX]
#
# VENV holds the tools (python, cmake packages of requirements/tf2_msgs.txt); PREFIX (default
# VENV) receives the package. Another PREFIX needs PYTHONPATH=PREFIX/lib/python3.X/site-packages
# and LD_LIBRARY_PATH=PREFIX/lib at run time. `make setup` runs this once (stamped).
# Needs cmake >= 3.21, a C/C++ compiler and the interpreter's Python.h. About 40 s on one core.
# TF2_MSGS_JOBS sets the build's parallelism (default: the number of cores).
set -euo pipefail

usage() { echo "usage: $0 VENV [PREFIX]" >&2; exit 2; }
[ $# -ge 1 ] && [ $# -le 2 ] || usage
venv=$(cd "$1" 2>/dev/null && pwd) || { echo "build_tf2_msgs: no venv at $1" >&2; exit 2; }
prefix=${2:-$venv}
mkdir -p "$prefix" && prefix=$(cd "$prefix" && pwd)
python=$venv/bin/python
source_dir=$(cd "$(dirname "$0")/tf2_msgs" && pwd)

fail() { echo "build_tf2_msgs: $*" >&2; exit 1; }
[ -x "$python" ] || fail "$python not found"
[ -f "$venv/share/rosidl_default_generators/cmake/rosidl_default_generatorsConfig.cmake" ] ||
  fail "rosidl_default_generators missing in $venv: pip install -r requirements/tf2_msgs.txt"
command -v cmake >/dev/null || fail "cmake not found (apt-get install cmake)"
python_h=$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')/Python.h
[ -f "$python_h" ] || fail "$python_h missing: the Python development headers are needed (python3.11-dev)"

generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
build=$(mktemp -d "${TMPDIR:-/tmp}/tf2_msgs-build.XXXXXX")
trap 'rm -rf "$build"' EXIT
log=$build/build.log
start=$(date +%s)
run() { "$@" >>"$log" 2>&1 || { tail -n 40 "$log" >&2; fail "failed: $*"; }; }
export AMENT_PREFIX_PATH=$venv CMAKE_PREFIX_PATH=$venv PATH=$venv/bin:$PATH
export LD_LIBRARY_PATH=$venv/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
run cmake -S "$source_dir" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
  -DCMAKE_INSTALL_PREFIX="$prefix" -DPython3_EXECUTABLE="$python"
run cmake --build "$build" --parallel "${TF2_MSGS_JOBS:-$(nproc)}"
run cmake --install "$build"

site=$(echo "$prefix"/lib/python3*/site-packages)
PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH} LD_LIBRARY_PATH=$prefix/lib:$LD_LIBRARY_PATH \
  "$python" -c 'from tf2_msgs.msg import TFMessage; TFMessage()' ||
  fail "built, but tf2_msgs does not import from $site"
echo "tf2_msgs built and installed into $prefix in $(( $(date +%s) - start )) s"
