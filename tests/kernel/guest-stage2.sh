#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Runs as PID 1 inside the guest, in the host's root (read-only 9p), with
# tmpfs on /tmp and /run and the rig's read-write share on /run/vmt.
# Loads vfio + mdev + vfio_mig_test (and mtty when built), creates two mdevs
# of each, runs GUEST_TEST_CMD,
# writes its output to /run/vmt/output.txt and its status to /run/vmt/status,
# then powers the machine off.
R=/run/vmt
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# shellcheck disable=SC1091
. "$R/env.sh"

finish() {
	echo "$1" >"$R/status.tmp" && mv "$R/status.tmp" "$R/status"
	sync
	/bin/busybox poweroff -f
	sleep 10
}

setup_failed() {
	echo "kernel-rig-guest: setup failed: $*" >>"$R/output.txt"
	dmesg | tail -n 30 >>"$R/output.txt"
	finish 94
}

mkdir -p /dev/shm /dev/pts /tmp/home
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t devpts devpts /dev/pts 2>/dev/null
# The guest sees the host's root file system read-only; vfio-mig's state directory (/var/lib/vfio-mig as
# root, where every migration keeps its records) goes to a tmpfs.
mkdir -p /var/lib 2>/dev/null
mount -t tmpfs -o mode=0755 tmpfs /var/lib || echo "kernel-rig-guest: cannot mount a tmpfs on /var/lib: migrations will fail to keep records"
hostname kernel-rig 2>/dev/null
# loopback: the dotnet test host talks to vstest over 127.0.0.1
ip link set lo up 2>/dev/null || /bin/busybox ip link set lo up

export HOME=/tmp/home
export DOTNET_CLI_HOME=/tmp/home
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
export NUGET_PACKAGES=${NUGET_PACKAGES:-/root/.nuget/packages}
[ -d /usr/share/dotnet ] && export PATH=$PATH:/usr/share/dotnet DOTNET_ROOT=/usr/share/dotnet
export KERNEL_RIG=1

: >"$R/output.txt"
modprobe -a vfio vfio_iommu_type1 mdev || setup_failed "modprobe -a vfio vfio_iommu_type1 mdev"
# load_and_create KO "PARAMS" TYPE_DIR UUID...: insmod the driver, then create one mdev per UUID
load_and_create() {
	local ko=$1 params=$2 type=$3 u
	shift 3
	# shellcheck disable=SC2086
	insmod "$ko" $params || setup_failed "insmod $ko $params"
	[ -d "$type" ] || setup_failed "no mdev type directory $type"
	for u in "$@"; do
		echo "$u" >"$type/create" || setup_failed "cannot create mdev $u of $type"
	done
}
export VMT_TYPE_DIR=/sys/class/mdev_bus/vfio_mig_test/mdev_supported_types/vfio_mig_test-1
load_and_create "$VMT_KO" "$VMT_MODPARAMS" "$VMT_TYPE_DIR" "$VMT_UUID_A" "$VMT_UUID_B"
# The kernel's own sample driver (6.12): two mtty-2 instances (two serial ports each, a 96-byte stream)
if [ -n "${VMT_MTTY_KO:-}" ]; then
	export VMT_MTTY_TYPE_DIR=/sys/class/mdev_bus/mtty/mdev_supported_types/mtty-2
	load_and_create "$VMT_MTTY_KO" "" "$VMT_MTTY_TYPE_DIR" "$VMT_MTTY_A" "$VMT_MTTY_B"
fi

cd "$GUEST_CWD" 2>/dev/null || cd /
echo "kernel-rig-guest: $(uname -r), mdevs $VMT_UUID_A $VMT_UUID_B${VMT_MTTY_KO:+, mtty $VMT_MTTY_A $VMT_MTTY_B}, cmd: $GUEST_TEST_CMD" >>"$R/output.txt"
timeout --kill-after=5 "${GUEST_CMD_TIMEOUT:-555}" bash -c "$GUEST_TEST_CMD" </dev/null >>"$R/output.txt" 2>&1
rc=$?
[ "$rc" = 124 ] && echo "kernel-rig-guest: the test command timed out after ${GUEST_CMD_TIMEOUT:-555}s" >>"$R/output.txt"
# A WARNING/BUG in the kernel log fails the run, except between the markers
# "vmt-expect-warn-begin"/"vmt-expect-warn-end" that a test writes to
# /dev/kmsg around a call known to WARN (e.g. a SET while in ERROR).
dmesg >"$R/dmesg.txt" 2>/dev/null
awk '/vmt-expect-warn-begin/ { skip = 1 } /vmt-expect-warn-end/ { skip = 0; next } !skip' \
	"$R/dmesg.txt" >"$R/dmesg-unexpected.txt"
if grep -qE 'WARNING:|BUG:|Oops|general protection' "$R/dmesg-unexpected.txt"; then
	echo "kernel-rig-guest: kernel log has an unexpected WARNING/BUG:" >>"$R/output.txt"
	grep -E -A12 'WARNING:|BUG:|Oops|general protection' "$R/dmesg-unexpected.txt" | head -n 60 >>"$R/output.txt"
	[ "$rc" = 0 ] && rc=95
fi
finish "$rc"
