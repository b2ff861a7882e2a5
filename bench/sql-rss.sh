#!/bin/sh
# sql-rss.sh measures the producer's peak RSS while it streams a large
# query: it fills a PostgreSQL table of N profiles (default 1,000,000), starts
# a private Redis on a free loopback port, and runs
#   enqueue --db-url "$DATABASE_URL" --query "SELECT ..." --redis-url ...
# under /usr/bin/time -v. It drops its table and stops its Redis at the end.
#
# usage: DATABASE_URL=postgres://... bench/sql-rss.sh [N]
set -eu
N=${1:-1000000}
: "${DATABASE_URL:?set DATABASE_URL to a PostgreSQL test database}"
cd "$(dirname "$0")/.."

dir=$(mktemp -d)
table="bench_rss_$$"
port=$((20000 + $$ % 20000))
cleanup() {
	psql -q "$DATABASE_URL" -c "DROP TABLE IF EXISTS $table" >/dev/null 2>&1 || true
	[ -f "$dir/redis.pid" ] && kill "$(cat "$dir/redis.pid")" 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT INT TERM

go build -o "$dir/enqueue" ./cmd/enqueue
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
	--daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
sleep 0.5

psql -q "$DATABASE_URL" -c "CREATE TABLE $table (id text, email text, first_name text, signed_up timestamptz)"
psql -q "$DATABASE_URL" -c "INSERT INTO $table SELECT 'uprof_' || lpad(g::text, 24, '0'), 'user' || g || '@example.com', 'Name ' || g, now() FROM generate_series(1, $N) g"

/usr/bin/time -v "$dir/enqueue" --db-url "$DATABASE_URL" --redis-url "redis://127.0.0.1:$port/0" \
	--query "SELECT id, email, first_name, signed_up FROM $table" --campaign "bench-rss-$$" \
	>"$dir/out.txt" 2>"$dir/time.txt" || { cat "$dir/out.txt" "$dir/time.txt"; exit 1; }
grep -E 'rows read|enqueued' "$dir/out.txt"
grep -E 'Maximum resident|Elapsed' "$dir/time.txt"
