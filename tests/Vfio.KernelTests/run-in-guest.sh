#!/bin/bash
# Builds the kernel-backend guest tests and the CLI on the host, then runs them inside the kernel guest
# rig (tests/kernel/run-guest-tests.sh: Linux 6.1 under QEMU with vfio_mig_test and two mdevs).
#   tests/Vfio.KernelTests/run-in-guest.sh [extra xunit arguments, e.g. -class Vfio.KernelTests.DataFdTests]
# RIG=path overrides the rig script (default: tests/kernel/run-guest-tests.sh of this repo).
set -eu -o pipefail
cd "$(dirname "$0")/../.."
RIG=${RIG:-tests/kernel/run-guest-tests.sh}
[ -f "$RIG" ] || { echo "run-in-guest: no kernel rig at $RIG (set RIG=...)" >&2; exit 2; }
dotnet build tests/Vfio.KernelTests -c Release -warnaserror >/dev/null
dotnet build src/Vfio.Cli -c Release -warnaserror >/dev/null
extra=""
for a in "$@"; do extra+=" $(printf '%q' "$a")"; done
export GUEST_TEST_CMD='export VFIO_KERNEL_DEVICES=$VMT_UUID_A,$VMT_UUID_B;
cli=src/Vfio.Cli/bin/Release/net10.0/vfio-mig;
echo "== vfio-mig info --list"; $cli info --list;
echo "== vfio-mig info vfio:$VMT_UUID_A"; $cli info vfio:$VMT_UUID_A;
echo "== vfio-mig info vfio:no-such-device"; $cli info vfio:no-such-device; echo "exit $?";
rc=0;
echo "== vfio-mig migrate --from vfio:A --to vfio:B";
$cli migrate --from vfio:$VMT_UUID_A --to vfio:$VMT_UUID_B || rc=1;
echo "== vfio-mig check vfio:A --peer vfio:B";
$cli check vfio:$VMT_UUID_A --peer vfio:$VMT_UUID_B || rc=1;
echo "== Vfio.KernelTests";
tests/Vfio.KernelTests/bin/Release/net10.0/Vfio.KernelTests -noColor'"$extra"' || rc=1;
exit $rc'
exec bash "$RIG"
