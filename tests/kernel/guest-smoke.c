// SPDX-License-Identifier: GPL-2.0
/*
 * guest-smoke: checks the vfio_mig_test driver through the real VFIO
 * group/container uAPI of the running kernel. Runs inside the kernel rig guest
 * (tests/kernel/run-guest-tests.sh), where two mdevs already exist.
 *
 * Environment: VMT_UUID_A, VMT_UUID_B (the two mdevs), VMT_FSM_CSV (the
 * spec's fsm-paths.csv), VMT_KO (path of vfio_mig_test.ko, for the caps=1
 * reload), VMT_TYPE_DIR (the mdev type directory).
 *
 * Prints one line per check ("ok ..." / "FAIL ...") and ends with exactly
 * "N passed, M failed, K skipped" (a skip is a check this kernel cannot run,
 * with the reason). Exit status 0 iff M == 0 and N > 0.
 *
 * guest-smoke --fill UUID SEED: only writes a seeded pattern over region 0 of
 * that mdev (test data for the CLI checks of run-in-guest.sh) and exits.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <pthread.h>
#include <linux/vfio.h>

#define PARAM_DIR "/sys/module/vfio_mig_test/parameters"
#define HDR_LEN 24
#define TRL_LEN 8
#define MAGIC 0x3154534D47494D56ULL

static int n_pass, n_fail, n_skip;
static const char *phase = "";

static void check(bool ok, const char *fmt, ...)
{
	va_list ap;

	printf("%s [%s] ", ok ? "ok  " : "FAIL", phase);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
	if (ok)
		n_pass++;
	else
		n_fail++;
}

/* A check this kernel cannot run: counted apart, never as a pass. */
static void skip(const char *fmt, ...)
{
	va_list ap;

	printf("skip [%s] ", phase);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
	n_skip++;
}

/*
 * True when the running kernel has no IOVA bitmap walker: no iova_bitmap_alloc in
 * /proc/kallsyms. Debian's 6.12 is built without CONFIG_IOMMUFD_DRIVER, so the
 * walker is an inline stub and every DMA_LOGGING_REPORT fails with EOPNOTSUPP in
 * the core, before the driver is asked. On 6.1 the walker is part of vfio.
 */
static bool kernel_lacks_dirty_walker(void)
{
	char line[512], name[256];
	bool found = false;
	FILE *f = fopen("/proc/kallsyms", "r");

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f))
		found = sscanf(line, "%*s %*s %255s", name) == 1 && !strcmp(name, "iova_bitmap_alloc");
	fclose(f);
	return !found;
}

/* REPORT check, or a skip when it failed with EOPNOTSUPP on a kernel without the bitmap walker. */
#define CHECK_REPORT(r, cond, what)								\
	do {											\
		if ((r) < 0 && errno == EOPNOTSUPP && kernel_lacks_dirty_walker())		\
			skip("%s: EOPNOTSUPP from the core: the kernel has no IOVA bitmap walker "	\
			     "(built without CONFIG_IOMMUFD_DRIVER), a stub for every device", what); \
		else										\
			check(cond, "%s (%s)", what, (r) ? strerror(errno) : "ok");		\
	} while (0)

static void fatal(const char *fmt, ...)
{
	va_list ap;

	printf("FAIL [%s] fatal: ", phase);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf(" (errno %d %s)\n", errno, strerror(errno));
	n_fail++;
	printf("%d passed, %d failed, %d skipped\n", n_pass, n_fail, n_skip);
	exit(1);
}

/* ---- state names ---------------------------------------------------------- */

static const char *const names[] = {
	"ERROR", "STOP", "RUNNING", "STOP_COPY", "RESUMING", "RUNNING_P2P",
	"PRE_COPY", "PRE_COPY_P2P",
};
enum { S_ERROR, S_STOP, S_RUNNING, S_STOP_COPY, S_RESUMING, S_RUNNING_P2P,
       S_PRE_COPY, S_PRE_COPY_P2P, S_NR };

static int state_of(const char *s)
{
	for (int i = 0; i < S_NR; i++)
		if (!strcmp(s, names[i]))
			return i;
	return -1;
}

static const char *sn(int s)
{
	if (s >= 0 && s < S_NR)
		return names[s];
	if (s < 0)
		return strerrorname_np(-s) ? strerrorname_np(-s) : "error";
	return "?";
}

/* ---- sysfs helpers ------------------------------------------------------- */

static int write_file(const char *path, const char *val)
{
	int fd = open(path, O_WRONLY);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = write(fd, val, strlen(val));
	int e = n < 0 ? -errno : 0;
	close(fd);
	return e;
}

static void set_param(const char *name, const char *val)
{
	char p[256];

	char v[128];

	snprintf(p, sizeof(p), PARAM_DIR "/%s", name);
	snprintf(v, sizeof(v), "%s\n", val);	/* sysfs ignores a 0-byte write */
	if (write_file(p, v))
		fatal("cannot set %s=%s", name, val);
}

