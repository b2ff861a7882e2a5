#!/bin/sh
# sql-sink.sh runs a campaign of N profiles (default 2,000) on two worker
# processes that both write to one PostgreSQL result table (--sink), against
# a sandbox that fails a fifth of its calls with a 500, so that tasks are
# retried; then counts the table's rows. A private Redis and sandbox run on
# free loopback ports; the table is dropped at the end.
#
# usage: DATABASE_URL=postgres://... bench/sql-sink.sh [N]
set -eu
N=${1:-2000}
: "${DATABASE_URL:?set DATABASE_URL to a PostgreSQL test database}"
cd "$(dirname "$0")/.."

dir=$(mktemp -d)
table="bench_sink_$$"
rport=$((20000 + $$ % 20000))
aport=$((rport + 1))
pids=""
cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null || true; done
	[ -f "$dir/redis.pid" ] && kill "$(cat "$dir/redis.pid")" 2>/dev/null || true
	psql -q "$DATABASE_URL" -c "DROP TABLE IF EXISTS $table" >/dev/null 2>&1 || true
	rm -rf "$dir"
}
trap cleanup EXIT INT TERM

for c in enqueue worker sandbox; do go build -o "$dir/$c" "./cmd/$c"; done
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no \
	--daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
"$dir/sandbox" --addr "127.0.0.1:$aport" --keys bench-key --fail 500=0.2 >"$dir/sandbox.log" 2>&1 &
pids="$pids $!"
sleep 0.5

export ANTHROPIC_API_KEY=bench-key REDIS_URL="redis://127.0.0.1:$rport/0"
for i in 1 2; do
	"$dir/worker" --base-url "http://127.0.0.1:$aport" --rate 0 --concurrency 20 \
		--sink "$DATABASE_URL" --sink-table "$table" >"$dir/worker$i.log" 2>&1 &
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
psql -At "$DATABASE_URL" -c "SELECT count(*) AS rows, count(DISTINCT user_profile_id) AS profiles, sum(CASE WHEN status = 'created' THEN 1 ELSE 0 END) AS created, max(attempts) AS max_attempts, sum(CASE WHEN attempts > 1 THEN 1 ELSE 0 END) AS retried FROM $table"
