#!/usr/bin/env bash
# Installs (from Debian's packages, where missing) and starts PostgreSQL for the test suite,
# and creates the hub_test role and database. Idempotent. Sourced by test.sh.
set -euo pipefail

as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }
APT_UPDATED=""
apt_install() {
  if [[ -z "$APT_UPDATED" ]]; then as_root apt-get update -qq; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

PG_USER=hub_test
PG_PASSWORD=hub_test
PG_DB=hub_test
PG_PORT="${HUB_TEST_PG_PORT:-5432}"

ensure_postgres() {
  if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    echo "==> installing PostgreSQL (Debian package)"
    apt_install postgresql
  fi
  local version
  version=$(ls /usr/lib/postgresql | sort -V | tail -1)
  if ! pg_lsclusters -h 2>/dev/null | grep -q "^$version main"; then
    as_root pg_createcluster "$version" main >/dev/null
  fi
  if ! pg_lsclusters -h | grep -q "^$version main .* online"; then
    echo "==> starting PostgreSQL $version"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start
  fi
  for _ in $(seq 1 30); do
    as_root runuser -u postgres -- psql -qAtc "select 1" >/dev/null 2>&1 && break
    sleep 1
  done
  as_root runuser -u postgres -- psql -qAt -v ON_ERROR_STOP=1 <<SQL >/dev/null
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_USER') THEN
    CREATE ROLE $PG_USER LOGIN PASSWORD '$PG_PASSWORD' CREATEDB;
  END IF;
END \$\$;
SQL
  if ! as_root runuser -u postgres -- psql -qAtc "select 1 from pg_database where datname='$PG_DB'" | grep -q 1; then
    as_root runuser -u postgres -- createdb -O "$PG_USER" "$PG_DB"
  fi
  export HUB_TEST_POSTGRES_URL="postgresql+psycopg://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB"
}

# RabbitMQ for the AMQP tests (docs/amqp.md). The broker runs as the rabbitmq user: the Debian
# wrappers in /usr/sbin switch to it with su when called as root, so every command below runs as root.
RMQ_USER=hub_test
RMQ_PASSWORD=hub_test
RMQ_VHOST=hub_test
RMQ_STARTUP_TIMEOUT_S="${HUB_TEST_RABBITMQ_STARTUP_TIMEOUT_S:-90}"

rmq_ctl() { as_root rabbitmqctl -q "$@"; }

# A fresh install gets a config that binds AMQP and the management API to loopback only: the test
# user is an administrator with a published password. An existing rabbitmq.conf is never touched.
rmq_write_loopback_config() {
  [[ -e /etc/rabbitmq/rabbitmq.conf ]] && return 0
  as_root mkdir -p /etc/rabbitmq
  as_root tee /etc/rabbitmq/rabbitmq.conf >/dev/null <<CONF
# Written by approval-hub scripts/services.sh (ensure_rabbitmq): a test broker for this machine only.
listeners.tcp.1 = 127.0.0.1:5672
management.tcp.ip = 127.0.0.1
management.tcp.port = 15672
CONF
}

# The node is called rabbit@<short hostname>; Erlang distribution (and so rabbitmqctl) needs that
# name to resolve. Minimal images sometimes lack the /etc/hosts entry: fall back to localhost.
rmq_ensure_resolvable_nodename() {
  getent hosts "$(hostname -s)" >/dev/null 2>&1 && return 0
  grep -q '^NODENAME=' /etc/rabbitmq/rabbitmq-env.conf 2>/dev/null && return 0
  echo "NODENAME=rabbit@localhost" | as_root tee -a /etc/rabbitmq/rabbitmq-env.conf >/dev/null
}

# `await_startup` fails at once while the node is not yet registered with epmd, so poll it (bounded).
rmq_wait_until_started() {
  local deadline=$((SECONDS + RMQ_STARTUP_TIMEOUT_S))
  until as_root rabbitmqctl -q await_startup --timeout 30 >/dev/null 2>&1; do
    if (( SECONDS >= deadline )); then
      echo "RabbitMQ did not start within ${RMQ_STARTUP_TIMEOUT_S}s; see /var/log/rabbitmq/" >&2
      return 1
    fi
    sleep 1
  done
}

rmq_wait_for_port() {
  local port=$1 deadline=$((SECONDS + 30))
  until as_root rabbitmq-diagnostics -q check_port_listener "$port" >/dev/null 2>&1; do
    if (( SECONDS >= deadline )); then echo "RabbitMQ is not listening on port $port" >&2; return 1; fi
    sleep 1
  done
}

rmq_ensure_test_account() {
  rmq_ctl add_vhost "$RMQ_VHOST" >/dev/null  # a no-op when it exists
  # awk reads all of its input (grep -q would not; with pipefail that can fail the pipeline).
  if ! rmq_ctl list_users | awk -v user="$RMQ_USER" '$1 == user { found = 1 } END { exit !found }'; then
    rmq_ctl add_user "$RMQ_USER" "$RMQ_PASSWORD" >/dev/null
  else
    rmq_ctl change_password "$RMQ_USER" "$RMQ_PASSWORD" >/dev/null  # keep the documented password
  fi
  rmq_ctl set_user_tags "$RMQ_USER" administrator >/dev/null
  rmq_ctl set_permissions -p "$RMQ_VHOST" "$RMQ_USER" ".*" ".*" ".*" >/dev/null
}

# Every rabbitmqctl call boots an Erlang VM (~0.7 s), so when the management API already lets the test
# administrator read its own permissions (node and app running, plugin enabled, user, password, tag and
# vhost permissions all in place) and lists the consistent-hash exchange type (its plugin enabled) the rest is
# skipped. Plain bash: curl is not on every fresh machine.
rmq_already_set_up() {
  local auth status
  auth=$(printf '%s:%s' "$RMQ_USER" "$RMQ_PASSWORD" | base64)
  { exec 3<>/dev/tcp/127.0.0.1/15672; } 2>/dev/null || return 1
  printf 'GET /api/permissions/%s/%s HTTP/1.0\r\nHost: 127.0.0.1\r\nAuthorization: Basic %s\r\n\r\n' \
    "$RMQ_VHOST" "$RMQ_USER" "$auth" >&3
  read -r -t 5 _ status _ <&3 || status=""
  exec 3<&- 3>&-
  [[ "$status" == 200 ]] || return 1
  { exec 3<>/dev/tcp/127.0.0.1/15672; } 2>/dev/null || return 1
  printf 'GET /api/overview HTTP/1.0\r\nHost: 127.0.0.1\r\nAuthorization: Basic %s\r\n\r\n' "$auth" >&3
  timeout 5 grep -q 'x-consistent-hash' <&3
  status=$?
  exec 3<&- 3>&-
  return "$status"
}

rmq_export_urls() {
  export HUB_TEST_AMQP_URL="amqp://$RMQ_USER:$RMQ_PASSWORD@127.0.0.1:5672/$RMQ_VHOST"
  export HUB_TEST_RABBITMQ_MANAGEMENT_URL="http://127.0.0.1:15672"
}

ensure_rabbitmq() {
  if [[ -x /usr/sbin/rabbitmq-server ]] && rmq_already_set_up; then
    rmq_export_urls
    return 0
  fi
  if [[ ! -x /usr/sbin/rabbitmq-server ]]; then
    rmq_write_loopback_config
    echo "==> installing RabbitMQ (Debian package rabbitmq-server)"
    apt_install rabbitmq-server
  fi
  rmq_write_loopback_config
  rmq_ensure_resolvable_nodename
  if ! as_root rabbitmq-diagnostics -q ping >/dev/null 2>&1; then
    echo "==> starting RabbitMQ (the node is usually ready 10-20 s later)"
    # -detached: no systemd in containers/CI; the wrapper runs the node as the rabbitmq user.
    as_root rabbitmq-server -detached
  elif ! as_root rabbitmq-diagnostics -q check_running >/dev/null 2>&1; then
    echo "==> starting the RabbitMQ application (the node runs, the app was stopped)"
    rmq_ctl start_app >/dev/null
  fi
  rmq_wait_until_started
  # At-least-once dead-lettering needs the stream_queue flag; a node upgraded from < 3.9 may lack it.
  rmq_ctl enable_feature_flag all >/dev/null
  # The management API provisions one RabbitMQ user per partner (hub partners sync). Enabling takes
  # ~5 s even when already enabled, so only when its port is not open.
  if ! as_root rabbitmq-diagnostics -q check_port_listener 15672 >/dev/null 2>&1; then
    as_root rabbitmq-plugins -q enable rabbitmq_management >/dev/null
    rmq_wait_for_port 15672
  fi
  # Routing records by case (HUB_INGEST_SHARDS, docs/amqp.md "Case shards") needs the consistent-hash exchange
  # type: a plugin shipped with RabbitMQ, off by default. Enabling it needs no restart.
  as_root rabbitmq-plugins -q enable rabbitmq_consistent_hash_exchange >/dev/null
  rmq_ensure_test_account
  rmq_export_urls
}
