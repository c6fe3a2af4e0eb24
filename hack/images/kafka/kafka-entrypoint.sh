#!/usr/bin/env bash
# Entrypoint of localhost/kafka:4.1.1 (KRaft). Modeled on the official apache/kafka image:
#
#   KAFKA_<NAME>   a server.properties key: KAFKA_ stripped, lowercased, `___` -> `-`, `__` -> `_`,
#                  `_` -> `.` (KAFKA_LOG_RETENTION_HOURS -> log.retention.hours,
#                  KAFKA_LISTENER_NAME_X_PLAIN_SASL___JAAS__CONFIG -> ...plain.sasl-jaas_config).
#                  They override the defaults below, which make one combined broker + controller
#                  node: PLAINTEXT on 9092, CONTROLLER on 9093, data in /var/lib/kafka/data.
#                  Not keys: the JVM variables (KAFKA_HEAP_OPTS, KAFKA_JVM_PERFORMANCE_OPTS,
#                  KAFKA_OPTS, KAFKA_LOG4J_OPTS, KAFKA_GC_LOG_OPTS, KAFKA_JMX_OPTS, ...) and the
#                  variables Kubernetes adds for a Service named kafka (KAFKA_PORT*, KAFKA_SERVICE_*).
#   CLUSTER_ID     formats every log dir that has no meta.properties yet (default: a fixed id).
#   KAFKA_HEAP_OPTS  default -Xmx512m -Xms128m.
#   JMX_EXPORTER_PORT  the Prometheus JMX exporter agent serves /metrics on this port (the image
#                  sets 9308); empty: no agent.
#
# The config is rendered to $TMPDIR/kafka/server.properties (TMPDIR defaults to /tmp, an emptyDir),
# so the root filesystem can be read-only. `kafka-entrypoint.sh --print-config` prints it and exits;
# arguments starting with `-` go to kafka.Kafka (e.g. --override k=v); any other command runs as is.
set -Eeuo pipefail

KAFKA_DIR=/opt/kafka
JMX_DIR=/opt/jmx-exporter
DEFAULT_CLUSTER_ID=ZXhjaGFuZ2Uta2Fma2EtMQ # base64url of the 16 bytes "exchange-kafka-1"
CONFIG_DIR="${TMPDIR:-/tmp}/kafka"
CONFIG="$CONFIG_DIR/server.properties"

die() { printf 'kafka-entrypoint.sh: error: %s\n' "$*" >&2; exit 1; }

# Variables that configure the JVM or come from Kubernetes' service links: never properties.
is_not_a_property() {
  case "$1" in
    KAFKA_HEAP_OPTS | KAFKA_JVM_PERFORMANCE_OPTS | KAFKA_OPTS | KAFKA_LOG4J_OPTS | KAFKA_GC_LOG_OPTS | \
      KAFKA_JMX_OPTS | KAFKA_JMX_PORT | KAFKA_DEBUG | KAFKA_DEBUG_SUSPEND_FLAG | DEBUG_SUSPEND_FLAG | \
      KAFKA_LOG4J_ROOT_LOGLEVEL | KAFKA_LOG4J_LOGGERS | KAFKA_TOOLS_LOG4J_LOGLEVEL | KAFKA_HOME | \
      KAFKA_VERSION | KAFKA_CLASSPATH | KAFKA_PORT | KAFKA_PORT_* | KAFKA_SERVICE_*)
      return 0 ;;
  esac
  return 1
}

# KAFKA_FOO__BAR___BAZ_QUX -> foo_bar-baz.qux
property_name() {
  local key="${1#KAFKA_}"
  key="${key,,}"
  key="${key//___/-}"
  key="${key//__/$'\x01'}"
  key="${key//_/.}"
  printf '%s' "${key//$'\x01'/_}"
}

declare -A props=()
order=()
set_prop() {
  [[ -v "props[$1]" ]] || order+=("$1")
  props[$1]="$2"
}
unset_prop() {
  local key="$1" kept=() k
  unset "props[$key]"
  for k in "${order[@]}"; do [ "$k" = "$key" ] || kept+=("$k"); done
  order=("${kept[@]}")
}

