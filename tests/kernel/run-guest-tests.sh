#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# kernel guest rig: boots a Debian 12 kernel (Linux 6.1, or 6.12 from the
# security archive) under QEMU with the host's root file system shared
# read-only over 9p, loads vfio/mdev and the vfio_mig_test driver, creates two
# mdev instances (on 6.12 also two of the kernel's own mtty sample driver) and
# runs one test command in the guest.
#
# Usage:
#   tests/kernel/run-guest-tests.sh [GUEST_TEST_CMD...]
#   tests/kernel/run-guest-tests.sh --prepare   (install what the rig needs, then exit)
# Environment:
#   KERNEL           kernel series: 6.1 (default; what linux-image-amd64 selects)
#                    or 6.12 (the newest linux-image-6.12.N+deb12-amd64 apt knows)
#   GUEST_TEST_CMD   shell command run in the guest (default: the built-in C
#                    smoke test guest-smoke). Arguments given to the script
#                    take precedence over the variable.
#   GUEST_CWD        guest working directory (default: the caller's $PWD unless
#                    it is under /tmp, which the guest hides behind a tmpfs)
#   GUEST_ENV        space-separated names of extra host variables to export
#                    into the guest
#   GUEST_TIMEOUT    seconds before QEMU is killed (default 600)
#   GUEST_MEM        guest memory in MiB (default 2048)
#   VMT_MODPARAMS    parameters for insmod of vfio_mig_test (default none)
#   KVER             guest kernel version (default: picked for KERNEL)
#   RIG_MTTY         1: also build and load mtty (default 1 except on 6.1, whose
#                    mtty has no migration)
#   RIG_CACHE        where mtty.c extracted from linux-source is kept between runs
#                    (default /var/cache/vfio-mig-rig)
#   RIG_VERBOSE=1    also print the guest console
#
# Exit status: the guest command's status; 0 with a "kernel-rig: skipped: …"
# line when the rig cannot run here; 90+ for rig failures.
set -u
set -o pipefail

SELF_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SELF_DIR/../.." && pwd)

say() { echo "kernel-rig: $*" >&2; }
skip() { echo "kernel-rig: skipped: $*"; exit 0; }
die() { echo "kernel-rig: error: $*" >&2; exit "${2:-90}"; }

# ---- 1. can we run at all? ------------------------------------------------
[ "$(id -u)" = 0 ] || skip "not root"
[ "$(uname -m)" = x86_64 ] || skip "host is not x86_64"
command -v apt-get >/dev/null 2>&1 || skip "no apt-get (not a Debian host)"

APT_UPDATED=0
apt_update() {
	[ "$APT_UPDATED" = 1 ] && return 0
	say "apt-get update"
	DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1 || return 1
	APT_UPDATED=1
}
apt_install() {
	apt_update || return 1
	say "apt-get install $*"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1
}

# ---- 2. packages ----------------------------------------------------------
need=()
command -v qemu-system-x86_64 >/dev/null 2>&1 || need+=(qemu-system-x86)
# the initramfs needs the static busybox (Debian's plain busybox is dynamic)
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' || need+=(busybox-static)
command -v modprobe >/dev/null 2>&1 || need+=(kmod)
command -v cpio >/dev/null 2>&1 || need+=(cpio)
command -v gcc >/dev/null 2>&1 || need+=(gcc libc6-dev)
command -v make >/dev/null 2>&1 || need+=(make)
# 6.12's modules are .ko.xz, and mtty.c comes out of a .tar.xz
command -v xz >/dev/null 2>&1 || need+=(xz-utils)
if [ ${#need[@]} -gt 0 ]; then
	apt_install "${need[@]}" || skip "apt could not install ${need[*]}"
fi

PREPARE=0
if [ "${1:-}" = --prepare ]; then
	PREPARE=1
	shift
fi
SERIES=${KERNEL:-6.1}
case "$SERIES" in
6.1) ;;
6.[0-9]*) ;;
*) die "KERNEL must be a series such as 6.1 or 6.12, not '$SERIES'" 2 ;;
esac
if [ -n "${KVER:-}" ]; then
	case "$KVER" in 6.1.*) SERIES=6.1 ;; *) SERIES=$(echo "$KVER" | cut -d. -f1-2) ;; esac