static long read_param_long(const char *name)
{
	char p[256], buf[64] = "";
	FILE *f;

	snprintf(p, sizeof(p), PARAM_DIR "/%s", name);
	f = fopen(p, "r");
	if (!f)
		fatal("cannot read %s", p);
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = 0;
	fclose(f);
	return strtol(buf, NULL, 0);
}

/* ---- VFIO device access -------------------------------------------------- */

struct dev {
	const char *uuid;
	int container, group, fd;
};

static void dev_open(struct dev *d, const char *uuid)
{
	char link[PATH_MAX], path[PATH_MAX], gpath[64];
	struct vfio_group_status st = { .argsz = sizeof(st) };
	ssize_t n;

	d->uuid = uuid;
	snprintf(path, sizeof(path), "/sys/bus/mdev/devices/%s/iommu_group", uuid);
	n = readlink(path, link, sizeof(link) - 1);
	if (n < 0)
		fatal("readlink %s", path);
	link[n] = 0;
	snprintf(gpath, sizeof(gpath), "/dev/vfio/%s", basename(link));

	d->container = open("/dev/vfio/vfio", O_RDWR);
	if (d->container < 0)
		fatal("open /dev/vfio/vfio");
	if (ioctl(d->container, VFIO_GET_API_VERSION) != VFIO_API_VERSION)
		fatal("VFIO_GET_API_VERSION");
	if (ioctl(d->container, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) <= 0)
		fatal("no VFIO_TYPE1v2_IOMMU");
	d->group = open(gpath, O_RDWR);
	if (d->group < 0)
		fatal("open %s", gpath);
	if (ioctl(d->group, VFIO_GROUP_GET_STATUS, &st) || !(st.flags & VFIO_GROUP_FLAGS_VIABLE))
		fatal("group %s not viable", gpath);
	if (ioctl(d->group, VFIO_GROUP_SET_CONTAINER, &d->container))
		fatal("VFIO_GROUP_SET_CONTAINER");
	if (ioctl(d->container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU))
		fatal("VFIO_SET_IOMMU type1v2");
	d->fd = ioctl(d->group, VFIO_GROUP_GET_DEVICE_FD, uuid);
	if (d->fd < 0)
		fatal("VFIO_GROUP_GET_DEVICE_FD %s", uuid);
}

static void dev_close(struct dev *d)
{
	if (d->fd >= 0)
		close(d->fd);
	if (d->group >= 0)
		close(d->group);
	if (d->container >= 0)
		close(d->container);
	d->fd = d->group = d->container = -1;
}

/* SET MIG_DEVICE_STATE; returns 0 or -errno, *data_fd = returned fd or -1 */
static int set_state(int fd, int st, int *data_fd)
{
	struct {
		struct vfio_device_feature hdr;
		struct vfio_device_feature_mig_state mig;
	} b = {
		.hdr = { .argsz = sizeof(b),
			 .flags = VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE },
		.mig = { .device_state = st, .data_fd = -1 },
	};
	int r = ioctl(fd, VFIO_DEVICE_FEATURE, &b);

	if (data_fd)
		*data_fd = r ? -1 : b.mig.data_fd;
	else if (!r && b.mig.data_fd >= 0)
		close(b.mig.data_fd);
	return r ? -errno : 0;
}

static int get_state(int fd)
{
	struct {
		struct vfio_device_feature hdr;
		struct vfio_device_feature_mig_state mig;
	} b = {
		.hdr = { .argsz = sizeof(b),
			 .flags = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE },
	};

	if (ioctl(fd, VFIO_DEVICE_FEATURE, &b))
		return -errno;
	return b.mig.device_state;
}

static long long get_caps(int fd)
{
	struct {
		struct vfio_device_feature hdr;
		struct vfio_device_feature_migration m;
	} b = {
		.hdr = { .argsz = sizeof(b),
			 .flags = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIGRATION },
	};

	if (ioctl(fd, VFIO_DEVICE_FEATURE, &b))
		return -errno;
	return (long long)b.m.flags;
}

static int dev_reset(int fd)
{
	return ioctl(fd, VFIO_DEVICE_RESET) ? -errno : 0;
}

/* mark a span of the kernel log where a WARN splat is expected (the rig
 * fails a run whose kernel log has an unexpected WARNING) */
static void kmsg(const char *msg)
{
	int fd = open("/dev/kmsg", O_WRONLY);

	if (fd >= 0) {
		if (write(fd, msg, strlen(msg)) < 0)
			perror("/dev/kmsg");
		close(fd);
	}
}

/* reset, then enter ERROR through an injected arc failure with fail_to_error */
static bool goto_error(int fd, unsigned int caps)
{
	bool ok = dev_reset(fd) == 0;

	set_param("fail_to_error", "1");
	set_param("fail_arc", (caps & VFIO_MIGRATION_P2P) ? "RUNNING>RUNNING_P2P" : "RUNNING>STOP");
	ok = ok && set_state(fd, S_STOP, NULL) == -EIO;
	set_param("fail_arc", "");
	set_param("fail_to_error", "0");
	return ok && get_state(fd) == S_ERROR;
}

