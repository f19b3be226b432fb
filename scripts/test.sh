#!/usr/bin/env bash
# Runs every test of the project: restore, build (warnings are errors), the .NET test suites, and the
# kernel guest rig when this machine can run it. Installs what it needs when run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

# Debian packages the integration tests use (network namespaces). Only as root, only when missing.
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  need=()
  command -v ip >/dev/null 2>&1 || need+=(iproute2)
  if [ ${#need[@]} -gt 0 ]; then
    echo "test.sh: installing ${need[*]}"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
fi

echo "== restore and build"
dotnet restore Vfio.slnx
dotnet build Vfio.slnx --no-restore -c Release

echo "== .NET tests"
dotnet test Vfio.slnx --no-build -c Release

if [ -x tests/kernel/run-guest-tests.sh ]; then
  echo "== kernel guest rig"
  bash tests/kernel/run-guest-tests.sh
fi
