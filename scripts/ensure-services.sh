#!/usr/bin/env bash
# Makes sure what the tests talk to is there: PostgreSQL answering on 127.0.0.1:5432 (trust auth,
# database `test`) and Debian's Chromium for the browser test. Starts what is installed and
# stopped; installs what is missing (as root, with apt-get). Prints one line per service.
set -euo pipefail

PGHOST_ADDR=127.0.0.1
PGPORT_NUM=5432
apt_updated=0
apt_install() {
  if [ "$(id -u)" != 0 ]; then
    echo "ensure-services: $* missing and not root; install it: apt-get install -y $*" >&2
    exit 1
  fi
  if [ "$apt_updated" = 0 ]; then apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

pg_answers() { pg_isready -q -h "$PGHOST_ADDR" -p "$PGPORT_NUM" 2>/dev/null; }

ensure_postgres() {
  if command -v pg_isready >/dev/null && pg_answers; then
    :
  else
    if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
      apt_install postgresql
    fi
    local version
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    local hba="/etc/postgresql/$version/main/pg_hba.conf"
    # The tests connect as postgres over TCP without a password, as on every machine of this project.
    if ! grep -qE '^host +all +all +127\.0\.0\.1/32 +trust' "$hba"; then
      sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\nlocal all all trust' "$hba"
    fi
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    for _ in $(seq 1 60); do pg_answers && break; sleep 0.5; done
    pg_answers || { echo "ensure-services: PostgreSQL does not answer on $PGHOST_ADDR:$PGPORT_NUM" >&2; exit 1; }
  fi
  if ! psql -h "$PGHOST_ADDR" -p "$PGPORT_NUM" -U postgres -d postgres -tAc "select 1 from pg_database where datname = 'test'" | grep -q 1; then
    psql -h "$PGHOST_ADDR" -p "$PGPORT_NUM" -U postgres -d postgres -qc "create database test" >/dev/null
  fi
  echo "ensure-services: PostgreSQL answers on $PGHOST_ADDR:$PGPORT_NUM ($(psql -h "$PGHOST_ADDR" -U postgres -d test -tAc 'show server_version'))"
}

ensure_chromium() {
  if [ ! -x /usr/bin/chromium ]; then apt_install chromium; fi
  echo "ensure-services: $(/usr/bin/chromium --version 2>/dev/null | head -n 1)"
}

ensure_postgres
ensure_chromium
