#!/usr/bin/env bash
# The project's own steps on a Ray cluster node, kept in one place: the AWS
# config (cluster.yaml) and the on-premises one (cluster-local.yaml) both call
# this script from their setup and start commands, so both run the same lines.
# What may differ between them comes in as arguments or environment variables:
# system packages are installed by the configs themselves, and Redis runs under
# systemd (the apt package) or as a plain process this script starts.
#
#   node_setup.sh install SPEC            pip install -e SPEC (e.g. ~/pynenc-ray'[ray]')
#                                         and put the checkout on sys.path (examples.*)
#   node_setup.sh head [options]          start Redis with a password, write ~/.pynenc-env
#       --ip IP                           address Redis binds (besides 127.0.0.1) and the
#                                         env file names (default: first of `hostname -I`)
#       --redis-port N                    default 6379
#       --ray-port N                      the Ray head's GCS port, for the env file (6380)
#       --requirepass-file FILE           the password Redis requires; a random one is
#                                         written there when the file does not exist
#       --env KEY=VALUE                   one more line for the env file (repeatable)
#   node_setup.sh ray-start ARGS...       `ray stop`, then `ray start ARGS...`
#
# Environment:
#   PYNENC_PYTHON         the Python to install into (default: python3 on PATH)
#   PYNENC_REDIS_SERVICE  systemd | process (default: systemd when systemd runs)
#   PYNENC_STOP_WITH_RAY  1: once the Ray head started by `ray-start --head` stops
#                         (`ray down` runs `ray stop` on the node), stop the runner
#                         (~/.pynenc-ray/runner.pid) and a Redis this script started
#                         as a process. On premises `ray down` terminates no machine,
#                         so nothing else would stop them.
#
# State lives in ~/.pynenc-ray/ (mode 700): Redis' config, data, log and pid file
# when it runs as a process, the watcher's pid and log, the runner's pid file.
set -euo pipefail

STATE="$HOME/.pynenc-ray"
ENV_FILE="$HOME/.pynenc-env"
PY="${PYNENC_PYTHON:-python3}"

die() { echo "node_setup.sh: $*" >&2; exit 1; }
log() { echo "node_setup.sh: $*" >&2; }

state_dir() { mkdir -p "$STATE" && chmod 700 "$STATE"; }

stop_pid() {  # $1 pid, $2 seconds before SIGKILL
    kill -TERM "$1" 2>/dev/null || return 0
    for _ in $(seq $(( $2 * 10 ))); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$1" 2>/dev/null || true
}

redis_service() {  # the head step records its choice for later steps
    local svc="${PYNENC_REDIS_SERVICE:-}"
    [ -n "$svc" ] || [ ! -f "$STATE/redis-service" ] || svc="$(cat "$STATE/redis-service")"
    if [ -z "$svc" ]; then
        if [ -d /run/systemd/system ]; then svc=systemd; else svc=process; fi
    fi
    case "$svc" in systemd|process) echo "$svc" ;; *) die "PYNENC_REDIS_SERVICE=$svc: use systemd or process" ;; esac
}

# --- install --------------------------------------------------------------
cmd_install() {
    local spec="${1:?install needs a pip spec, e.g. ~/pynenc-ray'[ray]'}"
    local dir="${spec%%\[*}"
    [ -f "$dir/pyproject.toml" ] || die "install $spec: no pyproject.toml in $dir"
    "$PY" -m pip install -q -e "$spec"
    # examples/ (and a user's task modules next to them) are not part of the
    # installed package: put the checkout on sys.path for every process of this
    # Python, Ray's workers included, so `--app examples.tasks:app` imports.
    local site
    site="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    echo "$dir" > "$site/pynenc-ray-checkout.pth"
    "$PY" -c 'import pynenc_ray, examples.tasks' || die "the project does not import after install"
    log "installed $spec into $("$PY" -c 'import sys; print(sys.prefix)'); $dir on its sys.path"
}

# --- head: Redis with a password, the environment file -----------------------
redis_ping() {  # $1 host, $2 port, $3 password file
    REDISCLI_AUTH="$(cat "$3")" redis-cli -h "$1" -p "$2" ping 2>/dev/null | grep -qx PONG
}

