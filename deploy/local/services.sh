#!/usr/bin/env bash
# Local RabbitMQ + FerretDB (MongoDB wire protocol) for dossierflow development and CI.
# No Docker and no systemd needed: the daemons are started directly, bound to 127.0.0.1 only.
#
# Usage: deploy/local/services.sh start|stop|restart|restart-ferretdb|status|env
#        deploy/local/services.sh rabbitmqctl|rabbitmq-diagnostics|rabbitmq-plugins|rabbitmq-queues ARGS...
#          (the RabbitMQ CLI with this script's node name, cookie and config)
#
#   DOSSIERFLOW_STATE_DIR           pid files, logs, data      [~/.local/state/dossierflow]
#   DOSSIERFLOW_AMQP_PORT           AMQP port                  [5672] (Erlang distribution: +20000)
#   DOSSIERFLOW_RABBITMQ_MGMT_PORT  management HTTP API port   [15672]
#   DOSSIERFLOW_MONGO_PORT          FerretDB port              [27017]
#   DOSSIERFLOW_RABBITMQ_NODENAME   RabbitMQ node name         [rabbit@localhost]
#   DOSSIERFLOW_START_TIMEOUT       seconds to wait per service [90]
#   DOSSIERFLOW_RABBITMQ_MAX_MESSAGE_SIZE  largest message body the broker takes, in bytes
#                                   [278528: DOSSIERFLOW_PAYLOAD_LIMIT_BYTES + 16 KiB]
#   XDG_CACHE_HOME                  ferretdb binary cached in $XDG_CACHE_HOME/dossierflow/bin
#
# Three-node RabbitMQ cluster on this machine, beside the single node (which it never touches):
#        deploy/local/services.sh cluster start|stop|status|env
#        deploy/local/services.sh cluster stop-node|start-node N   (lose one node, bring it back)
#        deploy/local/services.sh cluster rabbitmqctl N ARGS...    (the CLI against node N)
#   DOSSIERFLOW_CLUSTER_SIZE        nodes                      [3]
#   DOSSIERFLOW_CLUSTER_AMQP_PORT   AMQP port of node 1; node N: +N-1 [5681] (distribution: +20000)
#   DOSSIERFLOW_CLUSTER_MGMT_PORT   management port of node 1; node N: +N-1 [15681]
#   Node N is dossierflow-cN@localhost with its own data in $DOSSIERFLOW_STATE_DIR/cluster/nodeN;
#   the nodes share one Erlang cookie ($DOSSIERFLOW_STATE_DIR/cluster/.erlang.cookie).
#
# Messages go to stderr prefixed "services:"; `status` and `env` print their results to stdout.
set -euo pipefail

: "${HOME:=$(getent passwd "$(id -u)" | cut -d: -f6)}"
readonly HOST=127.0.0.1
readonly FERRETDB_VERSION=v1.24.2
readonly FERRETDB_MODULE=github.com/FerretDB/FerretDB
STATE_DIR=${DOSSIERFLOW_STATE_DIR:-$HOME/.local/state/dossierflow}
CACHE_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/dossierflow
AMQP_PORT=${DOSSIERFLOW_AMQP_PORT:-5672}
MGMT_PORT=${DOSSIERFLOW_RABBITMQ_MGMT_PORT:-15672}
MONGO_PORT=${DOSSIERFLOW_MONGO_PORT:-27017}
TIMEOUT=${DOSSIERFLOW_START_TIMEOUT:-90}
# The broker refuses bigger messages (PRECONDITION_FAILED) before any queue or dispatcher
# sees them: the largest payload plus the envelope around it (dispatcher/settings.py).
MAX_MESSAGE_SIZE=${DOSSIERFLOW_RABBITMQ_MAX_MESSAGE_SIZE:-$((${DOSSIERFLOW_PAYLOAD_LIMIT_BYTES:-262144} + 16384))}
EPMD_PORT=${ERL_EPMD_PORT:-4369}

RMQ_DIR=$STATE_DIR/rabbitmq
RMQ_LAUNCHER_PID=$RMQ_DIR/launcher.pid
RMQ_EPMD_MARK=$RMQ_DIR/epmd.started-by-us
FDB_DIR=$STATE_DIR/ferretdb
FDB_PID=$FDB_DIR/ferretdb.pid
FDB_LOG=$FDB_DIR/ferretdb.log
FDB_BIN=$CACHE_DIR/bin/ferretdb
RMQ_SBIN=

