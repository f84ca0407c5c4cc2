#!/usr/bin/env bash
# scripts/gpu_check.py on a bare GPU machine without internet, in one call (about 7.5 minutes):
#   OUT=gpu-check-out [WHEELS=.whl] bash scripts/gpu_check.sh [gpu_check.py options]
# Installs the wheels in $WHEELS (default .whl/: the packages asr needs that the machine lacks) into
# /tmp/site, without dependencies, so that the machine's own torch stays, then runs the check with the
# project on PYTHONPATH.
set -uo pipefail
cd "$(dirname "$0")/.."
export OUT=${OUT:-gpu-check-out} PYTHONUNBUFFERED=1
install_log=/tmp/gpu_check_wheels.log
: > "$install_log"
dir=${WHEELS:-.whl}
if compgen -G "$dir/*.whl" > /dev/null; then
  echo "installing $dir/*.whl into /tmp/site" | tee -a "$install_log"
  timeout 120 python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$dir"/*.whl >> "$install_log" 2>&1 || echo "pip install failed: see log.txt" | tee -a "$install_log"
fi
export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec python3 scripts/gpu_check.py --install-log "$install_log" "$@"
