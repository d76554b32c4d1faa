# Starts the services the tests need, private to this shell, and stops them when it
# exits. Sourced by scripts/test; for a shell of your own: `source scripts/services.sh`.
#
# PostgreSQL (the Debian `postgresql` package): a fresh cluster in a temporary
# directory, on a free port of 127.0.0.1, its socket inside that directory, no
# durability (the data is thrown away). Exports:
#   SWITCHYARD_TEST_PG_URL  a superuser's URL; tests create a database each
#   SWITCHYARD_PG_BIN       the PostgreSQL binaries, for tests that start their own
#   SWITCHYARD_PG_AS        the user to run them as ("postgres" when we are root)
#
# Redis (the Debian `redis-server` package): loopback only, no persistence, its
# files in the same temporary directory. Exports:
#   SWITCHYARD_TEST_REDIS_URL  tests use a key prefix each
#   SWITCHYARD_REDIS_BIN       redis-server, for tests that start their own
# Each service is stopped by its own PID, never by name.

switchyard_free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# The newest installed PostgreSQL's binaries, or nothing (and success: callers may
# run under `set -e -o pipefail`).
switchyard_pg_bin() {
  local dirs=(/usr/lib/postgresql/*/bin)
  [ -d "${dirs[0]}" ] || return 0
  printf '%s\n' "${dirs[@]}" | sort -V | tail -1
}

switchyard_services_stop() {
  if [ -n "${switchyard_redis_pid:-}" ]; then
    kill "$switchyard_redis_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$switchyard_redis_pid" 2>/dev/null || break; sleep 0.1; done
    switchyard_redis_pid=""
  fi
  if [ -n "${switchyard_pg_pid:-}" ]; then
    # SIGINT is PostgreSQL's fast shutdown; wait for the postmaster to be gone.
    kill -INT "$switchyard_pg_pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$switchyard_pg_pid" 2>/dev/null || break; sleep 0.1; done
    switchyard_pg_pid=""
  fi
  if [ -n "${switchyard_svc_dir:-}" ]; then
    rm -rf "$switchyard_svc_dir"
    switchyard_svc_dir=""
  fi
}

# Installs the Debian packages named when their command is missing: as root with
# apt-get, else stops naming the command to run.
switchyard_need() {
  local command=$1 package=$2
  command -v "$command" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "services: installing $package (Debian package)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$package" >/dev/null
  fi
  command -v "$command" >/dev/null 2>&1 && return 0
  echo "services: $command is not installed; the tests need it. Install it with:" >&2
  echo "  sudo apt-get install -y $package" >&2
  return 1
}

switchyard_redis_start() {
  local port
  switchyard_need redis-server redis-server || return 1
  port=$(switchyard_free_port)
  redis-server --bind 127.0.0.1 --port "$port" --dir "$switchyard_svc_dir" --save '' \
    --appendonly no --daemonize no --logfile "$switchyard_svc_dir/redis.log" &
  switchyard_redis_pid=$!
  for _ in $(seq 100); do
    redis-cli -p "$port" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  redis-cli -p "$port" ping >/dev/null 2>&1 || {
    echo "services: Redis did not start:" >&2; cat "$switchyard_svc_dir/redis.log" >&2; return 1; }
  export SWITCHYARD_TEST_REDIS_URL="redis://127.0.0.1:$port"
  SWITCHYARD_REDIS_BIN=$(command -v redis-server)
  export SWITCHYARD_REDIS_BIN
  echo "services: Redis on 127.0.0.1:$port (pid $switchyard_redis_pid)" >&2
}

switchyard_services_start() {
  local pg_bin as_pg=() port
  pg_bin=$(switchyard_pg_bin)
  if [ -z "$pg_bin" ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "services: installing PostgreSQL (Debian package postgresql)" >&2
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
      pg_bin=$(switchyard_pg_bin)
    fi
    if [ -z "$pg_bin" ]; then
      echo "services: PostgreSQL is not installed; the tests need it. Install it with:" >&2
      echo "  sudo apt-get install -y postgresql" >&2
      return 1
    fi
  fi
  # initdb refuses to run as root: run PostgreSQL as the user the package creates.
  [ "$(id -u)" -eq 0 ] && as_pg=(runuser -u postgres --)

  # mktemp makes the directory 0700: the postgres user must be able to enter it.
  switchyard_svc_dir=$(mktemp -d "${TMPDIR:-/tmp}/switchyard-svc.XXXXXX")
  chmod 755 "$switchyard_svc_dir"
  trap switchyard_services_stop EXIT

  if [ ${#as_pg[@]} -gt 0 ]; then
    install -d -m 700 -o postgres "$switchyard_svc_dir/pg"
  else
    install -d -m 700 "$switchyard_svc_dir/pg"
  fi
  "${as_pg[@]}" "$pg_bin/initdb" -D "$switchyard_svc_dir/pg" -A trust -U switchyard -E UTF8 \
    --no-sync >"$switchyard_svc_dir/initdb.log" 2>&1 || {
    echo "services: initdb failed:" >&2; cat "$switchyard_svc_dir/initdb.log" >&2; return 1; }
  port=$(switchyard_free_port)
  "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$switchyard_svc_dir/pg" -l "$switchyard_svc_dir/pg/server.log" \
    -w -t 30 -o "-h 127.0.0.1 -p $port -k $switchyard_svc_dir/pg -c fsync=off \
    -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" start >/dev/null || {
    echo "services: PostgreSQL did not start:" >&2; cat "$switchyard_svc_dir/pg/server.log" >&2; return 1; }
  switchyard_pg_pid=$(head -1 "$switchyard_svc_dir/pg/postmaster.pid")

  export SWITCHYARD_TEST_PG_URL="postgres://switchyard@127.0.0.1:$port/postgres"
  export SWITCHYARD_PG_BIN="$pg_bin"
  export SWITCHYARD_PG_AS="${as_pg:+postgres}"
  echo "services: PostgreSQL on 127.0.0.1:$port (pid $switchyard_pg_pid)" >&2
  switchyard_redis_start
}

switchyard_services_start
