#!/usr/bin/env bash
# The shipped build under test: publishes the NativeAOT vfio-mig (scripts/vfio-mig) and runs the process
# tests against it — served vfio-user processes and migrate (SCM_RIGHTS DMA fds with libvfio-user's
# samples), send/receive over TCP and TLS between network namespaces, the memory bound of a 1 GiB demo —
# plus a demo, and the dotnet tool as it installs (scripts/tool-smoke.sh: packed, installed into a temporary
# directory, the installed command the NativeAOT binary; about 30-60 s, the publish is reused). About 3-5 minutes
# on top of the JIT runs of the same tests. Expects the solution built in Release (scripts/test.sh does it).
set -uo pipefail
cd "$(dirname "$0")/.."
bin_dir=artifacts/aot
scripts/vfio-mig --version >/dev/null || { echo "aot-smoke: the NativeAOT publish failed"; echo "0 passed, 1 failed"; exit 1; }
bin="$(pwd)/$(ls -d "$bin_dir"/*/vfio-mig | head -1)" # absolute: the tests run from their own directory
echo "aot-smoke: $bin"
status=0
if "$bin" demo --size 16MiB --dirty-rate 4MiB/s --json >/dev/null; then
  echo "aot-smoke: demo ok"; echo "1 passed, 0 failed"
else
  echo "aot-smoke: demo FAILED"; echo "0 passed, 1 failed"; status=1
fi
bash scripts/tool-smoke.sh || status=1
VFIO_MIG_BINARY="$bin" dotnet test tests/Vfio.IntegrationTests --no-build -c Release \
  --filter "FullyQualifiedName~ProcessTests|FullyQualifiedName~TwoHostMigrationTests|FullyQualifiedName~LibVfioUserSample|FullyQualifiedName~MemoryBoundTests" || status=1
exit "$status"