/* SET while in ERROR: the 6.1 core WARNs (vfio_mig_get_next_state) */
static int set_state_in_error(int fd, int st, int *data_fd)
{
	int r;

	kmsg("vmt-expect-warn-begin");
	r = set_state(fd, st, data_fd);
	kmsg("vmt-expect-warn-end");
	return r;
}

/* a complete, valid stream for the device under test (see run_fsm_table) */
static unsigned char *valid_stream;
static size_t valid_len;
static int write_stream(int fd, const unsigned char *buf, size_t len);

/*
 * Reset (-> RUNNING, region zeroed) and move to st; returns the data fd or -1.
 * In RESUMING a valid stream is written at once, so that leaving RESUMING
 * later is possible (RESUMING->STOP validates the stream).
 */
static int goto_state(int fd, int st, bool *ok)
{
	int dfd = -1, r;

	*ok = dev_reset(fd) == 0;
	if (st != S_RUNNING) {
		r = set_state(fd, st, &dfd);
		if (r)
			*ok = false;
	}
	if (st == S_RESUMING && dfd >= 0 && valid_stream &&
	    write_stream(dfd, valid_stream, valid_len))
		*ok = false;
	if (get_state(fd) != st)
		*ok = false;
	return dfd;
}

static int rd_err(int fd, void *buf, size_t len)
{
	ssize_t n = read(fd, buf, len);

	return n < 0 ? -errno : (int)n;
}

static int wr_err(int fd, const void *buf, size_t len)
{
	ssize_t n = write(fd, buf, len);

	return n < 0 ? -errno : (int)n;
}

/* read a saving fd to EOF in odd-sized chunks; returns length or -errno */
static long read_stream(int fd, unsigned char *buf, size_t max)
{
	size_t got = 0;

	for (;;) {
		size_t want = max - got < 3001 ? max - got : 3001;
		ssize_t n;

		if (want == 0) {
			unsigned char extra;

			n = read(fd, &extra, 1);
			if (n < 0)
				return -errno;
			return n == 0 ? (long)got : -E2BIG;
		}
		n = read(fd, buf + got, want);
		if (n < 0)
			return -errno;
		if (n == 0)
			return (long)got;
		got += n;
	}
}

static int write_stream(int fd, const unsigned char *buf, size_t len)
{
	size_t off = 0;

	while (off < len) {
		size_t chunk = len - off < 4093 ? len - off : 4093;
		ssize_t n = write(fd, buf + off, chunk);

		if (n < 0)
			return -errno;
		off += n;
	}
	return 0;
}

static void fill_pattern(unsigned char *p, size_t n, unsigned int seed)
{
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		p[i] = seed >> 16;
	}
}

/* ---- fsm-paths.csv ------------------------------------------------------- */

static bool arc_makes_fd(int a, int b)
{
	return a == S_STOP && (b == S_STOP_COPY || b == S_RESUMING);
}

