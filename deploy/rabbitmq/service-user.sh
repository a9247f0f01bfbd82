#!/usr/bin/env bash
# Create (or update) the broker login of the dispatcher or of the API:
#     service-user.sh dispatcher|api PASSWORD [VHOST]    (VHOST defaults to "dossierflow")
# Each gets what its process declares, publishes to and consumes from, and nothing else
# (see README.md "Service logins"). LOGIN overrides the login's name (default: the role);
# RABBITMQCTL overrides the command, e.g. for the local services:
#     RABBITMQCTL="bash deploy/local/services.sh rabbitmqctl" deploy/rabbitmq/service-user.sh api s3cret
# MAX_CONNECTIONS and MAX_CHANNELS bound what the login holds open at once, all replicas
# together (dispatcher: 32 and 160, about 3 connections and 10 channels a replica; api:
# 128 and 320, one connection of 2 channels per request thread, 40 by default, and one of
# 1 channel for the page's change notices, per replica).
# Idempotent: an existing login gets the new password, the same permissions, tag and limits.
# The password is passed to rabbitmqctl on its command line (visible in `ps` meanwhile).
set -euo pipefail

die() {
    echo "service-user.sh: $*" >&2
    exit 2
}

[ $# -ge 2 ] && [ $# -le 3 ] || die "usage: service-user.sh dispatcher|api PASSWORD [VHOST]"
role=$1
password=$2
vhost=${3:-dossierflow}
user=${LOGIN:-$role}
[[ $user =~ ^[A-Za-z0-9_-]{1,64}$ ]] ||
    die "bad login '$user': 1 to 64 letters, digits, '_' or '-'"
[[ $user != guest ]] || die "the login must not be guest"
[ -n "$password" ] || die "empty password"

# Every name of ours is `dossierflow.<part>` or `dossierflow.<part>.<suffix>`; the suffixes
# (partition p00, parked, delay 10s, office id) hold no dot.
ours() { echo "^dossierflow\\.($1)(\\.[^.]+)?\$"; }
case $role in
dispatcher)
    # configure: declare the whole topology (broker/topology.py, Channel.declare_control):
    #   the partitions, control, work, dead-letter, changes, events, parked and delay
    #   exchanges, the partition, parked and delay queues, and each office's work queue at
    #   its first release (Owner._publish). `retry` covers the delay queues of earlier
    #   versions (dossierflow.retry.<n>s), for deleting them once they are empty.
    configure=$(ours 'partitions|control|work|dead|changes|events|parked|delay|retry')
    # write: publish to the partitions exchange (sweeper: republished commands,
    #   task.release_lost; owners: messages forwarded to their own partition), the work
    #   exchange (releases), the delay exchanges (timers) and the changes exchange
    #   (notices); be the destination of its bindings (queue.bind needs write on the queue,
    #   exchange.bind and unbind on the destination exchange); and name the dead-letter and
    #   alternate exchanges of what it declares (RabbitMQ wants write on them: dead for the
    #   work queues, parked for the partitions, partitions for the delay queues, control as
    #   the partitions exchange's alternate). Never the events exchange: only connectors
    #   publish events, and the default exchange is not matched (no publishing straight
    #   into a queue).
    write=$(ours 'partitions|control|work|dead|changes|parked|delay|retry')
    # read: consume the partitions; be the source of its bindings (queue.bind and
    #   exchange.bind need read on the source: partitions, control, work, parked, delay,
    #   dead, events); and read on each queue declared with a dead-letter exchange (RabbitMQ
    #   checks it with the DLX), which covers the work queues too: it declares them, so it
    #   could read them.
    read_=$(ours 'partitions|control|work|dead|events|parked|delay|retry')
    # The sweeper reads the work queues' unacknowledged counts from the management API
    # (DOSSIERFLOW_RABBITMQ_API, Admin.queue_if_any): `management` shows the queues of the
    # virtual hosts the login has permissions in and nothing else (`monitoring` would show
    # every vhost, connection and node, `administrator` could change users).
    tags=management
    max_connections=${MAX_CONNECTIONS:-32}
    max_channels=${MAX_CHANNELS:-160}
    ;;
api)
    # configure: only the exclusive, server-named queue (`amq.gen-...`) of its change feed
    #   (dispatcher/api/changes.py); a client cannot declare a name in `amq.` itself. It
    #   declares nothing of the topology: it uses what the dispatcher declared (and may not
    #   delete it).
    configure='^amq\.gen-[^.]*$'
    # write: publish commands (submitted, restart, cancel, resolve) to the partitions
    #   exchange, and bind its feed queue (queue.bind needs write on the queue).
    write='^(dossierflow\.partitions|amq\.gen-[^.]*)$'
    # read: bind its feed queue to the changes exchange (read on the source) and consume it.
    #   No partition, work, retry or dead-letter queue.
    read_='^(dossierflow\.changes|amq\.gen-[^.]*)$'
    tags=
    max_connections=${MAX_CONNECTIONS:-128}
    max_channels=${MAX_CHANNELS:-320}
    ;;
*)
    die "unknown role '$role': dispatcher or api"
    ;;
esac
[[ $max_connections =~ ^[1-9][0-9]{0,5}$ && $max_channels =~ ^[1-9][0-9]{0,5}$ ]] ||
    die "MAX_CONNECTIONS and MAX_CHANNELS must be positive numbers"

read -r -a ctl <<<"${RABBITMQCTL:-rabbitmqctl}"

if "${ctl[@]}" -q list_users --no-table-headers | cut -f1 | grep -qxF -- "$user"; then
    "${ctl[@]}" -q change_password "$user" "$password"
else
    "${ctl[@]}" -q add_user "$user" "$password"
fi
# shellcheck disable=SC2086 # no tag at all for the api: set_user_tags with none clears them
"${ctl[@]}" -q set_user_tags "$user" $tags
"${ctl[@]}" -q set_permissions -p "$vhost" "$user" "$configure" "$write" "$read_"
# Topic permissions are for topic exchanges: the work exchange takes the dispatcher's
# releases under any office's key, and the events exchange is the connectors'. The api
# login has no write there anyway; `^$` says so again should its permissions ever widen.
if [ "$role" = api ]; then
    "${ctl[@]}" -q set_topic_permissions -p "$vhost" "$user" dossierflow.work '^$' '^$'
    "${ctl[@]}" -q set_topic_permissions -p "$vhost" "$user" dossierflow.events '^$' '^$'
fi
"${ctl[@]}" -q set_user_limits "$user" \
    "{\"max-connections\": $max_connections, \"max-channels\": $max_channels}"
"${ctl[@]}" list_user_permissions "$user"
"${ctl[@]}" list_user_topic_permissions "$user"
"${ctl[@]}" list_user_limits --user "$user"
