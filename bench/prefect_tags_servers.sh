#!/bin/sh
# bench/prefect_tags.py against a standing `prefect server start`, first on SQLite, then on PostgreSQL, to show
# what the database does to stage-tag costs. Needs Debian's PostgreSQL (`apt-get install postgresql`, as root);
# installs asyncpg into .venv. Run from the repository root: `sh bench/prefect_tags_servers.sh`.
set -eu
PORT=4301
VENV=.venv/bin
export PREFECT_SERVER_ANALYTICS_ENABLED=false

$VENV/pip install --quiet asyncpg
pg_ctlcluster "$(ls /etc/postgresql)" main start 2>/dev/null || true
su postgres -c "psql -qc \"CREATE ROLE podflow LOGIN PASSWORD 'podflow'\"" 2>/dev/null || true
su postgres -c "psql -qc 'DROP DATABASE IF EXISTS podflow_bench'"
su postgres -c "psql -qc 'CREATE DATABASE podflow_bench OWNER podflow'"

measure() {  # $1: label; $2: database URL, or nothing for the server's own SQLite
    home=$(mktemp -d)
    (
        export PREFECT_HOME="$home"
        [ -n "${2:-}" ] && export PREFECT_API_DATABASE_CONNECTION_URL="$2"
        exec $VENV/prefect server start --host 127.0.0.1 --port $PORT >"$home/server.log" 2>&1
    ) &
    server=$!
    until curl -sf "http://127.0.0.1:$PORT/api/health" >/dev/null; do
        kill -0 $server 2>/dev/null || { tail "$home/server.log"; exit 1; }
        sleep 1
    done
    echo "== $1"
    PREFECT_HOME=$home PREFECT_API_URL="http://127.0.0.1:$PORT/api" $VENV/python bench/prefect_tags.py
    kill $server
    wait $server 2>/dev/null || true
}

measure "prefect server on SQLite"
measure "prefect server on PostgreSQL" "postgresql+asyncpg://podflow:podflow@127.0.0.1:5432/podflow_bench"
