#!/usr/bin/env bash
# Prints the name of a Node 24 base image for the Dockerfile's NODE_IMAGE build argument.
#
# The registry's node:24-bookworm-slim when it can be pulled. Where no Docker registry is reachable (this project's
# build machine), an equivalent is assembled from what is: Debian bookworm (debootstrap, minbase), the Node binary the
# `node` npm dev dependency installed, npm itself from the npm registry, and the `node` user (uid 1000) the official
# image has. It is tagged under its own name, never node:*, so nobody mistakes it for the official image, and keyed by
# the Node version so a rerun reuses it and a Node bump rebuilds it. Progress goes to stderr; stdout is the name only.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
say() { echo "node-base-image: $*" >&2; }

official=${SSC_OFFICIAL_NODE_IMAGE:-node:24-bookworm-slim}
if docker image inspect "$official" >/dev/null 2>&1 || timeout 60 docker pull -q "$official" >/dev/null 2>&1; then
  echo "$official"
  exit 0
fi

node_bin=$(readlink -f "$root/node_modules/.bin/node")
version=$("$node_bin" --version)
case "$version" in v24.*) ;; *) say "node_modules/.bin/node is $version, not Node 24: run npm ci first"; exit 1 ;; esac
# npm as node:24 images ship it: the major that Node 24 bundles.
npm_version=${SSC_BASE_NPM_VERSION:-11}
tag="ssc-node24-base:${version#v}-bookworm"
if docker image inspect "$tag" >/dev/null 2>&1; then
  say "reusing $tag"
  echo "$tag"
  exit 0
fi

[ "$(id -u)" = 0 ] || { say "$official cannot be pulled and building $tag needs root (debootstrap)"; exit 1; }
command -v debootstrap >/dev/null || { say "installing debootstrap"; apt-get update -qq >&2; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >&2; }
mirror=${SSC_DEBIAN_MIRROR:-http://deb.debian.org/debian}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"

say "$official cannot be pulled; building $tag (debootstrap bookworm from $mirror, Node $version)"
# libstdc++6: the official Node binary links it dynamically; ca-certificates: TLS to Postgres/Redis with public CAs.
debootstrap --variant=minbase --include=ca-certificates,libstdc++6 bookworm "$rootfs" "$mirror" >&2

# The binary as the npm package ships it carries debug info (~190 MB); the official image's is stripped.
install -m 0755 "$node_bin" "$rootfs/usr/local/bin/node"
strip --strip-debug "$rootfs/usr/local/bin/node"
(cd "$work" && npm pack --silent "npm@$npm_version" >/dev/null)
mkdir -p "$rootfs/usr/local/lib/node_modules/npm"
tar -xzf "$work"/npm-*.tgz -C "$rootfs/usr/local/lib/node_modules/npm" --strip-components=1 --no-same-owner
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$rootfs/usr/local/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$rootfs/usr/local/bin/npx"

# This machine reaches the npm registry through a TLS-intercepting proxy whose CA only its own trust store holds (npm's
# `cafile`). The stand-in base gets that file for npm alone (npm's global npmrc), so `npm ci` in the Dockerfile works
# here; the service never reads it. The official image needs no such thing where the registry is reached directly.
host_cafile=$(npm config get cafile 2>/dev/null || true)
if [ -n "$host_cafile" ] && [ "$host_cafile" != null ] && [ -f "$host_cafile" ]; then
  install -m 0644 "$host_cafile" "$rootfs/usr/local/share/npm-build-ca.pem"
  mkdir -p "$rootfs/usr/local/etc"
  echo 'cafile=/usr/local/share/npm-build-ca.pem' > "$rootfs/usr/local/etc/npmrc"
fi

chroot "$rootfs" groupadd --gid 1000 node
chroot "$rootfs" useradd --uid 1000 --gid node --shell /bin/bash --create-home node
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/* "$rootfs"/tmp/*

tar -C "$rootfs" --numeric-owner -c . | docker import \
  -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  -c "ENV NODE_VERSION=${version#v}" \
  -c 'CMD ["node"]' \
  -m "bookworm minbase + Node $version (stand-in for $official)" - "$tag" >/dev/null
docker run --rm "$tag" node -e 'process.exit(process.versions.node.startsWith("24.") ? 0 : 1)' >&2
say "built $tag"
echo "$tag"
