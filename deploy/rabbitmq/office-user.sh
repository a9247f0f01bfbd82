#!/usr/bin/env bash
# Create (or update) the broker user of one office's connectors:
#     office-user.sh OFFICE PASSWORD [VHOST]        (VHOST defaults to "dossierflow")
# The user `connector-OFFICE` reaches only the work queue of its office (see README.md).
# RABBITMQCTL overrides the command, e.g. for the local services:
#     RABBITMQCTL="bash deploy/local/services.sh rabbitmqctl" deploy/rabbitmq/office-user.sh office1 s3cret
# MAX_CONNECTIONS and MAX_CHANNELS (defaults 16 and 48) bound what the login may hold open
# at once, all its connectors together: one connection and about 2 channels per slot.
# Idempotent: an existing user gets the new password, the same permissions and limits.
# The password is passed to rabbitmqctl on its command line (visible in `ps` meanwhile).
set -euo pipefail

die() {
    echo "office-user.sh: $*" >&2
    exit 2
}

[ $# -ge 2 ] && [ $# -le 3 ] || die "usage: office-user.sh OFFICE PASSWORD [VHOST]"
office=$1
password=$2
vhost=${3:-dossierflow}
[[ $office =~ ^[A-Za-z0-9_-]{1,64}$ ]] ||
    die "bad office id '$office': 1 to 64 letters, digits, '_' or '-'"
[ -n "$password" ] || die "empty password"
max_connections=${MAX_CONNECTIONS:-16}
max_channels=${MAX_CHANNELS:-48}
[[ $max_connections =~ ^[1-9][0-9]{0,5}$ && $max_channels =~ ^[1-9][0-9]{0,5}$ ]] ||
    die "MAX_CONNECTIONS and MAX_CHANNELS must be positive numbers"

read -r -a ctl <<<"${RABBITMQCTL:-rabbitmqctl}"
user="connector-$office"

# Anchored patterns: `office1` must not reach `office10`, nor `dossierflow.work.office1x`.
# The office id holds only [A-Za-z0-9_-], none of which is special in a regex.
# configure: declare its own work queue (with the dead-letter arguments).
# write: publish its events (started, done, failed) to the events exchange, and be the
#   destination of its queue's binding (queue.bind needs write on the queue). Never the
#   control, dead-letter or retry exchanges: commands, timers and dead letters come only
#   from the dispatcher, the API and the broker itself. The topic permission on the events
#   exchange allows only routing keys `OFFICE.<dossier>`: no event about another office.
# read: consume its own queue, and be allowed to bind it to the work exchange (queue.bind
#   needs read on the source exchange); the topic permission below then limits which
#   binding keys it may use on that exchange to `OFFICE.*`, so it cannot bind `#` or
#   another office's key and so never sees another office's work.
configure="^dossierflow\\.work\\.${office}\$"
write="^dossierflow\\.(events|work\\.${office})\$"
read_="^dossierflow\\.work(\\.${office})?\$"
topic_write="^\$"
topic_read="^${office}\\.\\*\$"
topic_events="^${office}\\."

if "${ctl[@]}" -q list_users --no-table-headers | cut -f1 | grep -qxF -- "$user"; then
    "${ctl[@]}" -q change_password "$user" "$password"
else
    "${ctl[@]}" -q add_user "$user" "$password"
fi
"${ctl[@]}" -q set_permissions -p "$vhost" "$user" "$configure" "$write" "$read_"
"${ctl[@]}" -q set_topic_permissions -p "$vhost" "$user" dossierflow.work "$topic_write" "$topic_read"
"${ctl[@]}" -q set_topic_permissions -p "$vhost" "$user" dossierflow.events "$topic_events" "^\$"
# User limits (RabbitMQ >= 3.8.10): a leaked or buggy connector cannot exhaust the broker's
# connections, channels and memory with its own. They count across every virtual host.
"${ctl[@]}" -q set_user_limits "$user" \
    "{\"max-connections\": $max_connections, \"max-channels\": $max_channels}"
"${ctl[@]}" list_user_permissions "$user"
"${ctl[@]}" list_user_topic_permissions "$user"
"${ctl[@]}" list_user_limits --user "$user"
