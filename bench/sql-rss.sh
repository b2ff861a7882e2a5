#!/bin/sh
# sql-rss.sh measures the producer's peak RSS while it streams a large
# query: it fills a table of N profiles (default 1,000,000) in PostgreSQL
# ($DATABASE_URL) or, with "mysql" as the second argument, MySQL/MariaDB
# ($MYSQL_URL, using MariaDB's seq_1_to_N sequence table), starts a private
# Redis on a free loopback port, and runs
#   enqueue --db-url URL --query "SELECT ..." --redis-url ...
# under /usr/bin/time -v. It drops its table and stops its Redis at the end.
#
# usage: DATABASE_URL=postgres://... bench/sql-rss.sh [N]
#        MYSQL_URL=mysql://... bench/sql-rss.sh [N] mysql
set -eu
N=${1:-1000000}
DIALECT=${2:-postgres}
cd "$(dirname "$0")/.."

table="bench_rss_$$"
if [ "$DIALECT" = mysql ]; then
	: "${MYSQL_URL:?set MYSQL_URL to a MariaDB test database}"
	URL=$MYSQL_URL
	# mysql://user[:pass]@host:port/db -> mysql client flags
	rest=${URL#mysql://}; cred=${rest%%@*}; hostport=${rest#*@}; hostport=${hostport%%/*}; db=${rest##*/}; db=${db%%\?*}
	user=${cred%%:*}; pass=""; [ "$cred" != "$user" ] && pass=${cred#*:}
	sqlrun() { MYSQL_PWD=$pass mysql -h "${hostport%%:*}" -P "${hostport##*:}" -u "$user" "$db" -e "$1"; }
	create="CREATE TABLE $table (id varchar(64), email varchar(100), first_name varchar(100), signed_up datetime)"
	fill="INSERT INTO $table SELECT CONCAT('uprof_', LPAD(seq, 24, '0')), CONCAT('user', seq, '@example.com'), CONCAT('Name ', seq), NOW() FROM seq_1_to_$N"
else
	: "${DATABASE_URL:?set DATABASE_URL to a PostgreSQL test database}"
	URL=$DATABASE_URL
	sqlrun() { psql -q "$URL" -c "$1"; }
	create="CREATE TABLE $table (id text, email text, first_name text, signed_up timestamptz)"
	fill="INSERT INTO $table SELECT 'uprof_' || lpad(g::text, 24, '0'), 'user' || g || '@example.com', 'Name ' || g, now() FROM generate_series(1, $N) g"
fi

dir=$(mktemp -d)
port=$((20000 + $$ % 20000))
cleanup() {
	sqlrun "DROP TABLE IF EXISTS $table" >/dev/null 2>&1 || true
	if [ -f "$dir/redis.pid" ]; then
		pid=$(cat "$dir/redis.pid")
		kill "$pid" 2>/dev/null || true
		# Wait for it to go: it writes its log as it stops.
		for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	fi
	rm -rf "$dir"
}
trap cleanup EXIT INT TERM

go build -o "$dir/enqueue" ./cmd/enqueue
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
	--daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
sleep 0.5

sqlrun "$create"
sqlrun "$fill"

/usr/bin/time -v "$dir/enqueue" --db-url "$URL" --redis-url "redis://127.0.0.1:$port/0" \
	--query "SELECT id, email, first_name, signed_up FROM $table" --campaign "bench-rss-$$" \
	>"$dir/out.txt" 2>"$dir/time.txt" || { cat "$dir/out.txt" "$dir/time.txt"; exit 1; }
grep -E 'rows read|enqueued' "$dir/out.txt"
grep -E 'Maximum resident|Elapsed' "$dir/time.txt"
