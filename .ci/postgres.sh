#!/usr/bin/env bash
# A PostgreSQL server for the storage tests (issue 7): installs Debian's `postgresql` if it is
# missing, starts its cluster, creates the role and database livecam/livecam (idempotent: a
# second run finds everything in place and changes nothing), checks a login over TCP, and
# prints one line on stdout:
#
#   export LIVECAM_TEST_POSTGRES=postgres://livecam:livecam@127.0.0.1:5432/livecam
#
# Use it as `eval "$(.ci/postgres.sh)"`. Everything else (apt, the trace of set -x) goes to
# stderr. With an argument, the export line is also written to that file, for `source FILE`.
# Needs root, or sudo. Role, password and database can be changed through LIVECAM_PG_USER,
# LIVECAM_PG_PASSWORD and LIVECAM_PG_DB (letters, digits and underscores only).
set -euxo pipefail

user="${LIVECAM_PG_USER:-livecam}"
password="${LIVECAM_PG_PASSWORD:-livecam}"
db="${LIVECAM_PG_DB:-livecam}"
for v in "$user" "$password" "$db"; do
  [[ "$v" =~ ^[A-Za-z0-9_]+$ ]] || { echo "postgres.sh: bad name or password: $v" >&2; exit 2; }
done

sudo=()
if [ "$(id -u)" != 0 ]; then sudo=(sudo); fi

{
  if ! dpkg-query -W -f='${Status}' postgresql 2>/dev/null | grep -q 'install ok installed'; then
    "${sudo[@]}" apt-get update
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql
  fi

  # The first cluster Debian knows, or a new one for the newest installed server.
  cluster="$(pg_lsclusters -h | head -n 1)"
  if [ -z "$cluster" ]; then
    version="$(ls /usr/lib/postgresql | sort -V | tail -n 1)"
    "${sudo[@]}" pg_createcluster "$version" main
    cluster="$(pg_lsclusters -h | head -n 1)"
  fi
  read -r version name port status _ <<<"$cluster"
  if [ "$status" != online ]; then
    "${sudo[@]}" pg_ctlcluster "$version" "$name" start
  fi
  for _ in $(seq 1 60); do
    if pg_isready -q -h 127.0.0.1 -p "$port"; then break; fi
    sleep 0.5
  done
  pg_isready -h 127.0.0.1 -p "$port"

  as_postgres=("${sudo[@]}" runuser -u postgres --)
  if [ "$(id -u)" != 0 ]; then as_postgres=(sudo -u postgres); fi
  psql_admin=("${as_postgres[@]}" psql -p "$port" -v ON_ERROR_STOP=1 -tAq)

  if [ -z "$("${psql_admin[@]}" -c "SELECT 1 FROM pg_roles WHERE rolname = '$user'")" ]; then
    "${psql_admin[@]}" -c "CREATE ROLE $user LOGIN PASSWORD '$password'"
  else
    "${psql_admin[@]}" -c "ALTER ROLE $user LOGIN PASSWORD '$password'"
  fi
  if [ -z "$("${psql_admin[@]}" -c "SELECT 1 FROM pg_database WHERE datname = '$db'")" ]; then
    "${psql_admin[@]}" -c "CREATE DATABASE $db OWNER $user"
  fi

  # The multi-host test's roles run in network namespaces behind a bridge (10.200.0.0/16) and
  # reach the server on the bridge's address: listen on every address, and let that network
  # in with a password. Both are idempotent; a change restarts the server once.
  changed=0
  if [ "$("${psql_admin[@]}" -c 'SHOW listen_addresses')" != '*' ]; then
    "${psql_admin[@]}" -c "ALTER SYSTEM SET listen_addresses = '*'"
    changed=1
  fi
  hba="$("${psql_admin[@]}" -c 'SHOW hba_file')"
  if ! grep -q 'livecam namespaces' "$hba"; then
    echo 'host all all 10.200.0.0/16 scram-sha-256 # livecam namespaces' | "${sudo[@]}" tee -a "$hba" >/dev/null
    changed=1
  fi
  if [ "$changed" = 1 ]; then
    "${sudo[@]}" pg_ctlcluster "$version" "$name" restart
    for _ in $(seq 1 60); do
      if pg_isready -q -h 127.0.0.1 -p "$port"; then break; fi
      sleep 0.5
    done
  fi

  url="postgres://$user:$password@127.0.0.1:$port/$db"
  psql "$url" -v ON_ERROR_STOP=1 -tAq -c 'SELECT 1' | grep -qx 1
} >&2

line="export LIVECAM_TEST_POSTGRES=$url"
if [ $# -ge 1 ]; then printf '%s\n' "$line" >"$1"; fi
printf '%s\n' "$line"