log() { printf 'services: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

for _v in AMQP_PORT MGMT_PORT MONGO_PORT TIMEOUT MAX_MESSAGE_SIZE; do
    [[ ${!_v} =~ ^[0-9]+$ ]] || die "$_v must be a number, got '${!_v}'"
done
DIST_PORT=$((AMQP_PORT + 20000)) # Erlang distribution listener (RabbitMQ convention)

# One environment for the server and every CLI call: same node name, config, data and cookie
# (HOME points at the state dir, so the Erlang cookie lives there and belongs to the caller).
# A second local node (another state dir and ports) needs its own name: DOSSIERFLOW_RABBITMQ_NODENAME.
export RABBITMQ_NODENAME=${DOSSIERFLOW_RABBITMQ_NODENAME:-rabbit@localhost}
export RABBITMQ_CONF_ENV_FILE=$RMQ_DIR/rabbitmq-env.conf # ours, not /etc/rabbitmq/rabbitmq-env.conf
export RABBITMQ_CONFIG_FILE=$RMQ_DIR/rabbitmq.conf
export RABBITMQ_ADVANCED_CONFIG_FILE=$RMQ_DIR/advanced.config
export RABBITMQ_ENABLED_PLUGINS_FILE=$RMQ_DIR/enabled_plugins
export RABBITMQ_MNESIA_BASE=$RMQ_DIR/mnesia
export RABBITMQ_LOG_BASE=$RMQ_DIR/log
export RABBITMQ_PID_FILE=$RMQ_DIR/rabbitmq.pid
export RABBITMQ_DIST_PORT=$DIST_PORT
export ERL_EPMD_ADDRESS=${ERL_EPMD_ADDRESS:-127.0.0.1} # only used if our node has to start epmd

# ---------------------------------------------------------------- helpers

# Alive and not a zombie (daemons are re-parented to PID 1, which may be slow to reap them).
alive() {
    local stat
    [ -n "${1:-}" ] && stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [ "${stat%% *}" != Z ]
}
cmdline() { tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null || true; }
port_listeners() { ss -Hltnp "( sport = :$1 )" 2>/dev/null || true; }
port_pids() { port_listeners "$1" | { grep -o 'pid=[0-9]*' || true; } | cut -d= -f2 | sort -u; }
held_by() { [[ $'\n'$(port_pids "$1")$'\n' == *$'\n'"$2"$'\n'* ]]; } # port pid

# pid from a pid file, only if that process is alive and its command line contains $2.
pid_from() {
    local pid
    pid=$(cat "$1" 2>/dev/null) || return 1
    alive "$pid" && [[ $(cmdline "$pid") == *"$2"* ]] && echo "$pid"
}

# Daemons must not inherit our descriptors (the lock, a CI runner's pipes): close all but 0-2.
close_inherited_fds() {
    local fd
    for fd in "/proc/$BASHPID/fd/"*; do
        fd=${fd##*/}
        if ((fd > 2)); then eval "exec $fd>&-" 2>/dev/null || true; fi
    done
}

wait_gone() { # pid seconds
    local deadline=$((SECONDS + $2))
    while alive "$1"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

# Called when our service is not running: fails if any "port:VARIABLE:what" is listened on.
ensure_ports_free() {
    local spec port var what
    for spec in "$@"; do
        IFS=: read -r port var what <<<"$spec"
        [ -z "$(port_listeners "$port")" ] && continue
        die "port $port ($what) is already in use by another process:
$(ss -ltnp "( sport = :$port )" 2>/dev/null | sed 's/^/    /')
  stop that process, or pick another port with $var=..."
    done
}

show_log() { # file [lines]
    [ -s "$1" ] || return 0
    log "last lines of $1:"
    tail -n "${2:-25}" "$1" | sed 's/^/    /' >&2
}

apt_install() { # packages...
    local sudo="" guard=""
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null || die "need root (or sudo) to install: $*"
        sudo="sudo"
    fi
    command -v apt-get >/dev/null || die "not a Debian/Ubuntu system; install manually: $*"
    # Keep the package's own init script from starting a system-wide rabbitmq on our ports.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        guard=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' | $sudo tee "$guard" >/dev/null
        $sudo chmod 755 "$guard"
    fi
    log "installing $* with apt-get"
    local rc=0
    {
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
            $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
    } >&2 || rc=$?
    [ -z "$guard" ] || $sudo rm -f "$guard"
    [ "$rc" = 0 ] || die "apt-get install $* failed (exit $rc)"
}

ensure_tools() {
    local pkgs=() rmq=0
    command -v curl >/dev/null || pkgs+=(curl)
    command -v ss >/dev/null || pkgs+=(iproute2)
    command -v python3 >/dev/null || pkgs+=(python3)
    command -v setsid >/dev/null && command -v flock >/dev/null || pkgs+=(util-linux)
    find_rabbitmq || { pkgs+=(rabbitmq-server) && rmq=1; }
    [ ${#pkgs[@]} = 0 ] || apt_install "${pkgs[@]}"
    [ "$rmq" = 0 ] || find_rabbitmq || die "rabbitmq-server is still not available after installing it"
}

# The monitoring page's browser test drives Debian's Chromium (no browser download works here).
ensure_chromium() {
    # A font, or the screenshot of the monitoring page shows boxes instead of text.
    [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] && [ -d /usr/share/fonts/truetype/dejavu ] &&
        return 0
    apt_install chromium chromium-driver fonts-dejavu-core
}

# The metrics test runs Debian's Prometheus (and promtool) against real processes. The
# package's own service is never started: apt_install keeps init scripts from running.
ensure_prometheus() {
    command -v prometheus >/dev/null && command -v promtool >/dev/null && return 0
    apt_install prometheus
}

find_rabbitmq() {
    local p
    if [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]; then
        RMQ_SBIN=/usr/lib/rabbitmq/bin # Debian: call these directly, /usr/sbin wrappers su to 'rabbitmq'
    elif p=$(command -v rabbitmq-server); then
        RMQ_SBIN=$(dirname "$(readlink -f "$p")")
    else
        return 1
    fi
}

epmd_names() { # port -> `epmd -names` output, empty if epmd is not running
    command -v epmd >/dev/null || return 0
    ERL_EPMD_PORT=$1 epmd -names 2>/dev/null || true
}

rmq() { HOME=$RMQ_DIR "$RMQ_SBIN/$1" "${@:2}"; }

rmq_quiet() { # run a rabbitmq CLI tool, show its output only if it fails
    local out rc=0
    out=$(rmq "$@" 2>&1) || rc=$?
    [ "$rc" = 0 ] || printf '%s\n' "$out" | sed 's/^/    /' >&2
    return "$rc"
}

rmq_version() {
    local d
    for d in "$RMQ_SBIN"/../lib/rabbitmq_server-* "$RMQ_SBIN"/../plugins/rabbit-[0-9]*; do
        [ -e "$d" ] && { echo "${d##*-}"; return; }
    done
    echo "?"
}

lock() {
    mkdir -p "$STATE_DIR"
    exec 9>"$STATE_DIR/.lock"
    flock -w 600 9 || die "another services.sh start/stop is still running (lock $STATE_DIR/.lock)"
}

# ---------------------------------------------------------------- rabbitmq

rmq_pid() { pid_from "$RABBITMQ_PID_FILE" "$RMQ_DIR"; }
rmq_launcher_pid() { pid_from "$RMQ_LAUNCHER_PID" rabbitmq-server; }

rmq_answering() { # pid
    held_by "$AMQP_PORT" "$1" && held_by "$MGMT_PORT" "$1" &&
        curl -sf --max-time 5 -u guest:guest "http://$HOST:$MGMT_PORT/api/overview" >/dev/null
}

rmq_config_text() { # the rabbitmq.conf this script runs the node with
    cat <<EOF
# generated by deploy/local/services.sh - changes are overwritten on start
listeners.tcp.default = $HOST:$AMQP_PORT
listeners.ssl = none
management.tcp.ip = $HOST
management.tcp.port = $MGMT_PORT
distribution.listener.interface = $HOST
heartbeat = 60
max_message_size = $MAX_MESSAGE_SIZE
log.file.level = info
log.console = false
EOF
}

rmq_write_config() {
    mkdir -p "$RMQ_DIR/mnesia" "$RMQ_DIR/log"
    echo "# managed by deploy/local/services.sh (keeps /etc/rabbitmq/rabbitmq-env.conf out)" \
        >"$RABBITMQ_CONF_ENV_FILE"
    rmq_config_text >"$RABBITMQ_CONFIG_FILE"
    if [ ! -s "$RMQ_DIR/.erlang.cookie" ]; then
        (umask 077 && od -An -N16 -tx1 /dev/urandom | tr -d ' \n' | tr a-f A-F >"$RMQ_DIR/.erlang.cookie")
        chmod 400 "$RMQ_DIR/.erlang.cookie"
    fi
    if ! grep -q rabbitmq_management "$RABBITMQ_ENABLED_PLUGINS_FILE" 2>/dev/null ||
        ! grep -q rabbitmq_consistent_hash_exchange "$RABBITMQ_ENABLED_PLUGINS_FILE"; then
        log "enabling plugins rabbitmq_management rabbitmq_consistent_hash_exchange (offline)"
        rmq_quiet rabbitmq-plugins enable --offline rabbitmq_management rabbitmq_consistent_hash_exchange ||
            die "rabbitmq-plugins enable --offline failed"
    fi
}

rmq_fail() { # message
    log "ERROR: rabbitmq: $1"
    show_log "$RMQ_DIR/log/startup.log"
    show_log "$RABBITMQ_LOG_BASE/$RABBITMQ_NODENAME.log"
    stop_rabbitmq >/dev/null 2>&1 || true
    exit 1
}

rmq_wait() { # -> waits until the node is booted and both ports answer
    local deadline=$((SECONDS + TIMEOUT)) pid=""
    while :; do
        ((SECONDS < deadline)) || rmq_fail "not ready after ${TIMEOUT}s"
        pid=$(rmq_pid) || pid=""
        [ -n "$pid" ] || rmq_launcher_pid >/dev/null || rmq_fail "the server exited during startup"
        # the AMQP listener opens late in the boot; only then pay for the (slow) CLI calls
        [ -n "$pid" ] && held_by "$AMQP_PORT" "$pid" && break
        sleep 0.5
    done
    rmq_quiet rabbitmqctl -q await_startup --timeout $((deadline - SECONDS > 5 ? deadline - SECONDS : 5)) ||
        rmq_fail "await_startup failed"
    rmq_quiet rabbitmq-diagnostics -q check_port_connectivity || rmq_fail "check_port_connectivity failed"
    until rmq_answering "$pid"; do
        ((SECONDS < deadline)) || rmq_fail "management API http://$HOST:$MGMT_PORT/api/overview not answering"
        alive "$pid" || rmq_fail "the server exited during startup"
        sleep 0.5
    done
    echo "$pid"
}

start_rabbitmq() {
    local pid t0=$SECONDS names listeners
    if pid=$(rmq_pid); then
        if rmq_answering "$pid" && [ "$(rmq_config_text)" != "$(cat "$RABBITMQ_CONFIG_FILE" 2>/dev/null)" ]; then
            # e.g. a checkout that sets max_message_size, on a node started by an older one
            log "rabbitmq (pid $pid) runs another configuration than this checkout writes; restarting it"
            stop_rabbitmq
        elif rmq_answering "$pid"; then
            log "rabbitmq already running (pid $pid, amqp $HOST:$AMQP_PORT, management $HOST:$MGMT_PORT)"
            return 0
        fi
        held_by "$AMQP_PORT" "$pid" || held_by "$MGMT_PORT" "$pid" || [[ $(ss -Hltnp) != *"pid=$pid,"* ]] ||
            die "our rabbitmq (pid $pid) listens on other ports than $AMQP_PORT/$MGMT_PORT; run '$0 stop' first"
        log "rabbitmq (pid $pid) is running but not answering yet; waiting"
        rmq_wait >/dev/null
        log "rabbitmq ready (pid $pid)"
        return 0
    fi
    if rmq_launcher_pid >/dev/null; then
        log "rabbitmq launcher still running without a node pid; cleaning up"
        stop_rabbitmq
    fi
    ensure_ports_free "$AMQP_PORT:DOSSIERFLOW_AMQP_PORT:rabbitmq amqp" \
        "$MGMT_PORT:DOSSIERFLOW_RABBITMQ_MGMT_PORT:rabbitmq management" \
        "$DIST_PORT:DOSSIERFLOW_AMQP_PORT:rabbitmq erlang distribution = amqp port + 20000"
    names=$(epmd_names "$EPMD_PORT")
    [[ $'\n'$names != *$'\n'"name ${RABBITMQ_NODENAME%%@*} at"* ]] ||
        die "an Erlang node named '${RABBITMQ_NODENAME%%@*}' is already registered with epmd (port $EPMD_PORT): another RabbitMQ on this host?
    ${names//$'\n'/$'\n'    }"
    listeners=$(port_listeners "$EPMD_PORT")
    [[ -z $listeners || $listeners == *'"epmd"'* ]] ||
        die "port $EPMD_PORT (erlang epmd) is held by something that is not epmd: $listeners"
    rmq_write_config
    rm -f "$RABBITMQ_PID_FILE"
    # If epmd is not running, our node starts it (on loopback); remember that so `stop` can stop it.
    if [ -z "$(port_listeners "$EPMD_PORT")" ]; then echo "$EPMD_PORT" >"$RMQ_EPMD_MARK"; else rm -f "$RMQ_EPMD_MARK"; fi
    log "starting rabbitmq $(rmq_version) (node $RABBITMQ_NODENAME, logs in $RABBITMQ_LOG_BASE)"
    (
        cd "$RMQ_DIR"
        close_inherited_fds
        HOME=$RMQ_DIR setsid nohup "$RMQ_SBIN/rabbitmq-server" >"$RMQ_DIR/log/startup.log" 2>&1 </dev/null &
        echo $! >"$RMQ_LAUNCHER_PID"
    )
    pid=$(rmq_wait)
    log "rabbitmq ready in $((SECONDS - t0))s (pid $pid, amqp $HOST:$AMQP_PORT, management http://$HOST:$MGMT_PORT)"
}

stop_rabbitmq() {
    local pid launcher epmd names port
    launcher=$(rmq_launcher_pid) || launcher=""
    if pid=$(rmq_pid); then
        log "stopping rabbitmq (pid $pid)"
        if ! timeout 90 env HOME="$RMQ_DIR" "$RMQ_SBIN/rabbitmqctl" -q stop "$RABBITMQ_PID_FILE" >/dev/null 2>&1; then
            log "rabbitmqctl stop failed; sending SIGTERM to $pid"
            kill -TERM "$pid" 2>/dev/null || true
        fi
        wait_gone "$pid" 30 || { kill -KILL "$pid" 2>/dev/null || true; wait_gone "$pid" 5 || true; }
    else
        log "rabbitmq is not running"
    fi
    if [ -n "$launcher" ]; then # setsid made it a group leader: end its whole group (beam + helpers)
        wait_gone "$launcher" 5 || kill -TERM -- "-$launcher" 2>/dev/null || true
        wait_gone "$launcher" 10 || kill -KILL -- "-$launcher" 2>/dev/null || true
    fi
    rm -f "$RABBITMQ_PID_FILE" "$RMQ_LAUNCHER_PID"
    # Stop epmd only if our node started it and no other Erlang node is registered with it.
    port=$(cat "$RMQ_EPMD_MARK" 2>/dev/null) || port=""
    epmd=$([ -z "$port" ] || port_listeners "$port" | sed -n 's/.*"epmd",pid=\([0-9]*\).*/\1/p;T;q')
    if [ -n "$epmd" ] && command -v epmd >/dev/null; then
        names=$(epmd_names "$port" | sed -n 's/^name //p')
        if [ -z "$names" ]; then
            log "stopping epmd (pid $epmd, started by our rabbitmq)"
            kill -TERM "$epmd" 2>/dev/null || true
            wait_gone "$epmd" 5 || true
        else
            log "leaving epmd (pid $epmd) running: other Erlang nodes use it: ${names//$'\n'/, }"
        fi
    fi
    rm -f "$RMQ_EPMD_MARK"
}

# ---------------------------------------------------------------- ferretdb

fdb_pid() { pid_from "$FDB_PID" "$FDB_DIR/data/"; }

# A real MongoDB-protocol round trip: OP_MSG {hello: 1, $db: "admin"} must return ok: 1.0.
mongo_ping() { # port
    python3 - "$HOST" "$1" <<'PY' 2>/dev/null
import socket, struct, sys
host, port = sys.argv[1], int(sys.argv[2])
el = b"\x10hello\x00" + struct.pack("<i", 1) + b"\x02$db\x00" + struct.pack("<i", 6) + b"admin\x00"
doc = struct.pack("<i", len(el) + 5) + el + b"\x00"
body = struct.pack("<I", 0) + b"\x00" + doc
with socket.create_connection((host, port), timeout=3) as s:
    s.sendall(struct.pack("<iiii", 16 + len(body), 1, 0, 2013) + body)
    buf = b""
    while len(buf) < 4 or len(buf) < struct.unpack("<i", buf[:4])[0]:
        chunk = s.recv(65536)
        if not chunk:
            sys.exit(1)
        buf += chunk
ok = struct.unpack("<i", buf[12:16])[0] == 2013 and b"\x01ok\x00" + struct.pack("<d", 1.0) in buf
sys.exit(0 if ok else 1)
PY
}

fdb_answering() { held_by "$MONGO_PORT" "$1" && mongo_ping "$MONGO_PORT"; }

# The package string names our build of it: bump it when the patch below changes, so a cached
# binary of an older build is rebuilt.
FDB_PACKAGE=dossierflow-local-idindex1-updateclose3-idpushdown1

fdb_version_ok() { # binary
    local out
    out=$("$1" --version 2>/dev/null) && grep -qx "version: $FERRETDB_VERSION" <<<"$out" &&
        grep -qx "package: $FDB_PACKAGE" <<<"$out"
}

# FerretDB v1.24.2 (SQLite) looks documents up by `_ferretdb_sjson->'$._id'` while the unique
# index it creates is on `_ferretdb_sjson->"_id"`: SQLite cannot use the index for the other
# spelling, so every update and delete by _id scans the whole table (17 ms at 10,000 documents).
# Spelling the lookup like the index (same value: both extract the _id member) makes it an
# index search.
# Its update command opens each statement's query iterator (holding one of the database's 100
# pooled SQLite connections) and closes it with a `defer` when the whole command ends: a command
# of 100 or more statements waits for a connection forever and wedges that database until
# restart. The patch reads each statement's documents and closes its iterator before writing:
# a bulk update of any size runs, and no read is open while the write commits (closing it
# after the write instead made bulk updates 3x slower; reading first made update_one 2x faster,
# most likely because an open reader keeps SQLite from resetting its WAL after a checkpoint).
# It pushes `_id` down to SQLite only when the filter is `{_id: value}` alone; a filter that
# pins `_id` and checks more (`{_id, epoch: {$not: {$gt: n}}}`, the sequencer's fenced writes)
# or `{_id: {$in: [...]}}` scanned the whole table (13 ms an update at 3,000 documents). The
# patch pushes `_id` down whenever the filter pins it; the handler still filters every document
# it gets, so results are the same. Test server only; MongoDB in production is not concerned.
patch_ferretdb() { # source dir
    python3 - "$1/internal/backends/sqlite/metadata/metadata.go" <<'PY' ||
import sys
path = sys.argv[1]
old = "IDColumn = DefaultColumn + \"->'$._id'\""
new = """IDColumn = DefaultColumn + `->"_id"`"""
text = open(path).read()
if old not in text:
    sys.exit(1)
open(path, "w").write(text.replace(old, new))
PY
        die "ferretdb source changed: the _id lookup patch no longer applies"
    python3 - "$1/internal/handler/msg_update.go" <<'PY' ||
import sys
path = sys.argv[1]
edits = [
    ("\t\tcloser := iterator.NewMultiCloser()\n\t\tdefer closer.Close()\n",
     "\t\tcloser := iterator.NewMultiCloser()\n"),
    ('\t\tresult, err := common.UpdateDocument(ctx, c, "update", iter, &u)\n',
     '\t\tdocs, err := iterator.ConsumeValues(iter)\n\t\tcloser.Close()\n'
     '\t\tif err != nil {\n\t\t\treturn 0, 0, nil, lazyerrors.Error(err)\n\t\t}\n\n'
     '\t\tdocsIter := iterator.Values(iterator.ForSlice(docs))\n'
     '\t\tresult, err := common.UpdateDocument(ctx, c, "update", docsIter, &u)\n'
     '\t\tdocsIter.Close()\n'),
]
text = open(path).read()
for old, new in edits:
    if text.count(old) != 1:
        sys.exit(1)
    text = text.replace(old, new)
open(path, "w").write(text)
PY
        die "ferretdb source changed: the update iterator patch no longer applies"
    python3 - "$1/internal/backends/sqlite/collection.go" <<'PY' ||
import sys
path = sys.argv[1]
query_old = """	if params.Filter.Len() == 1 {
		v, _ := params.Filter.Get("_id")
		switch v.(type) {
		case string, types.ObjectID:
			whereClause = fmt.Sprintf(` WHERE %s = ?`, metadata.IDColumn)
			args = []any{string(must.NotFail(sjson.MarshalSingleValue(v)))}
		}
	}
"""
explain_old = """	if params.Filter.Len() == 1 {
		v, _ := params.Filter.Get("_id")
		switch v.(type) {
		case string, types.ObjectID:
			filterPushdown = true
			whereClause = fmt.Sprintf(` WHERE %s = ?`, metadata.IDColumn)
			args = []any{string(must.NotFail(sjson.MarshalSingleValue(v)))}
		}
	}
"""
helper = """
// idPushdown (dossierflow test-server patch) uses the _id index whenever the filter pins
// _id to a value or to a short $in list, whatever else it holds: the handler filters
// every document it gets again, so a narrower query changes no result.
func idPushdown(filter *types.Document) (string, []any) {
	if filter == nil {
		return "", nil
	}
	v, err := filter.Get("_id")
	if err != nil {
		return "", nil
	}
	switch v := v.(type) {
	case string, types.ObjectID:
		return fmt.Sprintf(` WHERE %s = ?`, metadata.IDColumn), []any{string(must.NotFail(sjson.MarshalSingleValue(v)))}
	case *types.Document:
		if v.Len() != 1 {
			return "", nil
		}
		in, err := v.Get("$in")
		if err != nil {
			return "", nil
		}
		arr, ok := in.(*types.Array)
		if !ok || arr.Len() == 0 || arr.Len() > 900 {
			return "", nil
		}
		args := make([]any, 0, arr.Len())
		for i := 0; i < arr.Len(); i++ {
			e := must.NotFail(arr.Get(i))
			switch e.(type) {
			case string, types.ObjectID:
				args = append(args, string(must.NotFail(sjson.MarshalSingleValue(e))))
			default:
				return "", nil
			}
		}
		marks := strings.TrimSuffix(strings.Repeat("?,", len(args)), ",")
		return fmt.Sprintf(` WHERE %s IN (%s)`, metadata.IDColumn, marks), args
	}
	return "", nil
}
"""
text = open(path).read()
if text.count(query_old) != 1 or text.count(explain_old) != 1:
    sys.exit(1)
text = text.replace(query_old, "\twhereClause, args = idPushdown(params.Filter)\n")
text = text.replace(explain_old, "\twhereClause, args = idPushdown(params.Filter)\n\tfilterPushdown = whereClause != \"\"\n")
open(path, "w").write(text + helper)
PY
        die "ferretdb source changed: the _id pushdown patch no longer applies"
}

# `go install` / `go build <module>/cmd/ferretdb` produce a binary that panics at start: FerretDB
# reads its version from build/version/version.txt (generated from git, absent in the module zip).
# So build from a copy of the module source with that file written.
build_ferretdb() {
    local build=$CACHE_DIR/ferretdb-build dir tmp
    command -v go >/dev/null || die "ferretdb is not built yet and Go is missing: install Go >= 1.24 (https://go.dev/dl/)"
    mkdir -p "$build" "$(dirname "$FDB_BIN")"
    log "building ferretdb $FERRETDB_VERSION with $(go version | cut -d' ' -f3) (log: $build/build.log)"
    : >"$build/build.log"
    dir=$(cd "$build" && GOFLAGS=-mod=mod go mod download -json "$FERRETDB_MODULE@$FERRETDB_VERSION" 2>>"$build/build.log" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])') ||
        { show_log "$build/build.log"; die "go mod download $FERRETDB_MODULE@$FERRETDB_VERSION failed"; }
    rm -rf "$build/src"
    cp -R "$dir" "$build/src"
    chmod -R u+w "$build/src"
    echo "$FERRETDB_VERSION" >"$build/src/build/version/version.txt"
    echo "$FDB_PACKAGE" >"$build/src/build/version/package.txt"
    patch_ferretdb "$build/src"
    tmp=$FDB_BIN.tmp.$$
    if ! (cd "$build/src" && CGO_ENABLED=0 go build -trimpath -buildvcs=false -o "$tmp" ./cmd/ferretdb) \
        >>"$build/build.log" 2>&1; then
        rm -f "$tmp"
        show_log "$build/build.log"
        die "go build of ferretdb failed"
    fi
    fdb_version_ok "$tmp" ||
        { rm -f "$tmp"; die "freshly built ferretdb does not report $FERRETDB_VERSION"; }
    mv -f "$tmp" "$FDB_BIN"
    rm -rf "$build/src"
}

ensure_ferretdb() {
    [ -x "$FDB_BIN" ] && fdb_version_ok "$FDB_BIN" && return 0
    [ ! -e "$FDB_BIN" ] || log "cached $FDB_BIN is unusable ($("$FDB_BIN" --version 2>&1 | head -n1)); rebuilding"
    build_ferretdb
}

start_ferretdb() {
    local pid t0=$SECONDS deadline
    if pid=$(fdb_pid); then
        if fdb_answering "$pid"; then
            log "ferretdb already running (pid $pid, mongodb $HOST:$MONGO_PORT)"
            return 0
        fi
        held_by "$MONGO_PORT" "$pid" ||
            die "our ferretdb (pid $pid) does not listen on $HOST:$MONGO_PORT; run '$0 stop' first"
    else
        ensure_ferretdb
        ensure_ports_free "$MONGO_PORT:DOSSIERFLOW_MONGO_PORT:ferretdb mongodb"
        mkdir -p "$FDB_DIR/data"
        log "starting ferretdb $FERRETDB_VERSION (sqlite data in $FDB_DIR/data, log $FDB_LOG)"
        (
            cd "$FDB_DIR"
            close_inherited_fds
            # synchronous(normal) in WAL mode: a commit no longer waits for fsync (2-3x the update
            # rate). A FerretDB crash loses nothing; an OS crash or power loss can lose the last
            # commits - acceptable for a local and test server only.
            setsid nohup "$FDB_BIN" --handler=sqlite --sqlite-url="file:$FDB_DIR/data/?_pragma=synchronous(normal)" \
                --listen-addr="$HOST:$MONGO_PORT" --state-dir=- --telemetry=disable --debug-addr=- \
                >>"$FDB_LOG" 2>&1 </dev/null &
            echo $! >"$FDB_PID"
        )
        pid=$(cat "$FDB_PID")
    fi
    deadline=$((SECONDS + TIMEOUT))
    until fdb_answering "$pid"; do
        if ! alive "$pid" || ((SECONDS >= deadline)); then
            log "ERROR: ferretdb did not come up on $HOST:$MONGO_PORT"
            show_log "$FDB_LOG"
            kill -TERM "$pid" 2>/dev/null || true
            exit 1
        fi
        sleep 0.2
    done
    log "ferretdb ready in $((SECONDS - t0))s (pid $pid, mongodb $HOST:$MONGO_PORT)"
}

stop_ferretdb() {
    local pid
    if pid=$(fdb_pid); then
        log "stopping ferretdb (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        wait_gone "$pid" 15 || { kill -KILL "$pid" 2>/dev/null || true; wait_gone "$pid" 5 || true; }
    else
        log "ferretdb is not running"
    fi
    rm -f "$FDB_PID"
}

# ---------------------------------------------------------------- cluster

# Node N runs this same script with its own state dir, ports and node name, so every
# single-node step (config, pid files, start timeout, stop) is the code above.
CLUSTER_DIR=$STATE_DIR/cluster
CLUSTER_SIZE=${DOSSIERFLOW_CLUSTER_SIZE:-3}
CLUSTER_AMQP_PORT=${DOSSIERFLOW_CLUSTER_AMQP_PORT:-5681}
CLUSTER_MGMT_PORT=${DOSSIERFLOW_CLUSTER_MGMT_PORT:-15681}

cluster_check() {
    local _v
    for _v in CLUSTER_SIZE CLUSTER_AMQP_PORT CLUSTER_MGMT_PORT; do
        [[ ${!_v} =~ ^[0-9]+$ ]] || die "DOSSIERFLOW_$_v must be a number, got '${!_v}'"
    done
    ((CLUSTER_SIZE >= 1 && CLUSTER_SIZE <= 9)) || die "DOSSIERFLOW_CLUSTER_SIZE must be 1 to 9"
    # The single node keeps its ports: a cluster overlapping them would be refused later anyway.
    if ((CLUSTER_AMQP_PORT <= AMQP_PORT && AMQP_PORT < CLUSTER_AMQP_PORT + CLUSTER_SIZE)) ||
        ((CLUSTER_MGMT_PORT <= MGMT_PORT && MGMT_PORT < CLUSTER_MGMT_PORT + CLUSTER_SIZE)); then
        die "the cluster's ports overlap the single node's ($AMQP_PORT, $MGMT_PORT)"
    fi
}

cluster_node_name() { echo "dossierflow-c$1@localhost"; }

cluster_node_number() { # "N" -> N, or dies
    if ! [[ ${1:-} =~ ^[1-9]$ ]] || (($1 > CLUSTER_SIZE)); then
        die "node number 1 to $CLUSTER_SIZE expected, got '${1:-}'"
    fi
    echo "$1"
}

cluster_node() { # N command... : this script for node N
    local n=$1
    shift
    DOSSIERFLOW_STATE_DIR=$CLUSTER_DIR/node$n \
        DOSSIERFLOW_AMQP_PORT=$((CLUSTER_AMQP_PORT + n - 1)) \
        DOSSIERFLOW_RABBITMQ_MGMT_PORT=$((CLUSTER_MGMT_PORT + n - 1)) \
        DOSSIERFLOW_RABBITMQ_NODENAME=$(cluster_node_name "$n") \
        bash "$0" "$@"
}

cluster_lock() {
    mkdir -p "$CLUSTER_DIR"
    exec 8>"$CLUSTER_DIR/.lock"
    flock -w 600 8 || die "another services.sh cluster command is still running (lock $CLUSTER_DIR/.lock)"
}

# Nodes cluster only if they share the Erlang cookie: one for the cluster, copied to each node.
cluster_cookie() {
    local n dir
    mkdir -p "$CLUSTER_DIR"
    if [ ! -s "$CLUSTER_DIR/.erlang.cookie" ]; then
        (umask 077 && od -An -N16 -tx1 /dev/urandom | tr -d ' \n' | tr a-f A-F >"$CLUSTER_DIR/.erlang.cookie")
        chmod 400 "$CLUSTER_DIR/.erlang.cookie"
    fi
    for n in $(seq "$CLUSTER_SIZE"); do
        dir=$CLUSTER_DIR/node$n/rabbitmq
        mkdir -p "$dir"
        cmp -s "$CLUSTER_DIR/.erlang.cookie" "$dir/.erlang.cookie" && continue
        rm -f "$dir/.erlang.cookie"
        cp "$CLUSTER_DIR/.erlang.cookie" "$dir/.erlang.cookie"
        chmod 400 "$dir/.erlang.cookie"
    done
}

cluster_api() { # N path -> node N's management API answer (JSON)
    curl -sf --max-time 5 -u guest:guest "http://$HOST:$((CLUSTER_MGMT_PORT + $1 - 1))/api/$2"
}

cluster_members() { # N -> "name running|stopped" per member of node N's cluster
    cluster_api "$1" nodes | python3 -c '
import json, sys
for node in json.load(sys.stdin):
    print(node["name"], "running" if node.get("running") else "stopped")'
}

cluster_join() { # N: node N joins node 1's cluster (nothing to do when it is a member)
    local first members
    first=$(cluster_node_name 1)
    members=$(cluster_members 1) || die "cluster: node 1 ($first) does not answer; cannot join node $1 to it"
    [[ $'\n'$members == *$'\n'"$(cluster_node_name "$1") "* ]] && return 0
    log "cluster: node $1 joins $first (its own data is reset)"
    cluster_node "$1" rabbitmqctl -q stop_app >/dev/null || die "cluster: stop_app on node $1 failed"
    cluster_node "$1" rabbitmqctl -q join_cluster "$first" >/dev/null ||
        die "cluster: node $1 could not join $first"
    cluster_node "$1" rabbitmqctl -q start_app >/dev/null || die "cluster: start_app on node $1 failed"
    cluster_node "$1" start-rabbitmq # waits until its ports answer again
}

cluster_wait_running() {
    local deadline=$((SECONDS + TIMEOUT)) running
    while :; do
        running=$(cluster_members 1 2>/dev/null | grep -c ' running$') || running=0
        ((running >= CLUSTER_SIZE)) && return 0
        ((SECONDS < deadline)) || die "cluster: $running of $CLUSTER_SIZE nodes running after ${TIMEOUT}s"
        sleep 1
    done
}

cluster_node_alive() { # N -> whether node N's RabbitMQ (or its launcher) process lives
    local dir=$CLUSTER_DIR/node$1/rabbitmq
    pid_from "$dir/rabbitmq.pid" "$dir" >/dev/null || pid_from "$dir/launcher.pid" rabbitmq-server >/dev/null
}

cluster_start() {
    local n t0=$SECONDS rc=0 pids=()
    ensure_tools
    # A cluster none of whose nodes runs starts afresh. Its nodes stopped together, and
    # each may remember another as running after itself: on the next boot Mnesia reports
    # a partitioned network and waits for tables that never come (seen:
    # `inconsistent_database, starting_partitioned_network`, "a node did not start"). It
    # holds only what tests and trials left; a node lost alone (`stop-node`) keeps its
    # data and comes back with `start-node`.
    local running=0
    for n in $(seq "$CLUSTER_SIZE"); do cluster_node_alive "$n" && running=1; done
    if [ "$running" = 0 ]; then
        for n in $(seq "$CLUSTER_SIZE"); do rm -rf "$CLUSTER_DIR/node$n"; done
    fi
    cluster_cookie
    # All at once: a node that was not the last to stop waits at boot for its peers.
    for n in $(seq "$CLUSTER_SIZE"); do
        cluster_node "$n" start-rabbitmq &
        pids+=($!)
    done
    for n in "${pids[@]}"; do wait "$n" || rc=1; done
    [ "$rc" = 0 ] || die "cluster: a node did not start (see above)"
    for n in $(seq 2 "$CLUSTER_SIZE"); do cluster_join "$n"; done
    cluster_wait_running
    log "cluster of $CLUSTER_SIZE nodes up ($((SECONDS - t0))s); connection settings: $0 cluster env"
}

cluster_stop() {
    local n rc=0 pids=()
    for n in $(seq "$CLUSTER_SIZE"); do
        cluster_node "$n" stop-rabbitmq &
        pids+=($!)
    done
    for n in "${pids[@]}"; do wait "$n" || rc=1; done
    return "$rc"
}

cluster_status() {
    local n rc=0 members="" port
    for n in $(seq "$CLUSTER_SIZE"); do
        port=$((CLUSTER_MGMT_PORT + n - 1))
        if cluster_api "$n" overview >/dev/null; then
            echo "node $n $(cluster_node_name "$n"): running (amqp $HOST:$((CLUSTER_AMQP_PORT + n - 1)), management http://$HOST:$port)"
            [ -n "$members" ] || members=$(cluster_members "$n") || members=""
        else
            echo "node $n $(cluster_node_name "$n"): stopped (amqp port $((CLUSTER_AMQP_PORT + n - 1)), management port $port)"
            rc=1
        fi
    done
    if [ -n "$members" ]; then
        echo "members: $(tr '\n' ' ' <<<"$members" | sed 's/ $//; s/\([a-z]\) \([a-z0-9-]*@\)/\1, \2/g')"
        [ "$(grep -c . <<<"$members")" = "$CLUSTER_SIZE" ] || rc=1
    fi
    return $rc
}

cluster_env() {
    local n amqp="" api=""
    for n in $(seq "$CLUSTER_SIZE"); do
        amqp+=${amqp:+,}amqp://guest:guest@$HOST:$((CLUSTER_AMQP_PORT + n - 1))/%2F
        api+=${api:+,}http://guest:guest@$HOST:$((CLUSTER_MGMT_PORT + n - 1))/api
    done
    echo "export DOSSIERFLOW_AMQP_URL='$amqp'"
    echo "export DOSSIERFLOW_MONGO_URL='mongodb://$HOST:$MONGO_PORT/'"
    echo "export DOSSIERFLOW_RABBITMQ_API='$api'"
    echo "export DOSSIERFLOW_QUORUM_REPLICAS=$((CLUSTER_SIZE < 3 ? CLUSTER_SIZE : 3))"
}

cmd_cluster() { # subcommand args...
    local n
    cluster_check
    case ${1:-} in
    start)
        cluster_lock
        cluster_start
        ;;
    stop)
        cluster_lock
        find_rabbitmq || die "rabbitmq-server is not installed"
        cluster_stop
        ;;
    status) cluster_status ;;
    env) cluster_env ;;
    stop-node)
        n=$(cluster_node_number "${2:-}")
        cluster_lock
        cluster_node "$n" stop-rabbitmq
        ;;
    start-node)
        n=$(cluster_node_number "${2:-}")
        cluster_lock
        ensure_tools
        cluster_cookie
        cluster_node "$n" start-rabbitmq
        [ "$n" = 1 ] || cluster_join "$n"
        ;;
    rabbitmqctl | rabbitmq-diagnostics | rabbitmq-queues)
        n=$(cluster_node_number "${2:-}")
        cluster_node "$n" "$1" "${@:3}"
        ;;
    *)
        usage
        exit 2
        ;;
    esac
}