redis_running_process() {
    [ -f "$STATE/redis.pid" ] && kill -0 "$(cat "$STATE/redis.pid")" 2>/dev/null
}

start_redis_process() {
    redis_running_process && return 0
    command -v redis-server >/dev/null || die "redis-server is not installed"
    redis-server "$STATE/redis.conf"
}

cmd_head() {
    local ip="" redis_port=6379 ray_port=6380 passfile="" extra=()
    while [ $# -gt 0 ]; do
        case "$1" in
            --ip) ip="$2"; shift 2 ;;
            --redis-port) redis_port="$2"; shift 2 ;;
            --ray-port) ray_port="$2"; shift 2 ;;
            --requirepass-file) passfile="$2"; shift 2 ;;
            --env) extra+=("$2"); shift 2 ;;
            *) die "head: unknown option $1" ;;
        esac
    done
    [ -n "$passfile" ] || die "head needs --requirepass-file FILE: Redis never runs without a password"
    [ -n "$ip" ] || ip="$(hostname -I | cut -d' ' -f1)"
    [ -n "$ip" ] || die "head: no --ip and \`hostname -I\` printed nothing"
    state_dir
    if [ ! -s "$passfile" ]; then
        (umask 077; "$PY" -c 'import secrets; print(secrets.token_hex(24))' > "$passfile")
    fi
    local pass bind svc
    pass="$(cat "$passfile")"
    [ -n "$pass" ] || die "head: $passfile is empty"
    bind="127.0.0.1"; [ "$ip" = "127.0.0.1" ] || bind="127.0.0.1 $ip"
    svc="$(redis_service)"
    echo "$svc" > "$STATE/redis-service"

    # The same Redis settings under either service manager.
    local old=""
    [ -f "$STATE/redis.conf" ] && old="$(cat "$STATE/redis.conf")"
    (umask 077; {
        echo "# written by deploy/node_setup.sh"
        echo "bind $bind"
        echo "port $redis_port"
        echo "protected-mode yes"
        echo "requirepass $pass"
        # the queue survives a reboot of the head: every write logged, fsync once a
        # second (at most a second of acknowledged writes lost with the machine)
        echo "appendonly yes"
        echo "appendfsync everysec"
        # never evict: a dropped record or queue entry is lost work; a full Redis
        # answers OOM instead, which runners ride out and submits report
        echo "maxmemory-policy noeviction"
        if [ "$svc" = process ]; then
            mkdir -p "$STATE/redis-data"
            echo "dir $STATE/redis-data"
            echo "daemonize yes"
            echo "pidfile $STATE/redis.pid"
            echo "logfile $STATE/redis.log"
        fi
    } > "$STATE/redis.conf")

    if [ "$svc" = systemd ]; then
        # The packaged redis.conf includes ours last, so our lines win.
        sudo install -m 640 -o redis -g redis "$STATE/redis.conf" /etc/redis/pynenc.conf
        sudo grep -qx 'include /etc/redis/pynenc.conf' /etc/redis/redis.conf \
            || echo 'include /etc/redis/pynenc.conf' | sudo tee -a /etc/redis/redis.conf >/dev/null
        sudo systemctl restart redis-server
    else
        if redis_running_process && [ "$old" != "$(cat "$STATE/redis.conf")" ]; then
            log "Redis settings changed: restarting it"
            stop_pid "$(cat "$STATE/redis.pid")" 10
        fi
        start_redis_process
    fi

    local ok=""
    for _ in $(seq 100); do
        if redis_ping 127.0.0.1 "$redis_port" "$passfile"; then ok=1; break; fi
        sleep 0.1
    done
    [ -n "$ok" ] || die "Redis did not answer on 127.0.0.1:$redis_port with the password"
    # A Redis that answers without the password is a misconfiguration: refuse it.
    if redis-cli -h 127.0.0.1 -p "$redis_port" ping 2>/dev/null | grep -qx PONG; then
        die "Redis on port $redis_port answers without a password"
    fi

    (umask 077; {
        echo "# written by deploy/node_setup.sh head"
        echo "export PYNENC__BACKEND=redis"
        echo "export PYNENC__REDIS_URL=redis://:$pass@$ip:$redis_port/0"
        echo "export PYNENC__RUNNER_CLS=MultiThreadRunner"
        echo "export PYNENC__RUNNER__RAY_ADDRESS=$ip:$ray_port"
        for kv in "${extra[@]}"; do echo "export $kv"; done
    } > "$ENV_FILE")
    touch "$HOME/.bashrc"
    grep -qx '. ~/.pynenc-env' "$HOME/.bashrc" || echo '. ~/.pynenc-env' >> "$HOME/.bashrc"
    log "Redis ($svc) on $ip:$redis_port with a password; $ENV_FILE written"
}

