#!/bin/sh
# Runs podman with every argument passed through and the settings these test
# machines need. The machines forbid raising RLIMIT_NOFILE and use hybrid
# cgroups, so podman gets a containers.conf without default ulimits and with
# the cgroupfs manager, and runc instead of crun, which rejects hybrid
# cgroups. The containers.conf lives in a temporary directory that
# CONTAINERS_CONF points at and that is removed afterwards.
#
# Usage: tests/containers/podman.sh build --network=host -t IMAGE DIR
set -eu

config_directory=$(mktemp -d "${TMPDIR:-/tmp}/infisical-init-podman.XXXXXX")
trap 'rm -rf "$config_directory"' EXIT

cat >"$config_directory/containers.conf" <<'CONF'
[containers]
default_ulimits = []

[engine]
cgroup_manager = "cgroupfs"
CONF

CONTAINERS_CONF="$config_directory/containers.conf"
export CONTAINERS_CONF

podman --runtime runc --cgroup-manager cgroupfs "$@"