# ---------------------------------------------------------------- commands

cmd_status() {
    local pid rc=0 r_state f_state
    find_rabbitmq || true
    if pid=$(rmq_pid); then
        if rmq_answering "$pid"; then r_state=running; else r_state="not answering" rc=1; fi
        echo "rabbitmq: $r_state (pid $pid, amqp $HOST:$AMQP_PORT, management http://$HOST:$MGMT_PORT)"
    else
        echo "rabbitmq: stopped (amqp port $AMQP_PORT, management port $MGMT_PORT)"
        rc=1
    fi
    if pid=$(fdb_pid); then
        if fdb_answering "$pid"; then f_state=running; else f_state="not answering" rc=1; fi
        echo "ferretdb: $f_state (pid $pid, mongodb $HOST:$MONGO_PORT)"
    else
        echo "ferretdb: stopped (mongodb port $MONGO_PORT)"
        rc=1
    fi
    return $rc
}

cmd_env() {
    echo "export DOSSIERFLOW_AMQP_URL='amqp://guest:guest@$HOST:$AMQP_PORT/%2F'"
    echo "export DOSSIERFLOW_MONGO_URL='mongodb://$HOST:$MONGO_PORT/'"
    echo "export DOSSIERFLOW_RABBITMQ_API='http://guest:guest@$HOST:$MGMT_PORT/api'"
}

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
}