fi
# mtty gained migration in 6.7; the 6.1 sample has none
RIG_MTTY=${RIG_MTTY:-$([ "$SERIES" = 6.1 ] && echo 0 || echo 1)}

# The kernel version, by query: 6.1 is what the linux-image-amd64 metapackage points to; any other
# series is the newest linux-image-<series>.N+debNN-amd64 apt knows (the security archive serves 6.12).
pick_kver() {
	if [ "$SERIES" = 6.1 ]; then
		apt-cache depends linux-image-amd64 2>/dev/null |
			sed -n 's/.*Depends: linux-image-\(6\.1\.[0-9]*-[0-9]*-amd64\).*/\1/p' | head -n1
	else
		apt-cache pkgnames "linux-image-$SERIES." 2>/dev/null |
			grep -E "^linux-image-${SERIES//./\\.}\.[0-9]+\+deb[0-9]+-amd64\$" |
			sed 's/^linux-image-//' | sort -V | tail -n1
	fi
}
[ -n "${KVER:-}" ] && KVER_FROM_USER=1
if [ -z "${KVER:-}" ]; then
	KVER=$(pick_kver)
	if [ -z "$KVER" ]; then
		apt_update || skip "apt-get update failed"
		KVER=$(pick_kver)
	fi
	if [ -z "$KVER" ]; then
		# offline fallback: an installed kernel of the series with headers
		for v in $(for f in /boot/vmlinuz-"$SERIES".*-amd64; do [ -f "$f" ] && echo "${f#/boot/vmlinuz-}"; done | sort -V -r); do
			[ -d "/usr/src/linux-headers-$v" ] && { KVER=$v; break; }
		done
	fi
	[ -n "$KVER" ] || skip "cannot determine the Debian $SERIES kernel version"
fi
kernel_present() {
	[ -f "/boot/vmlinuz-$KVER" ] && [ -d "/lib/modules/$KVER/kernel" ] &&
		[ -e "/usr/src/linux-headers-$KVER/Makefile" ]
}
if ! kernel_present; then
	# the cached package lists may name a kernel the mirror no longer has
	if [ "$APT_UPDATED" = 0 ] && [ -z "${KVER_FROM_USER:-}" ]; then
		apt_update || skip "apt-get update failed"
		v=$(pick_kver)
		[ -n "$v" ] && KVER=$v
	fi
	# INITRD=No: the rig boots its own initramfs, so Debian's (40 s to generate) is not built
	kernel_present || INITRD=No apt_install "linux-image-$KVER" "linux-headers-$KVER" ||
		skip "apt could not install linux-image-$KVER / linux-headers-$KVER"
fi
[ -f "/boot/vmlinuz-$KVER" ] || skip "no /boot/vmlinuz-$KVER after install"
KDIR=/usr/src/linux-headers-$KVER

# mtty.c of this kernel: from linux-source-<series>, extracted once into RIG_CACHE (the archive is
# 150 MB of xz; taking one file out costs about 11 s). Prints the path, or why not on stderr.
UPSTREAM=${KVER%%+*}
UPSTREAM=${UPSTREAM%%-*}
mtty_source() {
	local pkg=linux-source-$SERIES have cache
	have=$(dpkg-query -W -f='${Status} ${Version}' "$pkg" 2>/dev/null)
	case "$have" in
	"install ok installed $UPSTREAM"-*) ;;
	*) apt_install "$pkg" || { say "mtty: apt could not install $pkg"; return 1; } ;;
	esac
	have=$(dpkg-query -W -f='${Version}' "$pkg" 2>/dev/null)
	cache=${RIG_CACHE:-/var/cache/vfio-mig-rig}/$pkg-$have
	if [ ! -s "$cache/mtty.c" ]; then
		mkdir -p "$cache" || return 1
		say "mtty: extracting samples/vfio-mdev/mtty.c from /usr/src/$pkg.tar.xz"
		tar -xJOf "/usr/src/$pkg.tar.xz" --wildcards '*/samples/vfio-mdev/mtty.c' >"$cache/mtty.c.tmp" &&
			[ -s "$cache/mtty.c.tmp" ] && mv "$cache/mtty.c.tmp" "$cache/mtty.c" ||
			{ rm -f "$cache/mtty.c.tmp"; say "mtty: no samples/vfio-mdev/mtty.c in /usr/src/$pkg.tar.xz"; return 1; }
	fi
	[ "$have" = "${have#"$UPSTREAM"-}" ] && say "mtty: $pkg is $have, the kernel $KVER"
	echo "$cache/mtty.c"
}
MTTY_C=
if [ "$RIG_MTTY" = 1 ]; then
	MTTY_C=$(mtty_source) || die "mtty: cannot get samples/vfio-mdev/mtty.c for $KVER (RIG_MTTY=0 runs without it)" 91
