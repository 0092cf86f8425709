#!/usr/bin/env bash
# The outpost demo: sensor_gateway writes readings (and their outbox messages) while a local
# mosquitto is stopped in the middle of the run and started again later. A subscriber counts
# what arrives; the demo succeeds only if every reading's message arrived.
#
#   examples/run-demo.sh                            installs what it needs, builds, runs
#   examples/run-demo.sh path/to/sensor_gateway     runs an already built demo
#
# Everything runs on 127.0.0.1, on a free port, in a temporary directory removed at the end.
# The subscriber keeps a persistent session (clean session off, QoS 1) on a broker with
# persistence on, so what arrives while it reconnects is queued for it, not lost: the count
# judges outpost, not the timing of the demo.
set -euo pipefail

if [ $# -eq 0 ]; then
    # The README's main-job command: set up from nothing on a fresh Debian 12 machine.
    cd "$(dirname "$0")/.."
    tools/install-deps.sh
    [ -f build/build.ninja ] || meson setup build --wrap-mode=nofallback
    ninja -C build examples/sensor_gateway
fi
GATEWAY=${1:-build/examples/sensor_gateway}
COUNT=${COUNT:-3000}
MOSQUITTO=${MOSQUITTO:-/usr/sbin/mosquitto}

[ -x "$GATEWAY" ] || { echo "sensor_gateway not found at $GATEWAY (build first)" >&2; exit 2; }
command -v mosquitto_sub >/dev/null || { echo "mosquitto_sub is needed (mosquitto-clients)" >&2; exit 2; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/outpost-demo-XXXXXX")
BROKER_PID=""
SUB_PID=""
GATEWAY_PID=""
cleanup() {
    for pid in $GATEWAY_PID $SUB_PID $BROKER_PID; do
        kill "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# A free loopback port: bind port 0 and read back what the kernel chose.
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

{
    # Started as root, mosquitto would switch to user "mosquitto", which cannot write here.
    [ "$(id -u)" = 0 ] && echo "user root"
    echo "listener $PORT 127.0.0.1"
    echo "allow_anonymous true"
    echo "persistence true"
    echo "persistence_location $WORK/"
    echo "max_queued_messages 1000000"
    echo "log_dest file $WORK/mosquitto.log"
} > "$WORK/mosquitto.conf"

start_broker() {
    "$MOSQUITTO" -c "$WORK/mosquitto.conf" &
    BROKER_PID=$!
    for _ in $(seq 1 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    echo "mosquitto did not start" >&2
    exit 1
}

stop_broker() {
    kill -TERM "$BROKER_PID"   # a clean stop: mosquitto saves its sessions
    wait "$BROKER_PID" 2>/dev/null || true
    BROKER_PID=""
}

echo "== mosquitto on 127.0.0.1:$PORT, work dir $WORK"
start_broker

# The subscriber: one line per message with its outpost-id (MQTT 5 user property). It
# reconnects by itself after the outage and gets what the broker queued for it meanwhile.
mosquitto_sub -h 127.0.0.1 -p "$PORT" -V 5 -q 1 -c -x 600 -i outpost-demo-counter \
    -t 'gateway/#' -F '%P' > "$WORK/received.txt" 2>"$WORK/sub.log" &
SUB_PID=$!
for _ in $(seq 1 100); do
    grep -q "outpost-demo-counter" "$WORK/mosquitto.log" 2>/dev/null && break
    sleep 0.05
done
sleep 0.2  # the SUBSCRIBE follows the CONNECT; mosquitto logs no line for it

echo "== sensor_gateway: $COUNT readings"
"$GATEWAY" --broker "tcp://127.0.0.1:$PORT" --db "$WORK/gateway.db" --count "$COUNT" \
    --interval-ms 2 --reconnect-ms 1000 --drain-s 120 &
GATEWAY_PID=$!

sleep 2
echo "== stopping the broker (the gateway keeps storing readings)"
stop_broker
sleep 3
echo "== starting the broker again"
start_broker

set +e
wait "$GATEWAY_PID"
GATEWAY_STATUS=$?
set -e
GATEWAY_PID=""

# Give the subscriber a moment to take what the broker still holds for it.
for _ in $(seq 1 100); do
    ARRIVED=$(grep -o 'outpost-id:[^ ]*' "$WORK/received.txt" | sort -u | wc -l)
    [ "$ARRIVED" -ge "$COUNT" ] && break
    sleep 0.1
done
TOTAL=$(grep -c 'outpost-id:' "$WORK/received.txt" || true)
ARRIVED=$(grep -o 'outpost-id:[^ ]*' "$WORK/received.txt" | sort -u | wc -l)

echo "== subscriber: $ARRIVED of $COUNT distinct messages arrived ($((TOTAL - ARRIVED)) duplicates)"
if [ "$GATEWAY_STATUS" -eq 0 ] && [ "$ARRIVED" -eq "$COUNT" ]; then
    echo "== demo OK: every reading arrived despite the outage"
    exit 0
fi
echo "== demo FAILED (gateway exit $GATEWAY_STATUS)" >&2
exit 1
