#!/usr/bin/env bash
# Creates one virtualenv per peer under benchmarks/peers/.venvs/ from pinned
# versions. Idempotent: a venv whose stamp matches its pins is left alone.
# pynenc-ray itself runs from the repository's .venv (make's $(VENV)/.test).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-python3}"
VENVS="$HERE/.venvs"

# name -> pip requirements. redis-py is pinned to one version for every peer (the
# one the repository .venv had when this was written), with the same C reply parser
# (hiredis) that pynenc-ray depends on: every system talks to Redis through the same
# client stack. The driver measures, so the peer venvs need no psutil.
declare -A PINS=(
  [huey]="huey==3.5.4 redis==8.1.0 hiredis==3.5.0"
  [huey-plain]="huey==3.5.4 redis==8.1.0"  # as pinned in issue 13's first measurement
  [dramatiq]="dramatiq[redis]==2.2.1 redis==8.1.0 hiredis==3.5.0"
  # the async-native peers: taskiq-redis takes the same redis-py; arq 0.28 requires
  # redis<6, so it gets the newest 5.x (hiredis as for the others)
  [taskiq]="taskiq==0.13.0 taskiq-redis==1.2.4 redis==8.1.0 hiredis==3.5.0"
  [arq]="arq==0.28.0 redis==5.3.1 hiredis==3.5.0"
)

mkdir -p "$VENVS"
for name in "${!PINS[@]}"; do
  venv="$VENVS/$name"
  want="${PINS[$name]}"
  if [ -f "$venv/.installed" ] && [ "$(cat "$venv/.installed")" = "$want" ] \
     && [ -x "$venv/bin/python" ]; then
    echo "peers: $name up to date ($want)"
    continue
  fi
  echo "peers: creating $venv with $want"
  rm -rf "$venv"
  "$PYTHON" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
  # shellcheck disable=SC2086
  "$venv/bin/python" -m pip install -q $want
  echo "$want" > "$venv/.installed"
done
