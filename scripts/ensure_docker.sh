#!/usr/bin/env bash
# Make sure a Docker engine runs on this machine (idempotent; run as root on Debian 12).
#
# 1. apt-installs docker.io and debootstrap when missing (debootstrap builds the sandbox base
#    image without a registry: `python -m sandboxes build-image`).
# 2. If no engine answers `docker info`, starts `dockerd --bridge=none --iptables=false` in the
#    background (log: /var/log/dockerd-sandbox.log) and waits until `docker info` works.
#
# Sandboxed containers always run with `--network none`, so the daemon needs no bridge/NAT.
set -euo pipefail

LOG=${DOCKERD_LOG:-/var/log/dockerd-sandbox.log}
WAIT_S=${DOCKERD_WAIT_S:-60}

if [ "$(id -u)" != 0 ]; then
  echo "ensure_docker.sh: must run as root" >&2
  exit 1
fi

if docker info >/dev/null 2>&1; then
  # An engine already answers: nothing to do beyond the build tools.
  command -v debootstrap >/dev/null 2>&1 || {
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
  }
  exit 0
fi

need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
if [ "${#need[@]}" -gt 0 ]; then
  echo "ensure_docker.sh: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # policy-rc.d: do not let the package try to start services through init scripts.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi

# Another invocation may be starting the daemon right now: serialise on a lock.
exec 9>/var/lock/ensure_docker.lock
flock 9
if ! docker info >/dev/null 2>&1; then
  # a dockerd that is still starting owns /var/run/docker.pid; otherwise start one
  if ! { [ -f /var/run/docker.pid ] && kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; }; then
    rm -f /var/run/docker.pid
    echo "ensure_docker.sh: starting dockerd (log: $LOG)" >&2
    nohup setsid dockerd --bridge=none --iptables=false --ip6tables=false >>"$LOG" 2>&1 </dev/null &
  fi
  for _ in $(seq 1 "$WAIT_S"); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
fi
if ! docker info >/dev/null 2>&1; then
  echo "ensure_docker.sh: dockerd did not come up within ${WAIT_S}s; last log lines:" >&2
  tail -n 30 "$LOG" >&2 || true
  exit 1
fi
echo "ensure_docker.sh: docker engine ready" >&2