fi
if [ "$PREPARE" = 1 ]; then
	say "prepared $KVER${MTTY_C:+ and $MTTY_C}"
	exit 0
fi

# ---- work dir and cleanup ---------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/kernel-rig.XXXXXX") || die "mktemp failed"
SHARE=$WORK/share          # read-write 9p share, /run/vmt in the guest
BUILD=$SHARE/build
mkdir -p "$SHARE" "$BUILD" "$WORK/initramfs"
QEMU_PID=
cleanup() {
	local qpid=
	[ -s "$WORK/qemu.pid" ] && qpid=$(cat "$WORK/qemu.pid" 2>/dev/null)
	for p in $QEMU_PID $qpid; do
		kill -0 "$p" 2>/dev/null || continue
		kill "$p" 2>/dev/null
		sleep 1
		kill -9 "$p" 2>/dev/null
	done
	[ "${RIG_KEEP:-0}" = 1 ] && { say "kept $WORK"; return; }
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- 3. build the module and the smoke test (outside the source tree) ------
mkdir -p "$BUILD/mod"
cp "$SELF_DIR/vfio_mig_test.c" "$SELF_DIR/Kbuild" "$BUILD/mod/"
if ! make -s -C "$KDIR" M="$BUILD/mod" modules >"$WORK/build.log" 2>&1; then
	cat "$WORK/build.log" >&2
	die "module build failed" 91
fi
cp "$BUILD/mod/vfio_mig_test.ko" "$BUILD/"
if [ -n "$MTTY_C" ]; then
	mkdir -p "$BUILD/mtty"
	cp "$MTTY_C" "$BUILD/mtty/mtty.c"
	echo 'obj-m := mtty.o' >"$BUILD/mtty/Kbuild"
	if ! make -s -C "$KDIR" M="$BUILD/mtty" modules >"$WORK/build-mtty.log" 2>&1; then
		cat "$WORK/build-mtty.log" >&2
		die "mtty build failed" 91
	fi
	cp "$BUILD/mtty/mtty.ko" "$BUILD/"
fi
if ! gcc -O2 -Wall -Wextra -pthread -o "$BUILD/guest-smoke" "$SELF_DIR/guest-smoke.c" >"$WORK/cc.log" 2>&1; then
	cat "$WORK/cc.log" >&2
	die "guest-smoke build failed" 91
fi

# ---- 4. initramfs: busybox + virtio/9p modules, then switch_root ------------
IRD=$WORK/initramfs
mkdir -p "$IRD/bin" "$IRD/mods" "$IRD/proc" "$IRD/sys" "$IRD/dev" "$IRD/newroot"
cp /bin/busybox "$IRD/bin/busybox"
: >"$IRD/mods/order"
for m in virtio_pci 9pnet_virtio 9p; do
	modprobe -S "$KVER" --show-depends "$m" 2>/dev/null | while read -r kind path _; do
		[ "$kind" = insmod ] || continue
		base=$(basename "$path")
		base=${base%.xz}; base=${base%.zst}
		grep -qx "$base" "$IRD/mods/order" && continue
		case "$path" in
		*.xz) xz -dc "$path" >"$IRD/mods/$base" ;;
		*.zst) zstd -qdc "$path" >"$IRD/mods/$base" ;;
		*) cp "$path" "$IRD/mods/$base" ;;
		esac
		echo "$base" >>"$IRD/mods/order"
	done
done
grep -qx 9p.ko "$IRD/mods/order" || die "no 9p module found for $KVER"

cat >"$IRD/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /mods/order); do
	insmod "/mods/$m" || echo "initramfs: insmod $m failed"
