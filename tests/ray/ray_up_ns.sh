#!/usr/bin/env bash
# PID 1 of test_ray_up.py's own PID and mount namespace, started as
#
#   unshare --pid --fork --mount-proc --kill-child bash tests/ray/ray_up_ns.sh ROOT
#
# Everything `ray up` / `ray exec` / `ray submit` / `ray down` start runs in
# here: the sshd of the test, the launcher, Redis, the Ray head, the runner.
# The bare `ray stop` that the launcher runs therefore sees only these
# processes, and killing this PID 1 (the test kills `unshare`, which passes
# SIGKILL on) ends them all. Mounts made here are private to the namespace:
#
#   /root, /tmp, /run   empty tmpfs: the SSH user's home (where `ray up` writes
#                       ray_bootstrap_*.{yaml,pem}, ~/.ray/ keeps Ray's auth
#                       token, the setup keeps ~/.pynenc-ray/), Ray's /tmp/ray,
#                       sshd's /run/sshd. Nothing of the machine's is visible
#                       or written, and all of it is gone with the namespace.
#   ROOT                this checkout, read-only (the source of file_mounts)
#   ROOT/.venv          an overlay whose writes (the node's `pip install -e`)
#                       land in a tmpfs: the real .venv is not changed
#   the base Python     read-only, when it lived under a hidden folder (pyenv
#                       under /root)
set -euo pipefail

ROOT="$(realpath "${1:?usage: ray_up_ns.sh ROOT}")"
[ "$$" = 1 ] || { echo "ray_up_ns.sh: must run as PID 1 of a new PID namespace" >&2; exit 2; }
PY="$ROOT/.venv/bin/python"
BASE="$(realpath "$("$PY" -c 'import sys; print(sys.base_prefix)')")"
HIDE=(/root /tmp /run)

under() { case "$1/" in "$2"/*) return 0 ;; *) return 1 ;; esac; }
hidden() { for h in "${HIDE[@]}"; do under "$1" "$h" && return 0; done; return 1; }

keep=("$ROOT")
hidden "$BASE" && keep+=("$BASE")
RESOLV="$(realpath /etc/resolv.conf 2>/dev/null || true)"  # pip reaches PyPI for build tools
[ -n "$RESOLV" ] && [ -f "$RESOLV" ] && hidden "$RESOLV" && keep+=("$RESOLV")

# A scratch tmpfs outside the folders about to be hidden: the overlay's upper
# layer, and a stash of the kept paths while their parents are replaced.
SCRATCH=""
for d in /mnt /srv /opt /media; do
    [ -d "$d" ] || continue
    clash=""
    for k in "${keep[@]}"; do under "$k" "$d" && clash=1; done
    [ -z "$clash" ] && { SCRATCH="$d"; break; }
done
[ -n "$SCRATCH" ] || { echo "ray_up_ns.sh: no folder for a scratch tmpfs" >&2; exit 2; }
mount -t tmpfs -o mode=700 pynenc-scratch "$SCRATCH"
for i in "${!keep[@]}"; do
    if [ -d "${keep[$i]}" ]; then mkdir -p "$SCRATCH/keep$i"; else touch "$SCRATCH/keep$i"; fi
    mount --bind "${keep[$i]}" "$SCRATCH/keep$i"
done

mount -t tmpfs -o mode=700 pynenc-home /root
mount -t tmpfs -o mode=1777 pynenc-tmp /tmp
mount -t tmpfs -o mode=755 pynenc-run /run

for i in "${!keep[@]}"; do
    k="${keep[$i]}"
    if [ -d "$SCRATCH/keep$i" ]; then mkdir -p "$k"; else mkdir -p "$(dirname "$k")"; touch "$k"; fi
    mount --bind "$SCRATCH/keep$i" "$k"
    mount -o remount,bind,ro "$k"
done
umount -l "$SCRATCH"/keep* 2>/dev/null || true

mkdir -p "$SCRATCH/venv-upper" "$SCRATCH/venv-work"
mount -t overlay pynenc-venv \
    -o "lowerdir=$ROOT/.venv,upperdir=$SCRATCH/venv-upper,workdir=$SCRATCH/venv-work" "$ROOT/.venv"

# The node's home as a fresh machine has it, plus its Python on PATH: the
# checkout's .venv stands in for the python3 of the AWS image (Ray is already
# in it, so the node's `pip install -e .[ray]` downloads nothing but build tools).
cp -a /etc/skel/. /root/
echo "export PATH=$ROOT/.venv/bin:\$PATH" >> /root/.bashrc
mkdir -p /run/sshd && chmod 755 /run/sshd

cd "$ROOT"
export HOME=/root PATH="$ROOT/.venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
export PYTHONDONTWRITEBYTECODE=1 RAY_USAGE_STATS_ENABLED=0
# Not exec: this bash stays PID 1 and, while it waits for the driver, reaps
# the orphans that end in here (the Ray head's processes once `ray start`
# has returned, the runner, Redis). Unreaped, they would linger as zombies
# that `ray stop` waits its whole grace period for.
"$PY" -m tests.ray.ray_up_run "$ROOT"
