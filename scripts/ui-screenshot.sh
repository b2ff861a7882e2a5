#!/usr/bin/env bash
# Screenshot of the web UI mid-campaign: builds the commands, starts the
# stand-in API and one Redis-backed worker serving the UI on loopback,
# enqueues a campaign, and saves what headless Chromium shows of the
# campaign's queue page (asynqmon) and of /campaigns.
#
#   scripts/ui-screenshot.sh [OUT_DIR]      # default docs/
#
# Needs redis-server reachable at $REDIS_URL (default db 14 of
# 127.0.0.1:6379, kept apart from the tests and the chaos suite's db 13)
# and chromium (Debian: apt-get install -y chromium). Ports: the first
# free ones from $UI_PORT (8089) and $SANDBOX_PORT (8797). The demo's tasks
# stay in that db: running the script again the same day continues the
# same campaign.
set -euo pipefail
cd "$(dirname "$0")/.."

out_dir=${1:-docs}
redis_url=${REDIS_URL:-redis://127.0.0.1:6379/14}
queue=enrollq-ui-demo
campaign='ui-demo-{date}'
profiles=300

log() { printf 'ui-screenshot: %s\n' "$*" >&2; }

# free_port PORT: PORT, or the next one nothing listens on.
free_port() {
  local p=$1
  while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done
  echo "$p"
}

# alive NAME PID: fail when a process we started has already exited.
alive() {
  sleep 0.5
  kill -0 "$2" 2>/dev/null || { log "$1 exited at start (see above)"; exit 1; }
}

ui_port=$(free_port "${UI_PORT:-8089}")
sandbox_port=$(free_port "${SANDBOX_PORT:-8797}")

command -v chromium >/dev/null || { log "chromium not found (apt-get install -y chromium)"; exit 1; }
mkdir -p "$out_dir"
work=$(mktemp -d)
pids=()
cleanup() { # the worker first, then the API it calls
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill "${pids[i]}" 2>/dev/null || true
    wait "${pids[i]}" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

log "building into $work"
go build -o "$work/" ./cmd/worker ./cmd/enqueue ./cmd/sandbox

{
  echo "user_profile_id,email,first_name"
  for i in $(seq 1 $profiles); do printf 'uprof_01UIDEMO%012d,person.%d@example.com,Person %d\n' "$i" "$i" "$i"; done
} >"$work/profiles.csv"

"$work/sandbox" --addr "127.0.0.1:$sandbox_port" --keys sandbox-key --latency 50ms --log-level warn &
pids+=($!)
alive sandbox $!

# A slow worker (5 calls/s) so that the screenshot catches the queue with
# tasks still pending, some done.
ANTHROPIC_API_KEY=sandbox-key ANTHROPIC_BASE_URL="http://127.0.0.1:$sandbox_port" \
  "$work/worker" --redis-url "$redis_url" --queue "$queue" --rate 5 --concurrency 5 \
  --ui-addr "127.0.0.1:$ui_port" --ui-read-only --log-level warn &
pids+=($!)
alive worker $!

for _ in $(seq 1 50); do
  curl -fsS "http://127.0.0.1:$ui_port/campaigns" >/dev/null 2>&1 && break
  sleep 0.2
done

"$work/enqueue" --redis-url "$redis_url" --queue "$queue" --campaign "$campaign" --csv "$work/profiles.csv"
sleep 6 # let the worker mint a few

# asynqmon is a single-page app: the virtual time budget lets its
# scripts fetch the queue's counts before the picture is taken.
shot() { # shot FILE SIZE URL
  chromium --headless --no-sandbox --disable-gpu --hide-scrollbars \
    --window-size="$2" --virtual-time-budget=8000 \
    --screenshot="$1" "$3" 2>/dev/null
  log "saved $1 ($3)"
}
shot "$out_dir/ui-queue.png" 1400,560 "http://127.0.0.1:$ui_port/queues/$queue"
shot "$out_dir/ui-campaigns.png" 700,80 "http://127.0.0.1:$ui_port/campaigns"

"$work/enqueue" --redis-url "$redis_url" --queue "$queue" --campaign "$campaign" --status