static void run_fsm_table(int fd, unsigned int caps, const char *csv)
{
	char line[256], want_caps[8];
	int rows = 0, na = 0;
	FILE *f = fopen(csv, "r");

	if (!f) {
		check(false, "open fsm-paths.csv (%s): %s", csv ? csv : "(unset)", strerror(errno));
		return;
	}
	snprintf(want_caps, sizeof(want_caps), "0x%x", caps);
	{	/* capture a valid stream of the (reset, all-zero) device */
		bool ok;
		int sfd = goto_state(fd, S_STOP_COPY, &ok);
		long n = -1;

		valid_stream = malloc(valid_len = 64u << 20);
		if (sfd >= 0 && valid_stream)
			n = read_stream(sfd, valid_stream, valid_len);
		if (sfd >= 0)
			close(sfd);
		check(ok && n > 0, "csv: captured a valid stream (%ld bytes) for rows starting in RESUMING", n);
		valid_len = n > 0 ? (size_t)n : 0;
	}
	while (fgets(line, sizeof(line), f)) {
		char *c = strtok(line, ",\n"), *fs = strtok(NULL, ",\n"),
		     *ts = strtok(NULL, ",\n"), *path = strtok(NULL, ",\n");
		int from, to, r, dfd, st, prev_fd;
		bool ok;

		if (!c || !fs || !ts || !path || strcmp(c, want_caps))
			continue;
		from = state_of(fs);
		to = state_of(ts);
		if (!strcmp(path, "n/a")) {
			na++;	/* the device cannot be in `from`: not a check */
			continue;
		}
		rows++;
		if (from == S_ERROR) {
			ok = goto_error(fd, caps);
			r = ok ? set_state_in_error(fd, to, &dfd) : -1;
			st = get_state(fd);
			if (!strcmp(path, "ERROR"))
				check(ok && r == 0 && dfd == -1 && st == S_ERROR,
				      "csv %s ERROR->ERROR: no-op success (rc %s, state %s)", want_caps,
				      r ? sn(r) : "0", sn(st));
			else
				check(ok && r == -EINVAL && st == S_ERROR,
				      "csv %s ERROR->%s: %s -> EINVAL, stays ERROR (rc %s, state %s)", want_caps,
				      ts, path, r ? sn(r) : "0", sn(st));
			if (dfd >= 0)
				close(dfd);
			continue;
		}
		prev_fd = goto_state(fd, from, &ok);
		if (!ok) {
			check(false, "csv %s>%s: cannot reach %s", fs, ts, fs);
			if (prev_fd >= 0)
				close(prev_fd);
			continue;
		}
		if (!strncmp(path, "!EINVAL", 7)) {
			r = set_state(fd, to, &dfd);
			st = get_state(fd);
			check(r == -EINVAL && st == from && dfd == -1,
			      "csv %s %s->%s: expect EINVAL, got %s, state %s", want_caps, fs, ts,
			      r ? sn(r) : "success", sn(st));
		} else if (!strchr(path, '>')) {
			r = set_state(fd, to, &dfd);
			st = get_state(fd);
			ok = r == 0 && st == to && dfd == -1;
			if (prev_fd >= 0) {	/* the existing data fd must stay usable */
				unsigned char b[8];
				int n = from == S_STOP_COPY ? rd_err(prev_fd, b, 8) : wr_err(prev_fd, "", 0);

				ok = ok && (from == S_STOP_COPY ? n == 8 : n == 0);
			}
			check(ok, "csv %s %s->%s: same-state no-op, no fd (rc %s, state %s)",
			      want_caps, fs, ts, r ? sn(r) : "0", sn(st));
		} else {
			int nodes[S_NR + 1], nn = 0;
			char tmp[128], *tok, *save;

			snprintf(tmp, sizeof(tmp), "%s", path);
			for (tok = strtok_r(tmp, ">", &save); tok && nn <= S_NR; tok = strtok_r(NULL, ">", &save))
				nodes[nn++] = state_of(tok);
			bool want_fd = arc_makes_fd(nodes[nn - 2], nodes[nn - 1]);

			r = set_state(fd, to, &dfd);
			st = get_state(fd);
			check(r == 0 && st == to && (dfd >= 0) == want_fd,
			      "csv %s %s->%s: path %s, rc %s, state %s, fd %s (want %s)", want_caps, fs, ts,
			      path, r ? sn(r) : "0", sn(st), dfd >= 0 ? "yes" : "no", want_fd ? "yes" : "no");
			if (dfd >= 0)
				close(dfd);
			/* prove the path arc by arc: failing arc i must leave nodes[i] */
			for (int i = 0; i + 1 < nn; i++) {
				char arc[64];
				int pfd;

				if (prev_fd >= 0)
					close(prev_fd);
				prev_fd = goto_state(fd, from, &ok);
				snprintf(arc, sizeof(arc), "%s>%s", names[nodes[i]], names[nodes[i + 1]]);
				set_param("fail_arc", arc);
				r = set_state(fd, to, &pfd);
				st = get_state(fd);
				set_param("fail_arc", "");
				check(ok && r == -EIO && st == nodes[i] && pfd == -1,
				      "csv %s %s->%s: arc %d (%s) is on the path: injected EIO leaves %s (rc %s, state %s)",
				      want_caps, fs, ts, i + 1, arc, names[nodes[i]], r ? sn(r) : "0", sn(st));
			}
		}
		if (prev_fd >= 0)
			close(prev_fd);
	}
	fclose(f);
	free(valid_stream);
	valid_stream = NULL;
	check(rows == 64 - na && rows > 0, "csv caps %s: %d rows checked, %d rows n/a (from an unsupported state)",
	      want_caps, rows, na);
	dev_reset(fd);
}

/* ---- the other checks ------------------------------------------------------ */

static void run_reset_race(int fd);

