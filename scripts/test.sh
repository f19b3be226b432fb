#!/usr/bin/env bash
# Runs every test of the project: restore, build (warnings are errors), the .NET test suites, and the
# kernel guest rig for each kernel of the matrix (KERNELS, default "6.1 6.12") when this machine can run
# it. Installs what it needs when run as root (downloaded kernels stay installed for the next run).
# The last line sums every suite: "total: N passed, M failed, K skipped".
set -uo pipefail
cd "$(dirname "$0")/.."
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# Debian packages the tests use (network namespaces; unzip: the tool packages). Only as root, only when missing.
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  need=()
  command -v ip >/dev/null 2>&1 || need+=(iproute2)
  command -v unzip >/dev/null 2>&1 || need+=(unzip)
  if [ ${#need[@]} -gt 0 ]; then
    echo "test.sh: installing ${need[*]}"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
fi

# The kernels first: the .NET suites check the uAPI layout against the 6.12 kernel headers too.
KERNELS=${KERNELS:-"6.1 6.12"}
status=0
if [ -f tests/kernel/run-guest-tests.sh ]; then
  for k in $KERNELS; do
    echo "== kernel $k: packages"
    KERNEL=$k bash tests/kernel/run-guest-tests.sh --prepare 2>&1 | tee -a "$log"
    rig=${PIPESTATUS[0]}
    [ "$rig" = 0 ] || { echo "test.sh: preparing kernel $k failed ($rig)"; status=$rig; }
  done
fi

echo "== restore and build"
dotnet restore Vfio.slnx || exit 1
dotnet build Vfio.slnx --no-restore -c Release || exit 1

echo "== the benches' raw-copy reference (C, when cc exists)"
bash scripts/build-rawcopy.sh || status=1

echo "== .NET tests"
dotnet test Vfio.slnx --no-build -c Release 2>&1 | tee -a "$log"
tests=${PIPESTATUS[0]}
[ "$tests" = 0 ] || status=$tests

echo "== the shipped NativeAOT binary"
bash scripts/aot-smoke.sh 2>&1 | tee -a "$log"
aot=${PIPESTATUS[0]}
[ "$aot" = 0 ] || status=$aot

rig_times=""
if [ -f tests/kernel/run-guest-tests.sh ]; then
  for k in $KERNELS; do
    t0=$(date +%s)
    echo "== kernel guest rig: Linux $k, C smoke test"
    KERNEL=$k bash tests/kernel/run-guest-tests.sh 2>&1 | tee -a "$log"
    rig=${PIPESTATUS[0]}
    [ "$rig" = 0 ] || status=$rig
    if [ -x tests/Vfio.KernelTests/run-in-guest.sh ]; then
      echo "== kernel backend tests in the guest: Linux $k"
      KERNEL=$k tests/Vfio.KernelTests/run-in-guest.sh 2>&1 | tee -a "$log"
      rig=${PIPESTATUS[0]}
      [ "$rig" = 0 ] || status=$rig
    fi
    rig_times+="${rig_times:+, }$k $(( $(date +%s) - t0 ))s"
  done
  echo "kernel rig time per kernel: $rig_times"
fi

# Sum the per-suite counts: VSTest's "Failed: a, Passed: b, Skipped: c" and plain "N passed, M failed" lines.
python3 - "$log" "$status" <<'PY' || awk 'BEGIN{print "total: summary unavailable"}'
import re, sys
text = open(sys.argv[1], errors="replace").read()
p = f = s = 0
for m in re.finditer(r"Failed:\s*(\d+),\s*Passed:\s*(\d+),\s*Skipped:\s*(\d+)", text):
    f += int(m.group(1)); p += int(m.group(2)); s += int(m.group(3))
# xunit v3 executables (the kernel backend tests in the guest): "Total: t, Errors: e, Failed: f, Skipped: s, Not Run: n"
for m in re.finditer(r"Total: (\d+), Errors: (\d+), Failed: (\d+), Skipped: (\d+), Not Run: (\d+)", text):
    t, e, fl, sk, nr = (int(g) for g in m.groups())
    p += t - fl - sk - nr; f += fl + e; s += sk + nr
# plain lines, and `vfio-mig check`'s "N passed, M failed, K skipped, B blocked" (blocked rules did not run)
for m in re.finditer(r"^(?:guest: )?(\d+) passed, (\d+) failed(?:, (\d+) skipped)?(?:, (\d+) blocked)?$", text, re.M):
    p += int(m.group(1)); f += int(m.group(2)); s += int(m.group(3) or 0) + int(m.group(4) or 0)
if f == 0 and sys.argv[2] != "0":
    f = 1  # a suite failed without reporting counts (build or crash): never report a clean run
print(f"total: {p} passed, {f} failed, {s} skipped")
PY
exit "$status"