case ${1:-} in
start)
    t0=$SECONDS
    lock
    ensure_tools
    ensure_chromium
    ensure_prometheus
    start_rabbitmq
    start_ferretdb
    log "all services up ($((SECONDS - t0))s); connection settings: $0 env"
    ;;
stop)
    lock
    find_rabbitmq || true
    stop_ferretdb
    if [ -n "$RMQ_SBIN" ]; then stop_rabbitmq; else log "rabbitmq is not installed"; fi
    ;;
restart)
    bash "$0" stop
    exec bash "$0" start
    ;;
restart-ferretdb)
    # Build first while the old server still runs, so the database is away only for the restart.
    lock
    ensure_ferretdb
    stop_ferretdb
    start_ferretdb
    ;;
status) cmd_status ;;
env) cmd_env ;;
start-rabbitmq) # RabbitMQ alone (the cluster starts its nodes with this)
    lock
    ensure_tools
    start_rabbitmq
    ;;
stop-rabbitmq)
    lock
    find_rabbitmq || die "rabbitmq-server is not installed"
    stop_rabbitmq
    ;;
cluster) cmd_cluster "${@:2}" ;;
rabbitmqctl | rabbitmq-diagnostics | rabbitmq-plugins | rabbitmq-queues)
    find_rabbitmq || die "rabbitmq-server is not installed"
    HOME=$RMQ_DIR exec "$RMQ_SBIN/$1" "${@:2}"
    ;;
-h | --help | help) usage ;;
*)
    usage
    exit 2
    ;;
esac