render() {
  set_prop process.roles broker,controller
  set_prop node.id 1
  set_prop controller.quorum.voters 1@localhost:9093
  set_prop listeners PLAINTEXT://:9092,CONTROLLER://:9093
  set_prop advertised.listeners PLAINTEXT://localhost:9092
  set_prop controller.listener.names CONTROLLER
  set_prop inter.broker.listener.name PLAINTEXT
  set_prop listener.security.protocol.map PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
  set_prop log.dirs /var/lib/kafka/data
  set_prop num.partitions 1
  set_prop auto.create.topics.enable true
  set_prop default.replication.factor 1
  set_prop min.insync.replicas 1
  set_prop offsets.topic.replication.factor 1
  set_prop offsets.topic.num.partitions 1
  set_prop transaction.state.log.replication.factor 1
  set_prop transaction.state.log.min.isr 1
  set_prop transaction.state.log.num.partitions 1
  set_prop share.coordinator.state.topic.replication.factor 1
  set_prop share.coordinator.state.topic.min.isr 1
  set_prop group.initial.rebalance.delay.ms 0
  # Small: one node of a small cluster.
  set_prop num.network.threads 2
  set_prop num.io.threads 2
  set_prop num.recovery.threads.per.data.dir 1
  set_prop background.threads 2
  set_prop log.cleaner.threads 1
  set_prop log.cleaner.dedupe.buffer.size 8388608

  local name user_bootstrap="" user_voters=""
  while IFS= read -r name; do
    [[ "$name" == KAFKA_* ]] || continue
    is_not_a_property "$name" && continue
    local key
    key="$(property_name "$name")"
    [ -n "$key" ] || continue
    set_prop "$key" "${!name}"
    [ "$key" = controller.quorum.bootstrap.servers ] && user_bootstrap=1
    [ "$key" = controller.quorum.voters ] && user_voters=1
  done < <(compgen -e | LC_ALL=C sort)
  # A dynamic quorum (bootstrap servers) replaces the static default voters.
  if [ -n "$user_bootstrap" ] && [ -z "$user_voters" ]; then
    unset_prop controller.quorum.voters
  fi

  mkdir -p "$CONFIG_DIR"
  local key
  {
    printf '# Rendered by kafka-entrypoint.sh from its defaults and the KAFKA_* environment.\n'
    for key in "${order[@]}"; do printf '%s=%s\n' "$key" "${props[$key]}"; done
  } >"$CONFIG"
}

java_opts() {
  # Word splitting on purpose: each variable holds JVM flags, as in Kafka's own scripts.
  # shellcheck disable=SC2206
  jvm=(
    java ${KAFKA_HEAP_OPTS:--Xmx512m -Xms128m}
    ${KAFKA_JVM_PERFORMANCE_OPTS:--XX:+UseSerialGC -XX:+ExitOnOutOfMemoryError -XX:-UsePerfData -Djava.awt.headless=true}
    ${KAFKA_GC_LOG_OPTS:-} ${KAFKA_JMX_OPTS:-}
    ${KAFKA_LOG4J_OPTS:--Dlog4j2.configurationFile=$KAFKA_DIR/config/log4j2.properties}
    "-Dkafka.logs.dir=$CONFIG_DIR/logs"
    ${KAFKA_OPTS:-}
    -cp "$KAFKA_DIR/libs/*"
  )
  # The broker only (not the storage tool): the agent serves /metrics while the JVM runs.
  agent=()
  if [ -n "${JMX_EXPORTER_PORT:-}" ]; then
    agent=("-javaagent:$JMX_DIR/jmx_prometheus_javaagent.jar=$JMX_EXPORTER_PORT:$JMX_DIR/jmx-exporter.yaml")
  fi
}

format_storage() {
  local dirs="${props[log.dirs]:-${props[log.dir]:-/tmp/kafka-logs}}" dir missing=""
  IFS=, read -r -a dir_list <<<"$dirs"
  for dir in "${dir_list[@]}"; do
    [ -f "$dir/meta.properties" ] || missing=1
  done
  [ -n "$missing" ] || return 0
  local args=(format --cluster-id "${CLUSTER_ID:-$DEFAULT_CLUSTER_ID}" --config "$CONFIG" --ignore-formatted)
  if [[ ",${props[process.roles]:-}," == *,controller,* ]] && [ -z "${props[controller.quorum.voters]:-}" ]; then
    args+=(--standalone)
  fi
  echo "kafka-entrypoint.sh: formatting $dirs (cluster id ${CLUSTER_ID:-$DEFAULT_CLUSTER_ID})"
  "${jvm[@]}" kafka.tools.StorageTool "${args[@]}" || die "kafka-storage format failed"
}

case "${1:-}" in
  --print-config)
    render
    cat "$CONFIG"
    exit 0
    ;;
  "" | -*) ;;
  *) exec "$@" ;;
esac

render
java_opts
format_storage
exec "${jvm[@]}" "${agent[@]}" kafka.Kafka "$CONFIG" "$@"
