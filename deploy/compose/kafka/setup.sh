#!/bin/sh
# The cluster's contents, as the super user: topics, then a SCRAM credential and the ACLs of
# every principal in acls.txt. Idempotent: compose runs it at every `up`.
#
# Topics mirror events/topics.py. The event topics and the dead letters are the log of record:
# kept forever (retention.ms=-1). Commands are requests whose outcomes live in PostgreSQL:
# kept COMMAND_RETENTION_MS. An existing topic's partition count is never changed here: more
# partitions move keys to other partitions (docs/OPERATIONS.md, "Adding partitions").
set -eu
: "${KAFKA_ADMIN_PASSWORD:?}" "${PARTITIONS:?}" "${COMMAND_RETENTION_MS:?}"

bootstrap=kafka-1:9092,kafka-2:9092,kafka-3:9092
admin=/tmp/admin.properties
cat > "$admin" <<EOF
security.protocol=SASL_PLAINTEXT
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="${KAFKA_ADMIN_PASSWORD}";
EOF
bin=/opt/kafka/bin

topic() {  # name retention.ms
  existing=$("$bin/kafka-topics.sh" --bootstrap-server "$bootstrap" --command-config "$admin" \
    --describe --topic "$1" 2>/dev/null | sed -n 's/.*PartitionCount: *\([0-9]*\).*/\1/p')
  if [ -n "$existing" ]; then
    [ "$existing" = "$PARTITIONS" ] || echo "warning: $1 has $existing partitions, not $PARTITIONS"
    "$bin/kafka-configs.sh" --bootstrap-server "$bootstrap" --command-config "$admin" --alter \
      --entity-type topics --entity-name "$1" --add-config "retention.ms=$2"
    return
  fi
  "$bin/kafka-topics.sh" --bootstrap-server "$bootstrap" --command-config "$admin" \
    --create --if-not-exists --topic "$1" --partitions "$PARTITIONS" --replication-factor 3 \
    --config "retention.ms=$2" --config retention.bytes=-1 --config cleanup.policy=delete \
    --config min.insync.replicas=2 --config unclean.leader.election.enable=false
}

for name in gridgov.incidents gridgov.patrols gridgov.points gridgov.audit gridgov.deadletter; do
  topic "$name" -1
done
for name in gridgov.commands.incidents gridgov.commands.points; do
  topic "$name" "$COMMAND_RETENTION_MS"
done

grep -v '^#' /opt/gridgov/acls.txt | awk 'NF == 4 {print $1}' | sort -u | while read -r who; do
  variable="PASSWORD_$(echo "$who" | tr 'a-z-' 'A-Z_')"
  eval "password=\${$variable:?$variable is not set}"
  "$bin/kafka-configs.sh" --bootstrap-server "$bootstrap" --command-config "$admin" --alter \
    --entity-type users --entity-name "$who" \
    --add-config "SCRAM-SHA-512=[iterations=8192,password=${password}]"
done

grep -v '^#' /opt/gridgov/acls.txt | awk 'NF == 4' | while read -r who operations kind name; do
  set --
  for operation in $(echo "$operations" | tr ',' ' '); do
    set -- "$@" --operation "$operation"
  done
  "$bin/kafka-acls.sh" --bootstrap-server "$bootstrap" --command-config "$admin" --add \
    --allow-principal "User:$who" "$@" "--$kind" "$name" >/dev/null
done
echo "topics, principals and ACLs are in place"