# --- ray-start ------------------------------------------------------------
gcs_port_of() {  # the --port of `ray start --head` args (Ray's default 6379)
    local port=6379 prev=""
    for a in "$@"; do
        case "$a" in --port=*) port="${a#--port=}" ;; esac
        [ "$prev" = "--port" ] && port="$a"
        prev="$a"
    done
    echo "$port"
}

cmd_ray_start() {
    local head=""
    for a in "$@"; do [ "$a" = "--head" ] && head=1; done
    # `ray stop` stops every Ray process on this machine: a node belongs to one cluster.
    ray stop
    if [ -n "$head" ] && [ "${PYNENC_STOP_WITH_RAY:-0}" = 1 ]; then
        # The previous head's watcher stops Redis once that head is gone: let it
        # finish, then bring Redis back before the new head starts.
        if [ -f "$STATE/watch.pid" ]; then
            for _ in $(seq 600); do kill -0 "$(cat "$STATE/watch.pid")" 2>/dev/null || break; sleep 0.1; done
        fi
        [ "$(redis_service)" = process ] && [ -f "$STATE/redis.conf" ] && start_redis_process
    fi
    ulimit -n 65536 2>/dev/null || log "could not raise the open-files limit (ulimit -n $(ulimit -n))"
    ray start "$@"
    if [ -n "$head" ] && [ "${PYNENC_STOP_WITH_RAY:-0}" = 1 ]; then
        local port gcs
        port="$(gcs_port_of "$@")"
        gcs="$(pgrep -f -- "gcs_server .*--gcs_server_port=$port( |\$)" | head -n1 || true)"
        [ -n "$gcs" ] || die "ray start returned but no gcs_server on port $port"
        state_dir
        nohup setsid bash "$0" watch "$gcs" > "$STATE/watch.log" 2>&1 < /dev/null &
        echo $! > "$STATE/watch.pid"
        log "Ray head up; watcher $(cat "$STATE/watch.pid") stops the runner and Redis when it stops"
    fi
}

# --- watch (started by ray-start) ------------------------------------------

cmd_watch() {
    local gcs="${1:?watch needs the gcs_server pid}"
    echo "watching gcs_server $gcs"
    while kill -0 "$gcs" 2>/dev/null; do sleep 1; done
    echo "the Ray head stopped at $(date -Is)"
    if [ -f "$STATE/runner.pid" ]; then
        echo "stopping the runner $(cat "$STATE/runner.pid")"
        stop_pid "$(cat "$STATE/runner.pid")" 20
        rm -f "$STATE/runner.pid"
    fi
    if [ "$(redis_service)" = process ] && redis_running_process; then
        echo "stopping Redis $(cat "$STATE/redis.pid")"
        stop_pid "$(cat "$STATE/redis.pid")" 20
    fi
    rm -f "$STATE/watch.pid"
    echo "done"
}

step="${1:-}"
[ $# -gt 0 ] && shift
case "$step" in
    install) cmd_install "$@" ;;
    head) cmd_head "$@" ;;
    ray-start) cmd_ray_start "$@" ;;
    watch) cmd_watch "$@" ;;
    *) die "usage: node_setup.sh install SPEC | head [options] | ray-start ARGS... (see the top of this file)" ;;
esac