static void run_checks(struct dev *a, struct dev *b, unsigned int caps, size_t size,
		       const char *csv)
{
	size_t total = HDR_LEN + size + TRL_LEN;
	unsigned char *pat = malloc(size), *got = malloc(size), *s1 = malloc(total + 16),
		      *s2 = malloc(total + 16);
	long n;
	int r, st, sfd, rfd, sfd2, tmp;

	if (!pat || !got || !s1 || !s2)
		fatal("malloc");

	/* capabilities and info */
	check(get_caps(a->fd) == caps, "VFIO_DEVICE_FEATURE MIGRATION GET = 0x%llx (want 0x%x)",
	      get_caps(a->fd), caps);
	{
		struct vfio_device_info di = { .argsz = sizeof(di) };
		struct vfio_region_info ri = { .argsz = sizeof(ri), .index = 0 };

		r = ioctl(a->fd, VFIO_DEVICE_GET_INFO, &di);
		check(!r && di.num_regions == 1 && (di.flags & VFIO_DEVICE_FLAGS_RESET),
		      "VFIO_DEVICE_GET_INFO: %u regions, flags 0x%x", di.num_regions, di.flags);
		r = ioctl(a->fd, VFIO_DEVICE_GET_REGION_INFO, &ri);
		check(!r && ri.size == size && ri.offset == 0 &&
		      (ri.flags & (VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE)) ==
			      (VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE),
		      "VFIO_DEVICE_GET_REGION_INFO 0: size %llu offset %llu", (unsigned long long)ri.size,
		      (unsigned long long)ri.offset);
	}
	st = get_state(a->fd);
	check(st == S_RUNNING, "state after open is RUNNING (%s)", sn(st));
	check(set_state(a->fd, 8, NULL) == -EINVAL && get_state(a->fd) == S_RUNNING,
	      "SET state 8 (out of range) -> EINVAL, state unchanged");

	/* region read/write and reset */
	fill_pattern(pat, size, 1);
	n = pwrite(a->fd, pat, size, 0);
	r = pread(a->fd, got, size, 0);
	check(n == (long)size && r == (int)size && !memcmp(pat, got, size),
	      "region 0: pwrite/pread %zu bytes round-trip", size);
	dev_reset(a->fd);
	memset(pat, 0, size);
	pread(a->fd, got, size, 0);
	check(get_state(a->fd) == S_RUNNING && !memcmp(pat, got, size),
	      "VFIO_DEVICE_RESET -> RUNNING with the region zeroed");

	/* full save of A */
	fill_pattern(pat, size, 0xA11CE);
	pwrite(a->fd, pat, size, 0);
	r = set_state(a->fd, S_STOP_COPY, &sfd);
	check(!r && sfd >= 0 && get_state(a->fd) == S_STOP_COPY, "A: RUNNING->STOP_COPY returns a saving fd");
	if (sfd < 0)
		fatal("no saving fd");
	check(fcntl(sfd, F_GETFL) >= 0 && (fcntl(sfd, F_GETFL) & O_ACCMODE) == O_RDONLY &&
	      (fcntl(sfd, F_GETFD) & FD_CLOEXEC), "saving fd is O_RDONLY and close-on-exec");
	errno = 0;
	check(lseek(sfd, 0, SEEK_SET) < 0 && errno == ESPIPE, "saving fd: lseek -> ESPIPE");
	check(wr_err(sfd, "x", 1) == -EBADF, "saving fd: write -> EBADF");
	n = read_stream(sfd, s1, total);
	check(n == (long)total, "A: saving stream is %ld bytes (want %zu = 24 + size + 8)", n, total);
	check(n == (long)total && *(uint64_t *)s1 == MAGIC && *(uint32_t *)(s1 + 8) == 1 &&
	      *(uint64_t *)(s1 + 16) == size && !memcmp(s1 + HDR_LEN, pat, size),
	      "A: stream header (magic, version 1, size) and state bytes");
	check(rd_err(sfd, s2, 100) == 0 && rd_err(sfd, s2, 100) == 0, "A: read at end of STOP_COPY returns 0 (EOF), repeatedly");
	r = set_state(a->fd, S_STOP_COPY, &tmp);
	check(!r && tmp == -1, "A: STOP_COPY->STOP_COPY is a no-op without a new fd");
	r = set_state(a->fd, S_STOP, &tmp);
	check(!r && tmp == -1 && get_state(a->fd) == S_STOP, "A: STOP_COPY->STOP");
	check(rd_err(sfd, s2, 16) == -ENODEV, "A: terminated saving fd: read -> ENODEV (not EOF)");

	/* new fd per session */
	r = set_state(a->fd, S_STOP_COPY, &sfd2);
	check(!r && sfd2 >= 0 && sfd2 != sfd, "A: second STOP->STOP_COPY returns a new fd (%d, old %d)", sfd2, sfd);
	check(rd_err(sfd, s2, 16) == -ENODEV, "A: old saving fd still ENODEV during the new session");
	n = read_stream(sfd2, s2, total);
	check(n == (long)total && !memcmp(s1, s2, total), "A: new session streams the same %zu bytes from the start", total);
	close(sfd);
	/* reset while saving disables the fd */
	dev_reset(a->fd);
	check(get_state(a->fd) == S_RUNNING && rd_err(sfd2, s2, 16) == -ENODEV,
	      "A: VFIO_DEVICE_RESET in STOP_COPY -> RUNNING, saving fd ENODEV");
	close(sfd2);

	/* resume into B */
	dev_reset(b->fd);
	r = set_state(b->fd, S_RESUMING, &rfd);
	check(!r && rfd >= 0 && get_state(b->fd) == S_RESUMING, "B: RUNNING->RESUMING returns a resuming fd");
	if (rfd < 0)
		fatal("no resuming fd");
	check((fcntl(rfd, F_GETFL) & O_ACCMODE) == O_WRONLY, "resuming fd is O_WRONLY");
	check(rd_err(rfd, s2, 1) == -EBADF, "resuming fd: read -> EBADF");
	check(write_stream(rfd, s1, total - 100) == 0, "B: wrote all but the last 100 bytes");
	r = set_state(b->fd, S_STOP, NULL);
	check(r == -EINVAL && get_state(b->fd) == S_RESUMING,
	      "B: RESUMING->STOP with an incomplete stream -> EINVAL, stays RESUMING (%s)", sn(r));
	check(write_stream(rfd, s1 + total - 100, 100) == 0, "B: resuming fd still usable; wrote the rest");
	check(wr_err(rfd, s1, 1) == -ENOMEM, "B: write beyond the stream size -> ENOMEM");
	r = set_state(b->fd, S_RUNNING, &tmp);
	check(!r && tmp == -1 && get_state(b->fd) == S_RUNNING, "B: RESUMING->RUNNING (via STOP) succeeds");
	memset(got, 0, size);
	pread(b->fd, got, size, 0);
	check(!memcmp(got, pat, size), "B: region equals A's region after save A -> resume B");
	check(wr_err(rfd, s1, 1) == -ENODEV, "B: terminated resuming fd: write -> ENODEV");
	close(rfd);

	/* corrupt streams */
	dev_reset(b->fd);
	set_state(b->fd, S_RESUMING, &rfd);
	memcpy(s2, s1, total);
	s2[0] ^= 1;
	write_stream(rfd, s2, total);
	r = set_state(b->fd, S_STOP, NULL);
	check(r == -EINVAL && get_state(b->fd) == S_RESUMING, "B: bad magic -> RESUMING->STOP EINVAL (%s)", sn(r));
	dev_reset(b->fd);
	check(get_state(b->fd) == S_RUNNING && wr_err(rfd, s1, 1) == -ENODEV,
	      "B: reset abandons RESUMING -> RUNNING, resuming fd ENODEV");
	close(rfd);

	set_param("corrupt_stream", "1");
	dev_reset(a->fd);
	pwrite(a->fd, pat, size, 0);
	set_state(a->fd, S_STOP_COPY, &sfd);
	n = read_stream(sfd, s2, total);
	set_param("corrupt_stream", "0");
	close(sfd);
	check(n == (long)total && memcmp(s1, s2, total), "A: corrupt_stream=1 changes the saving stream");
	dev_reset(b->fd);
	set_state(b->fd, S_RESUMING, &rfd);
	write_stream(rfd, s2, total);
	r = set_state(b->fd, S_STOP, NULL);
	check(r == -EINVAL && get_state(b->fd) == S_RESUMING, "B: checksum mismatch -> RESUMING->STOP EINVAL (%s)", sn(r));
	close(rfd);
	dev_reset(b->fd);

	/* fault injection on a multi-arc request */
	dev_reset(a->fd);
	set_param("fail_arc", "STOP>STOP_COPY");
	r = set_state(a->fd, S_STOP_COPY, &tmp);
	st = get_state(a->fd);
	set_param("fail_arc", "");
	check(r == -EIO && tmp == -1 && st == S_STOP,
	      "A: fail_arc=STOP>STOP_COPY: RUNNING->STOP_COPY -> EIO, left at STOP (%s, %s)", sn(r), sn(st));
	r = set_state(a->fd, S_STOP_COPY, &tmp);
	check(!r && tmp >= 0, "A: after clearing fail_arc STOP->STOP_COPY succeeds");
	if (tmp >= 0)
		close(tmp);
	dev_reset(a->fd);
	if (caps & VFIO_MIGRATION_P2P) {
		set_param("fail_arc", "RUNNING_P2P>STOP");
		r = set_state(a->fd, S_RESUMING, &tmp);
		st = get_state(a->fd);
		set_param("fail_arc", "");
		check(r == -EIO && st == S_RUNNING_P2P,
		      "A: fail_arc=RUNNING_P2P>STOP: RUNNING->RESUMING -> EIO, left at RUNNING_P2P (%s)", sn(st));
	}

	/* fail_to_error: an injected failure moves the device into ERROR */
	dev_reset(a->fd);
	set_state(a->fd, S_STOP_COPY, &sfd);
	set_param("fail_to_error", "1");
	set_param("fail_arc", "STOP_COPY>STOP");
	r = set_state(a->fd, S_STOP, NULL);
	st = get_state(a->fd);
	set_param("fail_arc", "");
	set_param("fail_to_error", "0");
	check(r == -EIO && st == S_ERROR && rd_err(sfd, s2, 16) == -ENODEV,
	      "fail_to_error=1: failed arc STOP_COPY>STOP -> EIO, state ERROR, saving fd ENODEV (%s, %s)",
	      sn(r), sn(st));
	close(sfd);
	r = set_state_in_error(a->fd, S_RUNNING, NULL);
	check(r == -EINVAL && get_state(a->fd) == S_ERROR, "ERROR: SET RUNNING -> EINVAL, stays ERROR (%s)", sn(r));
	dev_reset(a->fd);
	check(get_state(a->fd) == S_RUNNING, "ERROR: VFIO_DEVICE_RESET -> RUNNING");

	/* closing the device fd terminates data fds; reopen gives RUNNING */
	dev_reset(a->fd);
	set_state(a->fd, S_STOP_COPY, &sfd);
	close(a->fd);
	check(rd_err(sfd, s2, 16) == -ENODEV, "A: close of the device fd terminates the saving fd (ENODEV)");
	close(sfd);
	a->fd = ioctl(a->group, VFIO_GROUP_GET_DEVICE_FD, a->uuid);
	if (a->fd < 0)
		fatal("re-open %s", a->uuid);
	check(get_state(a->fd) == S_RUNNING, "A: re-opened device is RUNNING");

	/* DMA logging (features 6/7/8) */
	{
		struct vfio_device_feature_dma_logging_range range = { .iova = 0, .length = 1 << 20 };
		struct {
			struct vfio_device_feature hdr;
			struct vfio_device_feature_dma_logging_control c;
		} start = {
			.hdr = { .argsz = sizeof(start),
				 .flags = VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_LOGGING_START },
			.c = { .page_size = 4096, .num_ranges = 1, .ranges = (uintptr_t)&range },
		};
		uint64_t bitmap[4] = { 0, 0, 0, 0 };
		struct {
			struct vfio_device_feature hdr;
			struct vfio_device_feature_dma_logging_report rep;
		} rep = {
			.hdr = { .argsz = sizeof(rep),
				 .flags = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT },
			.rep = { .iova = 0, .length = 1 << 20, .page_size = 4096, .bitmap = (uintptr_t)bitmap },
		};
		struct vfio_device_feature stop = {
			.argsz = sizeof(stop),
			.flags = VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP,
		};
		struct vfio_device_feature probe = {
			.argsz = sizeof(probe),
			.flags = VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_SET |
				 VFIO_DEVICE_FEATURE_DMA_LOGGING_START,
		};

		r = ioctl(a->fd, VFIO_DEVICE_FEATURE, &probe);
		check(r == 0, "DMA logging: PROBE START -> 0 (%s)", r ? strerror(errno) : "ok");
		r = ioctl(a->fd, VFIO_DEVICE_FEATURE, &start);
		check(r == 0, "DMA logging: START one 1 MiB range -> 0 (%s), page_size %llu",
		      r ? strerror(errno) : "ok", (unsigned long long)start.c.page_size);
		r = ioctl(a->fd, VFIO_DEVICE_FEATURE, &rep);
		CHECK_REPORT(r, r == 0 && !bitmap[0] && !bitmap[1] && !bitmap[2] && !bitmap[3],
			     "DMA logging: REPORT -> 0 with an all-clear bitmap");
		r = ioctl(a->fd, VFIO_DEVICE_FEATURE, &start);
		check(r < 0 && errno == EBUSY, "DMA logging: second START -> EBUSY (%s)", r ? strerror(errno) : "ok");
		r = ioctl(a->fd, VFIO_DEVICE_FEATURE, &stop);
		check(r == 0, "DMA logging: STOP -> 0 (%s)", r ? strerror(errno) : "ok");
		r = ioctl(a->fd, VFIO_DEVICE_FEATURE, &rep);
		CHECK_REPORT(r, r < 0 && errno == EINVAL, "DMA logging: REPORT after STOP -> EINVAL");
	}

	/* fail_errno selects the injected errno */
	dev_reset(a->fd);
	set_param("fail_errno", "16");
	set_param("fail_arc", "1>4");	/* STOP>RESUMING by enum values */
	r = set_state(a->fd, S_RESUMING, &tmp);
	st = get_state(a->fd);
	set_param("fail_arc", "");
	set_param("fail_errno", "5");
	check(r == -EBUSY && st == S_STOP, "fail_errno=16, fail_arc=1>4: injected arc STOP>RESUMING -> EBUSY, left at STOP (%s, %s)",
	      sn(r), sn(st));
	dev_reset(a->fd);

	run_reset_race(a->fd);
	run_fsm_table(a->fd, caps, csv);

	free(pat);
	free(got);
	free(s1);
	free(s2);
}