done
fail() { echo "initramfs: $*"; poweroff -f; }
mount -t 9p -o ro,trans=virtio,version=9p2000.L,msize=262144,cache=loose hostroot /newroot ||
	fail "cannot mount the host root"
mount -t tmpfs -o mode=1777 tmpfs /newroot/tmp || fail "tmpfs /tmp"
mount -t tmpfs -o mode=755 tmpfs /newroot/run || fail "tmpfs /run"
mkdir -p /newroot/run/vmt
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,cache=none results /newroot/run/vmt ||
	fail "cannot mount the results share"
# A checkout under /tmp or /run is hidden by the tmpfs above: mount it again at the same path.
if [ -f /repo_path ]; then
	p=$(cat /repo_path)
	mkdir -p "/newroot$p"
	mount -t 9p -o ro,trans=virtio,version=9p2000.L,msize=262144,cache=loose repo "/newroot$p" ||
		fail "cannot mount the checkout share"
fi
mount --move /proc /newroot/proc
mount --move /sys /newroot/sys
mount --move /dev /newroot/dev
exec switch_root /newroot /bin/bash /run/vmt/stage2.sh
EOF
chmod +x "$IRD/init"
# The checkout's parent (the checkout and shared/ beside it) gets its own share when the guest's tmpfs
# on /tmp or /run would hide it, as in a CI clone under /tmp.
REPO_PARENT=$(dirname "$REPO_ROOT")
REPO_SHARE=()
case "$REPO_PARENT" in
/tmp | /tmp/* | /run | /run/*)
	echo "$REPO_PARENT" >"$IRD/repo_path"
	REPO_SHARE=(-fsdev "local,id=c,path=$REPO_PARENT,security_model=none,readonly=on,multidevs=remap"
		-device virtio-9p-pci,fsdev=c,mount_tag=repo)
	;;
esac
(cd "$IRD" && find . | cpio -o -H newc --quiet | gzip -1) >"$WORK/initramfs.cpio.gz" ||
	die "initramfs build failed"

# ---- 5. what the guest runs --------------------------------------------------
if [ $# -gt 0 ]; then
	GUEST_TEST_CMD="$*"
fi
if [ -z "${GUEST_TEST_CMD:-}" ]; then
	GUEST_TEST_CMD='"$VMT_BUILD/guest-smoke"'
	BUILTIN=1
else
	BUILTIN=0
fi
if [ -z "${GUEST_CWD:-}" ]; then
	case "$PWD" in
	"$REPO_PARENT" | "$REPO_PARENT"/*) GUEST_CWD=$PWD ;;
	/tmp | /tmp/* | /run | /run/*) GUEST_CWD=$REPO_ROOT ;;
	*) GUEST_CWD=$PWD ;;
	esac
fi
FSM_CSV=${VMT_FSM_CSV:-}
if [ -z "$FSM_CSV" ]; then
	# the repository's own fixture (tests/fixtures/README says where it comes from)
	c="$REPO_ROOT/tests/fixtures/fsm-paths.csv"
	[ -f "$c" ] && FSM_CSV=$(cd "$(dirname "$c")" && pwd)/fsm-paths.csv
fi
case "$FSM_CSV" in /tmp/*) cp "$FSM_CSV" "$SHARE/fsm-paths.csv"; FSM_CSV=/run/vmt/fsm-paths.csv ;; esac

{
	echo "# generated by run-guest-tests.sh"
	printf 'export GUEST_TEST_CMD=%q\n' "$GUEST_TEST_CMD"
	printf 'export GUEST_CWD=%q\n' "$GUEST_CWD"
	# the guest stops the command a little before QEMU's own timeout, so that
	# its output, status and kernel log still reach the host
	printf 'export GUEST_CMD_TIMEOUT=%q\n' "$(( ${GUEST_TIMEOUT:-600} > 90 ? ${GUEST_TIMEOUT:-600} - 45 : ${GUEST_TIMEOUT:-600} * 2 / 3 ))"
	printf 'export KVER=%q\n' "$KVER"
	printf 'export VMT_BUILD=%q\n' /run/vmt/build
	printf 'export VMT_KO=%q\n' /run/vmt/build/vfio_mig_test.ko
	printf 'export VMT_MODPARAMS=%q\n' "${VMT_MODPARAMS:-}"
	printf 'export VMT_FSM_CSV=%q\n' "$FSM_CSV"
	printf 'export VMT_UUID_A=%q\n' "${VMT_UUID_A:-3b5c2f0e-6a0d-4c1e-9a51-0000000000a1}"
	printf 'export VMT_UUID_B=%q\n' "${VMT_UUID_B:-3b5c2f0e-6a0d-4c1e-9a51-0000000000b2}"
	if [ -n "$MTTY_C" ]; then
		printf 'export VMT_MTTY_KO=%q\n' /run/vmt/build/mtty.ko
		printf 'export VMT_MTTY_A=%q\n' "${VMT_MTTY_A:-3b5c2f0e-6a0d-4c1e-9a51-0000000000c3}"
		printf 'export VMT_MTTY_B=%q\n' "${VMT_MTTY_B:-3b5c2f0e-6a0d-4c1e-9a51-0000000000d4}"
	fi
	printf 'export VMT_REPO=%q\n' "$REPO_ROOT"
	for n in ${GUEST_ENV:-}; do
		[ -n "${!n+x}" ] && printf 'export %s=%q\n' "$n" "${!n}"
	done
} >"$SHARE/env.sh"
cp "$SELF_DIR/guest-stage2.sh" "$SHARE/stage2.sh"

# ---- 6. boot -----------------------------------------------------------------
# shellcheck disable=SC2054 # "tcg,thread=multi" is one QEMU argument
ACCEL=(-accel tcg,thread=multi -cpu max)
if grep -qwE 'vmx|svm' /proc/cpuinfo && [ ! -e /sys/module/kvm_pvm ] && [ -w /dev/kvm ]; then
	ACCEL=(-accel kvm -cpu host)
fi
say "booting $KVER under QEMU (${ACCEL[1]}), test: $GUEST_TEST_CMD"
CONSOLE=$WORK/console.log
T0=$(date +%s)
timeout --kill-after=10 "${GUEST_TIMEOUT:-600}" qemu-system-x86_64 \
	"${ACCEL[@]}" -m "${GUEST_MEM:-2048}" -smp 2 \
	-nodefaults -display none -monitor none -no-reboot \
	-serial "file:$CONSOLE" -pidfile "$WORK/qemu.pid" \
	-kernel "/boot/vmlinuz-$KVER" -initrd "$WORK/initramfs.cpio.gz" \
	-append "console=ttyS0 panic=-1 quiet loglevel=4 mitigations=off" \
	-fsdev local,id=r,path=/,security_model=none,readonly=on,multidevs=remap \
	-device virtio-9p-pci,fsdev=r,mount_tag=hostroot \
	-fsdev local,id=w,path="$SHARE",security_model=none \
	-device virtio-9p-pci,fsdev=w,mount_tag=results \
	"${REPO_SHARE[@]}" \
	</dev/null &
QEMU_PID=$!
wait "$QEMU_PID"
QRC=$?
QEMU_PID=
T1=$(date +%s)

# ---- 7. report -----------------------------------------------------------------
# The guest test's own output comes last, so its closing line (for the smoke
# test: "N passed, M failed") is the last line the rig prints.
if [ "${RIG_VERBOSE:-0}" = 1 ]; then
	echo "----- guest console -----"
	cat "$CONSOLE"
fi
if [ ! -f "$SHARE/status" ]; then
	[ -f "$SHARE/output.txt" ] && cat "$SHARE/output.txt"
	echo "----- guest console (tail) -----"
	tail -n 60 "$CONSOLE"
	[ "$QRC" = 124 ] && die "QEMU timed out after ${GUEST_TIMEOUT:-600}s" 92
	die "guest produced no test status (qemu exit $QRC)" 93
fi
RC=$(cat "$SHARE/status")
if grep -q 'kernel-rig-guest: setup failed' "$SHARE/output.txt" 2>/dev/null; then
	echo "----- guest console (tail) -----"
	tail -n 40 "$CONSOLE"
fi
say "guest test exited $RC; $KVER: QEMU ran $((T1 - T0))s (builtin smoke test: $BUILTIN); guest output follows"
cat "$SHARE/output.txt"
exit "$RC"
