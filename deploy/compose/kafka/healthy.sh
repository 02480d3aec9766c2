#!/bin/sh
# Healthy: this broker answers an authenticated request on the clients' listener.
exec /opt/kafka/bin/kafka-broker-api-versions.sh --bootstrap-server localhost:9092 \
  --command-config /tmp/admin.properties >/dev/null
