#!/bin/sh
# Prints a .env with a fresh random value for every secret compose.yaml asks for:
#   ./secrets.sh > .env && chmod 600 .env
# Keep it (a password manager, a vault): the SCRAM credentials and the token secret must stay
# the same across restarts, GRIDGOV_TOKEN_SECRET also signs the archive's digests, and
# GRIDGOV_MASTER_KEY opens residents' personal data.
set -eu
random() { head -c 36 /dev/urandom | base64 | tr -d '/+=\n'; }
uuid_base64() { head -c 16 /dev/urandom | base64 | tr '/+' '_-' | tr -d '=\n'; }
echo "COMPOSE_PROJECT_NAME=gridgov"
echo "KAFKA_CLUSTER_ID=$(uuid_base64)"
for name in KAFKA_ADMIN KAFKA_CONTROLLER KAFKA_INGEST KAFKA_QUERY KAFKA_PROJECTOR_ARCHIVE \
            KAFKA_PROJECTOR_FIVE_HAVE KAFKA_PROJECTOR_POINTS_LEDGER KAFKA_DECIDER_INCIDENTS \
            KAFKA_DECIDER_POINTS KAFKA_AUDITOR KAFKA_ADMIN_CLI POSTGRES GRAFANA_DB GRAFANA_ADMIN; do
  echo "${name}_PASSWORD=$(random)"
done
echo "GRIDGOV_TOKEN_SECRET=$(random)$(random)"
# wraps every resident's data key: 32 random bytes, base64url; lost, every sealed name and
# phone in the log is as good as erased, so keep it with the backups' secrets
echo "GRIDGOV_MASTER_KEY=$(head -c 32 /dev/urandom | base64 | tr '/+' '_-' | tr -d '=\n')"
