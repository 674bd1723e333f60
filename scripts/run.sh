#!/usr/bin/env bash
# Start the whole product on the local demo fleet, in the foreground. Ctrl-C (or `make stop`) stops
# everything this script started: web, worker, beat, the demo fleet, and Redis if it started it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
mkdir -p var

export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"
redis_port=$(echo "$REDIS_URL" | sed -nE 's#^redis://(127\.0\.0\.1|localhost)(:([0-9]+))?/.*#\3#p')
if ! .venv/bin/python -c "import redis,os; redis.Redis.from_url(os.environ['REDIS_URL'], socket_timeout=1).ping()" 2>/dev/null; then
  if [ -z "${redis_port}" ] && ! echo "$REDIS_URL" | grep -qE '^redis://(127\.0\.0\.1|localhost)/'; then
    echo "Redis at $REDIS_URL does not answer." >&2; exit 1
  fi
  redis-server --port "${redis_port:-6379}" --bind 127.0.0.1 --daemonize yes --save "" \
    --dir "$PWD/var" --pidfile "$PWD/var/redis.pid" --logfile "$PWD/var/redis.log"
  echo "Started Redis on port ${redis_port:-6379} (pid file var/redis.pid)"
fi

$PY manage.py migrate --noinput -v0
$PY manage.py fleet up --register
$PY manage.py demo_users

cleanup() {
  trap - EXIT INT TERM
  [ -f var/honcho.pid ] && kill "$(cat var/honcho.pid)" 2>/dev/null || true
  rm -f var/honcho.pid
  echo "Stopping the demo fleet..."
  $PY manage.py fleet down || true
  if [ -f var/redis.pid ]; then kill "$(cat var/redis.pid)" 2>/dev/null || true; rm -f var/redis.pid; fi
}
trap cleanup EXIT INT TERM

echo
echo "isoweb is starting at http://${ISOWEB_BIND:-127.0.0.1}:${ISOWEB_PORT:-8000}/  (log in with a user above; Ctrl-C stops)"
.venv/bin/honcho start -f Procfile &
echo $! > var/honcho.pid
wait "$(cat var/honcho.pid)" || true