/* ---- reset racing with SET: the deferred-reset path ------------------------ */

struct race {
	int fd;
	volatile int stop;
	int sets, set_errs, resets, bad_reads;
};

static void *race_setter(void *arg)
{
	struct race *rc = arg;
	unsigned char buf[512];

	for (int i = 0; i < 400; i++) {
		int dfd = -1, r = set_state(rc->fd, S_STOP_COPY, &dfd);

		rc->sets++;
		if (r)
			rc->set_errs++;
		if (dfd >= 0) {
			/* a reset may terminate it any time: data, EOF or ENODEV only */
			for (;;) {
				int n = rd_err(dfd, buf, sizeof(buf));

				if (n == 0 || n == -ENODEV)
					break;
				if (n < 0) {
					rc->bad_reads++;
					break;
				}
			}
			close(dfd);
		}
		set_state(rc->fd, S_RUNNING, NULL);
	}
	rc->stop = 1;
	return NULL;
}

static void *race_resetter(void *arg)
{
	struct race *rc = arg;

	while (!rc->stop) {
		dev_reset(rc->fd);
		rc->resets++;
		usleep(50);
	}
	return NULL;
}

static void run_reset_race(int fd)
{
	struct race rc = { .fd = fd };
	long deferred0 = read_param_long("deferred_resets");
	pthread_t a, b;
	int st, dfd;

	pthread_create(&a, NULL, race_setter, &rc);
	pthread_create(&b, NULL, race_resetter, &rc);
	pthread_join(a, NULL);
	pthread_join(b, NULL);
	dev_reset(fd);
	st = get_state(fd);
	check(st == S_RUNNING && rc.bad_reads == 0,
	      "reset racing SET: %d SETs (%d failed), %d resets (%ld deferred), unexpected read errors %d, final state %s",
	      rc.sets, rc.set_errs, rc.resets, read_param_long("deferred_resets") - deferred0,
	      rc.bad_reads, sn(st));
	check(set_state(fd, S_STOP_COPY, &dfd) == 0 && dfd >= 0, "after the race STOP_COPY still works");
	if (dfd >= 0)
		close(dfd);
	dev_reset(fd);
}

