#!/usr/bin/env bash
# Runs test/bench/nic-plumb.bench.ts compiled, as root, in a private network + mount namespace (sysfs
# remounted so the DHCP service sees the namespace's links): nothing it creates is visible on the host.
# Usage: test/bench/nic-plumb.sh [NICS] [CONCURRENCY]
set -euo pipefail
cd "$(dirname "$0")/../.."
out=node_modules/.cache/bench-nic
npx tsc --outDir "$out" --rootDir . --module nodenext --moduleResolution nodenext --target es2022 --lib es2023 \
  --types node --strict --skipLibCheck test/bench/nic-plumb.bench.ts
# The compiled native.ts looks for the addon relative to itself.
mkdir -p "$out/native/build/Release" && cp native/build/Release/nodevirt_native.node "$out/native/build/Release/"
exec unshare --net --mount sh -c "mount -t sysfs sysfs /sys && ip link set lo up && \
  NICS=${1:-500} CONCURRENCY=${2:-8} NODEVIRT_BENCH_NETNS=unshare-net node $out/test/bench/nic-plumb.bench.js"
