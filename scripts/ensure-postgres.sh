#!/usr/bin/env bash
# Makes sure the tests have a PostgreSQL: a server answering on 127.0.0.1:5432, or the
# PostgreSQL binaries (initdb, pg_ctl) from which the tests start a private cluster.
# Installs Debian's postgresql package when neither is there and we may.
set -euo pipefail

answers() { (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }
have_binaries() { ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1; }

if answers; then
  echo "postgres: a server answers on 127.0.0.1:5432"
  exit 0
fi
if have_binaries; then
  echo "postgres: nothing on 127.0.0.1:5432; tests will start a private cluster from the local binaries"
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "postgres: no server and no binaries; installing Debian's postgresql package"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq postgresql >/dev/null
  have_binaries && exit 0
fi
echo "postgres: no server on 127.0.0.1:5432 and no initdb found; install PostgreSQL or set DATABASE_URL" >&2
exit 1