static void run_phase(const char *name, const char *ua, const char *ub, const char *csv)
{
	struct dev a, b;
	unsigned int caps = (unsigned int)read_param_long("caps");
	size_t size = (size_t)read_param_long("state_size");

	phase = name;
	set_param("fail_arc", "");
	set_param("fail_errno", "5");
	set_param("fail_to_error", "0");
	set_param("corrupt_stream", "0");
	dev_open(&a, ua);
	dev_open(&b, ub);
	run_checks(&a, &b, caps, size, csv);
	dev_close(&a);
	dev_close(&b);
}

static int reload_caps1(const char *ko, const char *ua, const char *ub)
{
	char path[PATH_MAX], cmd[PATH_MAX + 512];
	const char *type = getenv("VMT_TYPE_DIR");

	for (int i = 0; i < 2; i++) {
		snprintf(path, sizeof(path), "/sys/bus/mdev/devices/%s/remove", i ? ub : ua);
		if (write_file(path, "1"))
			return -1;
	}
	if (system("rmmod vfio_mig_test"))
		return -1;
	/* keep the rig's other parameters (e.g. state_size); the last caps= wins */
	snprintf(cmd, sizeof(cmd), "insmod '%s' %s caps=1", ko,
		 getenv("VMT_MODPARAMS") ? getenv("VMT_MODPARAMS") : "");
	if (system(cmd))
		return -1;
	if (!type)
		type = "/sys/class/mdev_bus/vfio_mig_test/mdev_supported_types/vfio_mig_test-1";
	snprintf(path, sizeof(path), "%s/create", type);
	if (write_file(path, ua) || write_file(path, ub))
		return -1;
	return 0;
}

