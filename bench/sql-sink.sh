#!/bin/sh
# sql-sink.sh runs a campaign of N profiles (default 2,000) on two worker
# processes that share one result sink, against a sandbox that fails a
# fifth of its calls with a 500, so that tasks are retried:
#
#   table    both write one PostgreSQL table ($DATABASE_URL) through the
#            queue's outbox; waits for it to empty and prints the table's
#            rows, distinct profiles, created rows and retried profiles.
#   webhook  both post to bench/webhookrecv, which refuses every fifth
#            delivery; waits for the outbox to empty and prints the
#            receiver's counts (requests, refused, bad signatures, profiles).
#
# A private Redis, sandbox and receiver run on free loopback ports; the
# table is dropped at the end.
#
# usage: DATABASE_URL=postgres://... bench/sql-sink.sh table [N]
#        bench/sql-sink.sh webhook [N]
set -eu
MODE=${1:-table}
N=${2:-2000}
cd "$(dirname "$0")/.."

dir=$(mktemp -d)
table="bench_sink_$$"
rport=$((20000 + $$ % 20000))
aport=$((rport + 1))
hport=$((rport + 2))
pids=""
cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null || true; done
	if [ -f "$dir/redis.pid" ]; then
		rpid=$(cat "$dir/redis.pid")
		kill "$rpid" 2>/dev/null || true
		# Wait for it to go: it writes its log as it stops.
		for _ in $(seq 1 50); do kill -0 "$rpid" 2>/dev/null || break; sleep 0.1; done
	fi
	[ "$MODE" = table ] && psql -q "$DATABASE_URL" -c "DROP TABLE IF EXISTS $table" >/dev/null 2>&1 || true
	rm -rf "$dir"
}
trap cleanup EXIT INT TERM

case $MODE in
table)
	: "${DATABASE_URL:?set DATABASE_URL to a PostgreSQL test database}"
	set -- --sink "$DATABASE_URL" --sink-table "$table"
	;;
webhook)
	export ENROLLQ_WEBHOOK_SECRET="bench-$$-$(date +%s)"
	go build -o "$dir/webhookrecv" ./bench/webhookrecv
	"$dir/webhookrecv" --addr "127.0.0.1:$hport" --fail-every 5 >"$dir/recv.log" 2>&1 &
	pids="$pids $!"
	set -- --sink "http://127.0.0.1:$hport/hook"
	;;
*)
	echo "usage: $0 table|webhook [N]" >&2
	exit 2
	;;
esac

for c in enqueue worker sandbox; do go build -o "$dir/$c" "./cmd/$c"; done
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no \
	--daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
"$dir/sandbox" --addr "127.0.0.1:$aport" --keys bench-key --fail 500=0.2 >"$dir/sandbox.log" 2>&1 &
pids="$pids $!"
sleep 0.5

export ANTHROPIC_API_KEY=bench-key REDIS_URL="redis://127.0.0.1:$rport/0"
for i in 1 2; do
	"$dir/worker" --base-url "http://127.0.0.1:$aport" --rate 0 --concurrency 20 "$@" >"$dir/worker$i.log" 2>&1 &
	pids="$pids $!"
done

{
	echo user_profile_id,email
	seq 1 "$N" | awk '{ printf "uprof_%024d,user%d@example.com\n", $1, $1 }'
} >"$dir/in.csv"
"$dir/enqueue" --csv "$dir/in.csv" --campaign "bench-sink-$$" --wait --out "$dir/out.csv" >"$dir/enqueue.log" 2>&1 ||
	{ cat "$dir/enqueue.log"; exit 1; }
grep -E '^wrote' "$dir/enqueue.log"
curl -s "http://127.0.0.1:$aport/_sandbox/stats" | grep -o '"by_status":{[^}]*}'

# Deliveries trail the results: wait for the outbox to empty.
outbox="enrollq:$MODE:{enrollq}"
for _ in $(seq 1 120); do
	[ "$(redis-cli -p "$rport" XLEN "$outbox")" = 0 ] && break
	sleep 0.5
done
echo "outbox left: $(redis-cli -p "$rport" XLEN "$outbox")"
if [ "$MODE" = table ]; then
	echo "rows|profiles|created|max_attempts|retried_profiles"
	psql -At "$DATABASE_URL" -c "SELECT count(*), count(DISTINCT user_profile_id), sum(CASE WHEN status = 'created' THEN 1 ELSE 0 END), max(attempts), sum(CASE WHEN attempts > 1 THEN 1 ELSE 0 END) FROM $table"
	exit 0
fi
curl -s "http://127.0.0.1:$hport/stats"
