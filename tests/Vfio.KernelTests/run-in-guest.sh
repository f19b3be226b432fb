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
# The guest command. Each CLI check prints "ok   …" or "FAIL …"; they are summed in one
# "guest: N passed, M failed" line (scripts/test.sh adds it to its total) before the xunit suite runs.
IFS= read -r -d '' GUEST_TEST_CMD <<'GUEST' || true
export VFIO_KERNEL_DEVICES=$VMT_UUID_A,$VMT_UUID_B
cli=src/Vfio.Cli/bin/Release/net10.0/vfio-mig
A=vfio:$VMT_UUID_A B=vfio:$VMT_UUID_B
param=/sys/module/vfio_mig_test/parameters
pass=0 fail=0
result() { if [ "$1" = 0 ]; then echo "ok   $2"; pass=$((pass + 1)); else echo "FAIL $2"; fail=$((fail + 1)); fi; }
echo "== vfio-mig info --list"; $cli info --list
echo "== vfio-mig info vfio:$VMT_UUID_A"; $cli info $A
echo "== vfio-mig info vfio:no-such-device"; $cli info vfio:no-such-device; echo "exit $?"
echo "== vfio-mig migrate --from vfio:A --to vfio:B"
$cli migrate --from $A --to $B; result $? "migrate vfio:A -> vfio:B"
echo "== vfio-mig check vfio:A --peer vfio:B"
$cli check $A --peer $B; result $? "check vfio:A --peer vfio:B"

# send/receive over loopback TCP between the two mdevs, each holding its own pattern first.
# net NAME "RECEIVE-ARGS" "SEND-ARGS": output in /tmp/NAME.rx and /tmp/NAME.tx, exit codes in rx_rc, tx_rc.
rm -f /tmp/token; $cli token new --output /tmp/token
net() {
	$cli receive --listen 127.0.0.1:7411 --into $B --token-file /tmp/token $2 >/tmp/$1.rx 2>&1 &
	local rx=$!
	for _ in $(seq 150); do grep -q '^listening on' /tmp/$1.rx && break; sleep 0.2; done
	$cli send --from $A --to tcp://127.0.0.1:7411 --token-file /tmp/token $3 >/tmp/$1.tx 2>&1
	tx_rc=$?
	wait $rx
	rx_rc=$?
	sed 's/^/[receiver] /' /tmp/$1.rx
	sed 's/^/[sender]   /' /tmp/$1.tx
	echo "receiver exit $rx_rc, sender exit $tx_rc"
}
echo "== vfio-mig receive --into vfio:B & send --from vfio:A"
$VMT_BUILD/guest-smoke --fill $VMT_UUID_A 7 && $VMT_BUILD/guest-smoke --fill $VMT_UUID_B 8
result $? "fill region 0 of A and B with different patterns"
zeros=$(head -c "$(cat $param/state_size)" /dev/zero | sha256sum | cut -d' ' -f1)
net ok "" ""
sha=$(sed -n 's/^verified: destination matches source (sha256 \([0-9a-f]\{64\}\))$/\1/p' /tmp/ok.tx)
[ "$tx_rc" = 0 ] && [ "$rx_rc" = 0 ] && [ -n "$sha" ] && [ "$sha" != "$zeros" ] &&
	grep -qx "verified: destination matches source (sha256 $sha)" /tmp/ok.rx
result $? "send vfio:A -> receive vfio:B: both exit 0 and print verified: (sha256 ${sha:-none})"

echo "== the same, the receiver failing RESUMING>STOP (fail_arc)"
echo 'RESUMING>STOP' >$param/fail_arc
net fault "" ""
echo >$param/fail_arc
[ "$tx_rc" != 0 ] && [ "$rx_rc" != 0 ] && [ -n "$sha" ] &&
	grep -qx "vfio-mig send: source device $A is RUNNING, state unchanged (sha256 $sha)" /tmp/fault.tx
result $? "receiver fails RESUMING>STOP: both exit non-zero, source RUNNING with region 0 unchanged"

echo "== the same again, sender --json"
net json "" "--json"
[ "$tx_rc" = 0 ] && [ "$rx_rc" = 0 ] && [ -n "$sha" ] &&
	grep -q '"verification":"match"' /tmp/json.tx && grep -q "\"sourceSha256\":\"$sha\"" /tmp/json.tx
result $? "send --json after the fault: \"verification\":\"match\", source digest still $sha"

echo "guest: $pass passed, $fail failed"
rc=0
[ "$fail" = 0 ] || rc=1
echo "== Vfio.KernelTests"
GUEST
export GUEST_TEST_CMD+="
tests/Vfio.KernelTests/bin/Release/net10.0/Vfio.KernelTests -noColor$extra || rc=1
exit \$rc"
exec bash "$RIG"
