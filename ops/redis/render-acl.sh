#!/bin/sh
# render-acl.sh TEMPLATE OUTPUT
# Fills the password placeholders of an ops/redis ACL file with the lowercase hex SHA-256 of each password (Redis's
# `#<hash>` form), taken from the environment, so no password is written to disk. A placeholder the template holds
# whose variable is unset or empty is an error (never the hash of an empty string). See ops/redis/README.md.
set -eu
template=$1
output=$2
umask 077
trap 'rm -f "$output.tmp"' EXIT
cp "$template" "$output.tmp"
fill() {
  placeholder=$1
  variable=$2
  grep -q "@$placeholder@" "$output.tmp" || return 0
  eval "value=\${$variable:-}"
  if [ -z "$value" ]; then
    echo "render-acl.sh: $template needs $variable (for @$placeholder@)" >&2
    exit 1
  fi
  hash=$(printf %s "$value" | sha256sum | cut -d ' ' -f 1)
  sed -i "s/@$placeholder@/$hash/g" "$output.tmp"
}
fill ADMIN_PASSWORD_SHA256 REDIS_ADMIN_PASSWORD
fill SSC_PASSWORD_SHA256 REDIS_PASSWORD
fill SSC_SENTINEL_PASSWORD_SHA256 REDIS_SENTINEL_PASSWORD
fill REPLICA_PASSWORD_SHA256 REDIS_REPLICATION_PASSWORD
fill SENTINEL_PASSWORD_SHA256 REDIS_SENTINEL_PEER_PASSWORD
mv "$output.tmp" "$output"