/* Writes fill_pattern(seed) over the whole of region 0. */
static int fill_region(const char *uuid, unsigned int seed)
{
	struct vfio_region_info ri = { .argsz = sizeof(ri), .index = 0 };
	struct dev d;
	unsigned char *pat;
	ssize_t n;

	dev_open(&d, uuid);
	if (ioctl(d.fd, VFIO_DEVICE_GET_REGION_INFO, &ri) || !ri.size)
		fatal("VFIO_DEVICE_GET_REGION_INFO 0 of %s", uuid);
	pat = malloc(ri.size);
	if (!pat)
		fatal("malloc %llu", (unsigned long long)ri.size);
	fill_pattern(pat, ri.size, seed);
	n = pwrite(d.fd, pat, ri.size, ri.offset);
	free(pat);
	dev_close(&d);
	if (n != (ssize_t)ri.size)
		fatal("pwrite region 0 of %s", uuid);
	printf("filled region 0 of %s (%llu bytes, seed %u)\n", uuid, (unsigned long long)ri.size, seed);
	return 0;
}

int main(int argc, char **argv)
{
	const char *ua = getenv("VMT_UUID_A"), *ub = getenv("VMT_UUID_B");
	const char *csv = getenv("VMT_FSM_CSV"), *ko = getenv("VMT_KO");
	bool reload = !(argc > 1 && !strcmp(argv[1], "--no-reload"));

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 4 && !strcmp(argv[1], "--fill"))
		return fill_region(argv[2], (unsigned int)strtoul(argv[3], NULL, 0));
	if (!ua || !ub)
		fatal("VMT_UUID_A / VMT_UUID_B not set");

	run_phase(read_param_long("caps") == 1 ? "caps=0x1" : "caps=0x3", ua, ub, csv);
	if (reload && ko && read_param_long("caps") != 1) {
		phase = "reload";
		check(reload_caps1(ko, ua, ub) == 0, "remove mdevs, rmmod, insmod caps=1, recreate mdevs");
		run_phase("caps=0x1", ua, ub, csv);
	}
	printf("%d passed, %d failed, %d skipped\n", n_pass, n_fail, n_skip);
	return n_fail == 0 && n_pass > 0 ? 0 : 1;
}
