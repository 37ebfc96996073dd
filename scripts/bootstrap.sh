#!/usr/bin/env bash
# Create the virtualenv, installing Debian's venv/compiler packages first when they are missing.
set -euo pipefail
python=${1:-python3}
venv=${2:-.venv}
need_apt=()
"$python" -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
"$python" -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
  || need_apt+=(python3-dev)
command -v cc >/dev/null || need_apt+=(gcc)
if ((${#need_apt[@]})); then
  if [ "$(id -u)" -ne 0 ]; then
    echo "bootstrap: missing ${need_apt[*]}; run: sudo apt-get install -y ${need_apt[*]}" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q -U pip
