// SPDX-License-Identifier: GPL-2.0
/*
 * vfio_mig_test - a software mdev VFIO device that implements the VFIO
 * device migration protocol v2, for testing user-space migration code
 * against a real kernel. It builds against Linux 6.1 (Debian 12) and 6.12
 * (Debian 12 security archive); on 6.2 and later it also offers PRE_COPY
 * (caps 0x5, 0x7), VFIO_MIG_GET_PRECOPY_INFO and MIG_DATA_SIZE.
 *
 * Device model
 *   One region (index 0, offset 0) of `state_size` bytes: "the device
 *   state". User space reads and writes it with pread/pwrite on the device
 *   fd. Migration moves exactly these bytes.
 *
 * Saving stream format (all fields little-endian), see docs/kernel-backend.md
 *   0   u64  magic      0x3154534D47494D56 ("VMIGMST1" read as bytes)
 *   8   u32  version    1
 *   12  u32  flags      0
 *   16  u64  size       number of state bytes that follow
 *   24  size bytes      the region contents at STOP->STOP_COPY time
 *   24+size  u32 crc    CRC-32 (IEEE 802.3, as zlib's crc32()) of bytes [0, 24+size)
 *   28+size  u32 end    0x444E4554 ("TEND" read as bytes)
 *   A session opened in PRE_COPY carries the header as its pre-copy data
 *   (then ENOMSG until STOP_COPY); the rest follows in STOP_COPY.
 *
 * This file was written for this project; it follows the behaviour of the
 * upstream drivers described in the project specification, not their code.
 */

#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/device.h>
#include <linux/fs.h>
#include <linux/file.h>
#include <linux/anon_inodes.h>
#include <linux/mutex.h>
#include <linux/spinlock.h>
#include <linux/slab.h>
#include <linux/vmalloc.h>
#include <linux/uaccess.h>
#include <linux/crc32.h>
#include <linux/string.h>
#include <linux/mdev.h>
#include <linux/vfio.h>
#include <linux/version.h>
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 12, 0)
#include <linux/unaligned.h>
#else
#include <asm/unaligned.h>
#endif

/* PRE_COPY, VFIO_MIG_GET_PRECOPY_INFO and migration_get_data_size: Linux 6.2+ */
#ifdef VFIO_MIGRATION_PRE_COPY
#define VMT_HAVE_PRECOPY 1
#else
#define VMT_HAVE_PRECOPY 0
#endif

#define VMT_NAME		"vfio_mig_test"
#define VMT_TYPE_SYSFS		"1"	/* type dir becomes "vfio_mig_test-1" */
#define VMT_MAX_INSTANCES	8
#define VMT_MAX_STATE		(64u << 20)

#define VMT_MAGIC		0x3154534D47494D56ULL
#define VMT_VERSION		1u
#define VMT_END			0x444E4554u
#define VMT_HDR_LEN		24u
#define VMT_TRAILER_LEN		8u

/* ---- module parameters ------------------------------------------------ */

static unsigned int state_size = 65536;
module_param(state_size, uint, 0444);
MODULE_PARM_DESC(state_size, "bytes of device state (region 0), 1..64MiB, default 65536");

static unsigned int caps = VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P;
module_param(caps, uint, 0644);
MODULE_PARM_DESC(caps, "migration flags of new instances: 1 (STOP_COPY), 3 (|P2P), on 6.2+ also 5 (STOP_COPY|PRE_COPY) and 7; read when an mdev is created");

static char fail_arc[48];
module_param_string(fail_arc, fail_arc, sizeof(fail_arc), 0644);
MODULE_PARM_DESC(fail_arc, "make one arc fail (see fail_errno): \"STOP>STOP_COPY\" or \"1>3\"; empty or a newline = none");

static int fail_errno = EIO;
module_param(fail_errno, int, 0644);
MODULE_PARM_DESC(fail_errno, "positive errno returned by the arc named in fail_arc (default 5, EIO)");

static bool fail_to_error;
module_param(fail_to_error, bool, 0644);
MODULE_PARM_DESC(fail_to_error, "an injected arc failure puts the device into ERROR (data fds terminated) instead of leaving the last good state");

static bool corrupt_stream;
module_param(corrupt_stream, bool, 0644);
MODULE_PARM_DESC(corrupt_stream, "flip one byte of every saving stream after its checksum is computed");

static unsigned int deferred_resets;
module_param(deferred_resets, uint, 0444);
MODULE_PARM_DESC(deferred_resets, "statistics: resets that found state_mutex held and were applied by its holder");

static bool dma_logging = true;
module_param(dma_logging, bool, 0444);
MODULE_PARM_DESC(dma_logging, "offer DMA logging (features 6/7/8) that reports no dirty pages");

/* ---- types -------------------------------------------------------------- */

struct vmt_dev;

struct vmt_file {
	struct file *filp;
	struct mutex lock;		/* buf, filled, pos, disabled */
	struct vmt_dev *vdev;
	u8 *buf;
	size_t max;			/* capacity of buf */
	size_t filled;			/* saving: bytes of stream; resuming: bytes written */
	size_t pos;			/* stream position */
	bool disabled;
	bool precopy;			/* saving in PRE_COPY: only the header so far */
};

struct vmt_dev {
	struct vfio_device vdev;
	u32 caps;
	size_t size;
	u8 *state;			/* region 0 */
	struct mutex data_lock;		/* state[] */

	struct mutex state_mutex;	/* mig_state, saving, resuming */
	enum vfio_device_mig_state mig_state;
	struct vmt_file *saving;
	struct vmt_file *resuming;

	spinlock_t reset_lock;
	bool deferred_reset;

	bool logging;			/* DMA logging started */
};

static atomic_t vmt_available = ATOMIC_INIT(VMT_MAX_INSTANCES);
static struct class *vmt_class;
static struct device vmt_parent_dev;
static struct mdev_parent vmt_parent;
static struct mdev_type vmt_type = {
	.sysfs_name = VMT_TYPE_SYSFS,
	.pretty_name = "vfio migration v2 test device",
};
static struct mdev_type *vmt_types[] = { &vmt_type };

static const char *const vmt_state_names[] = {
	[VFIO_DEVICE_STATE_ERROR] = "ERROR",
	[VFIO_DEVICE_STATE_STOP] = "STOP",
	[VFIO_DEVICE_STATE_RUNNING] = "RUNNING",
	[VFIO_DEVICE_STATE_STOP_COPY] = "STOP_COPY",
	[VFIO_DEVICE_STATE_RESUMING] = "RESUMING",
	[VFIO_DEVICE_STATE_RUNNING_P2P] = "RUNNING_P2P",
#if VMT_HAVE_PRECOPY
	[VFIO_DEVICE_STATE_PRE_COPY] = "PRE_COPY",
	[VFIO_DEVICE_STATE_PRE_COPY_P2P] = "PRE_COPY_P2P",
#endif
};

static const char *vmt_sname(enum vfio_device_mig_state s)
{
	if ((unsigned int)s < ARRAY_SIZE(vmt_state_names) && vmt_state_names[s])
		return vmt_state_names[s];
	return "?";
}

static size_t vmt_stream_len(const struct vmt_dev *d)
{
	return VMT_HDR_LEN + d->size + VMT_TRAILER_LEN;
}

/* ---- data files --------------------------------------------------------- */

/* Terminate a data file: later read/write see -ENODEV, never data or EOF. */
static void vmt_disable_file(struct vmt_file *f)
{
	mutex_lock(&f->lock);
	f->disabled = true;
	f->pos = 0;
	f->filled = 0;
	vfree(f->buf);
	f->buf = NULL;
	mutex_unlock(&f->lock);
}

/* Caller holds state_mutex. Drops the driver's references. */
static void vmt_disable_files(struct vmt_dev *d)
{
	if (d->saving) {
		vmt_disable_file(d->saving);
		fput(d->saving->filp);
		d->saving = NULL;
	}
	if (d->resuming) {
		vmt_disable_file(d->resuming);
		fput(d->resuming->filp);
		d->resuming = NULL;
	}
}

static int vmt_file_release(struct inode *inode, struct file *filp)
{
	struct vmt_file *f = filp->private_data;

	vmt_disable_file(f);
	mutex_destroy(&f->lock);
	kfree(f);
	return 0;
}

static ssize_t vmt_save_read(struct file *filp, char __user *buf, size_t len,
			     loff_t *ppos)
{
	struct vmt_file *f = filp->private_data;
	ssize_t ret;
	size_t n;

	if (ppos)
		return -ESPIPE;

	mutex_lock(&f->lock);
	if (f->disabled) {
		ret = -ENODEV;
		goto out;
	}
	if (f->pos > f->filled) {
		ret = -EINVAL;
		goto out;
	}
	if (f->pos == f->filled && f->precopy && len) {
		ret = -ENOMSG;	/* temporary end: more comes in STOP_COPY */
		goto out;
	}
	n = min(len, f->filled - f->pos);
	if (n && copy_to_user(buf, f->buf + f->pos, n)) {
		ret = -EFAULT;
		goto out;
	}
	f->pos += n;
	ret = n;
out:
	mutex_unlock(&f->lock);
	return ret;
}

static ssize_t vmt_resume_write(struct file *filp, const char __user *buf,
				size_t len, loff_t *ppos)
{
	struct vmt_file *f = filp->private_data;
	size_t end;
	ssize_t ret;

	if (ppos)
		return -ESPIPE;

	mutex_lock(&f->lock);
	if (f->disabled) {
		ret = -ENODEV;
		goto out;
	}
	if (check_add_overflow(f->pos, len, &end)) {
		ret = -EINVAL;
		goto out;
	}
	if (end > f->max) {
		ret = -ENOMEM;
		goto out;
	}
	if (len && copy_from_user(f->buf + f->pos, buf, len)) {
		ret = -EFAULT;
		goto out;
	}
	f->pos = end;
	f->filled = max(f->filled, end);
	ret = len;
out:
	mutex_unlock(&f->lock);
	return ret;
}

#if VMT_HAVE_PRECOPY
static bool vmt_in_precopy(enum vfio_device_mig_state s)
{
	return s == VFIO_DEVICE_STATE_PRE_COPY || s == VFIO_DEVICE_STATE_PRE_COPY_P2P;
}

static void vmt_state_mutex_unlock(struct vmt_dev *d);

/* VFIO_MIG_GET_PRECOPY_INFO: the device state is checked before the stream. */
static long vmt_save_ioctl(struct file *filp, unsigned int cmd, unsigned long arg)
{
	struct vmt_file *f = filp->private_data;
	struct vmt_dev *d = f->vdev;
	struct vfio_precopy_info info;
	unsigned long minsz = offsetofend(struct vfio_precopy_info, dirty_bytes);
	long ret = 0;

	if (cmd != VFIO_MIG_GET_PRECOPY_INFO)
		return -ENOTTY;
	if (copy_from_user(&info, (void __user *)arg, minsz))
		return -EFAULT;
	if (info.argsz < minsz)
		return -EINVAL;

	mutex_lock(&d->state_mutex);
	if (!vmt_in_precopy(d->mig_state)) {
		ret = -EINVAL;
		goto unlock;
	}
	mutex_lock(&f->lock);
	if (f->disabled) {
		ret = -ENODEV;
	} else {
		info.initial_bytes = f->filled - f->pos;
		info.dirty_bytes = 0;
		info.flags = 0;
	}
	mutex_unlock(&f->lock);
unlock:
	vmt_state_mutex_unlock(d);
	if (ret)
		return ret;
	return copy_to_user((void __user *)arg, &info, minsz) ? -EFAULT : 0;
}
#endif

/* no_llseek was removed in 6.12; stream_open() already makes the fd unseekable */
#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 12, 0)
#define VMT_LLSEEK .llseek = no_llseek,
#else
#define VMT_LLSEEK
#endif

static const struct file_operations vmt_save_fops = {
	.owner = THIS_MODULE,
	.read = vmt_save_read,
	.release = vmt_file_release,
#if VMT_HAVE_PRECOPY
	.unlocked_ioctl = vmt_save_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
#endif
	VMT_LLSEEK
};

static const struct file_operations vmt_resume_fops = {
	.owner = THIS_MODULE,
	.write = vmt_resume_write,
	.release = vmt_file_release,
	VMT_LLSEEK
};

static struct vmt_file *vmt_file_new(struct vmt_dev *d, bool saving)
{
	struct vmt_file *f;

	f = kzalloc(sizeof(*f), GFP_KERNEL_ACCOUNT);
	if (!f)
		return ERR_PTR(-ENOMEM);
	f->max = vmt_stream_len(d);
	f->buf = vzalloc(f->max);
	if (!f->buf) {
		kfree(f);
		return ERR_PTR(-ENOMEM);
	}
	mutex_init(&f->lock);
	f->vdev = d;
	f->filp = anon_inode_getfile(saving ? "vfio_mig_test_save" : "vfio_mig_test_resume",
				     saving ? &vmt_save_fops : &vmt_resume_fops,
				     f, saving ? O_RDONLY : O_WRONLY);
	if (IS_ERR(f->filp)) {
		int ret = PTR_ERR(f->filp);

		mutex_destroy(&f->lock);
		vfree(f->buf);
		kfree(f);
		return ERR_PTR(ret);
	}
	stream_open(f->filp->f_inode, f->filp);
	return f;
}

static u32 vmt_crc(const u8 *p, size_t len)
{
	return crc32_le(~0u, p, len) ^ ~0u;
}

/* Caller holds f->lock: the region snapshot, CRC and end marker after the header. */
static void vmt_fill_state(struct vmt_dev *d, struct vmt_file *f)
{
	u8 *p = f->buf;

	mutex_lock(&d->data_lock);
	memcpy(p + VMT_HDR_LEN, d->state, d->size);
	mutex_unlock(&d->data_lock);
	put_unaligned_le32(vmt_crc(p, VMT_HDR_LEN + d->size), p + VMT_HDR_LEN + d->size);
	put_unaligned_le32(VMT_END, p + VMT_HDR_LEN + d->size + 4);
	if (READ_ONCE(corrupt_stream))
		p[VMT_HDR_LEN] ^= 0x5a;	/* first state byte; caught by the CRC */
	f->filled = f->max;
	f->precopy = false;
}

/*
 * STOP -> STOP_COPY: a new saving stream with the whole state.
 * RUNNING(_P2P) -> PRE_COPY(_P2P): a new saving stream holding the header only.
 */
static struct file *vmt_start_saving(struct vmt_dev *d, bool precopy)
{
	struct vmt_file *f = vmt_file_new(d, true);
	u8 *p;

	if (IS_ERR(f))
		return ERR_CAST(f);
	p = f->buf;
	put_unaligned_le64(VMT_MAGIC, p);
	put_unaligned_le32(VMT_VERSION, p + 8);
	put_unaligned_le32(0, p + 12);
	put_unaligned_le64(d->size, p + 16);
	if (precopy) {
		f->filled = VMT_HDR_LEN;
		f->precopy = true;
	} else {
		vmt_fill_state(d, f);
	}

	get_file(f->filp);	/* the driver keeps one reference */
	d->saving = f;
	return f->filp;
}

#if VMT_HAVE_PRECOPY
/* PRE_COPY(_P2P) -> STOP_COPY: the open stream continues with the state. */
static int vmt_finish_saving(struct vmt_dev *d)
{
	struct vmt_file *f = d->saving;
	int ret = 0;

	if (WARN_ON(!f))
		return -EINVAL;
	mutex_lock(&f->lock);
	if (f->disabled)
		ret = -ENODEV;
	else if (f->precopy)
		vmt_fill_state(d, f);
	mutex_unlock(&f->lock);
	return ret;
}
#endif

static struct file *vmt_start_resuming(struct vmt_dev *d)
{
	struct vmt_file *f = vmt_file_new(d, false);

	if (IS_ERR(f))
		return ERR_CAST(f);
	get_file(f->filp);
	d->resuming = f;
	return f->filp;
}

/* RESUMING -> STOP: validate the whole stream, then load it. */
static int vmt_load(struct vmt_dev *d)
{
	struct vmt_file *f = d->resuming;
	size_t total = vmt_stream_len(d);
	int ret = 0;
	u8 *p;

	if (WARN_ON(!f))
		return -EINVAL;
	mutex_lock(&f->lock);
	p = f->buf;
	if (f->disabled || !p) {
		ret = -ENODEV;
		goto out;
	}
	if (f->filled != total ||
	    get_unaligned_le64(p) != VMT_MAGIC ||
	    get_unaligned_le32(p + 8) != VMT_VERSION ||
	    get_unaligned_le32(p + 12) != 0 ||
	    get_unaligned_le64(p + 16) != d->size ||
	    get_unaligned_le32(p + VMT_HDR_LEN + d->size + 4) != VMT_END ||
	    get_unaligned_le32(p + VMT_HDR_LEN + d->size) !=
			vmt_crc(p, VMT_HDR_LEN + d->size)) {
		ret = -EINVAL;
		goto out;
	}
	mutex_lock(&d->data_lock);
	memcpy(d->state, p + VMT_HDR_LEN, d->size);
	mutex_unlock(&d->data_lock);
out:
	mutex_unlock(&f->lock);
	return ret;
}

/* ---- state machine ------------------------------------------------------ */

static bool vmt_arc_is(enum vfio_device_mig_state cur,
		       enum vfio_device_mig_state next,
		       enum vfio_device_mig_state a,
		       enum vfio_device_mig_state b)
{
	return cur == a && next == b;
}

/* Spec 2.6: the single arcs a device with these caps can be handed. */
static bool vmt_arc_legal(u32 c, enum vfio_device_mig_state cur,
			  enum vfio_device_mig_state next)
{
	if (vmt_arc_is(cur, next, VFIO_DEVICE_STATE_STOP, VFIO_DEVICE_STATE_STOP_COPY) ||
	    vmt_arc_is(cur, next, VFIO_DEVICE_STATE_STOP_COPY, VFIO_DEVICE_STATE_STOP) ||
	    vmt_arc_is(cur, next, VFIO_DEVICE_STATE_STOP, VFIO_DEVICE_STATE_RESUMING) ||
	    vmt_arc_is(cur, next, VFIO_DEVICE_STATE_RESUMING, VFIO_DEVICE_STATE_STOP))
		return true;
#if VMT_HAVE_PRECOPY
	if (c & VFIO_MIGRATION_PRE_COPY) {
		if (vmt_arc_is(cur, next, VFIO_DEVICE_STATE_RUNNING, VFIO_DEVICE_STATE_PRE_COPY) ||
		    vmt_arc_is(cur, next, VFIO_DEVICE_STATE_PRE_COPY, VFIO_DEVICE_STATE_RUNNING))
			return true;
		if (c & VFIO_MIGRATION_P2P) {
			if (vmt_arc_is(cur, next, VFIO_DEVICE_STATE_PRE_COPY, VFIO_DEVICE_STATE_PRE_COPY_P2P) ||
			    vmt_arc_is(cur, next, VFIO_DEVICE_STATE_PRE_COPY_P2P, VFIO_DEVICE_STATE_PRE_COPY) ||
			    vmt_arc_is(cur, next, VFIO_DEVICE_STATE_RUNNING_P2P, VFIO_DEVICE_STATE_PRE_COPY_P2P) ||
			    vmt_arc_is(cur, next, VFIO_DEVICE_STATE_PRE_COPY_P2P, VFIO_DEVICE_STATE_RUNNING_P2P) ||
			    vmt_arc_is(cur, next, VFIO_DEVICE_STATE_PRE_COPY_P2P, VFIO_DEVICE_STATE_STOP_COPY))
				return true;
		} else if (vmt_arc_is(cur, next, VFIO_DEVICE_STATE_PRE_COPY, VFIO_DEVICE_STATE_STOP_COPY)) {
			return true;
		}
	}
#endif
	if (c & VFIO_MIGRATION_P2P)
		return vmt_arc_is(cur, next, VFIO_DEVICE_STATE_RUNNING, VFIO_DEVICE_STATE_RUNNING_P2P) ||
		       vmt_arc_is(cur, next, VFIO_DEVICE_STATE_RUNNING_P2P, VFIO_DEVICE_STATE_RUNNING) ||
		       vmt_arc_is(cur, next, VFIO_DEVICE_STATE_RUNNING_P2P, VFIO_DEVICE_STATE_STOP) ||
		       vmt_arc_is(cur, next, VFIO_DEVICE_STATE_STOP, VFIO_DEVICE_STATE_RUNNING_P2P);
	return vmt_arc_is(cur, next, VFIO_DEVICE_STATE_RUNNING, VFIO_DEVICE_STATE_STOP) ||
	       vmt_arc_is(cur, next, VFIO_DEVICE_STATE_STOP, VFIO_DEVICE_STATE_RUNNING);
}

/* fail_arc fault injection: "FROM>TO" with the spec's state names. */
static int vmt_arc_injected(enum vfio_device_mig_state cur,
			    enum vfio_device_mig_state next)
{
	char want[48], wantnum[16];
	int err = 0;

	/* by name ("STOP>STOP_COPY") or by enum value ("1>3") */
	snprintf(want, sizeof(want), "%s>%s", vmt_sname(cur), vmt_sname(next));
	snprintf(wantnum, sizeof(wantnum), "%u>%u", cur, next);
	kernel_param_lock(THIS_MODULE);
	if (fail_arc[0] && (sysfs_streq(fail_arc, want) || sysfs_streq(fail_arc, wantnum))) {
		err = fail_errno;
		if (err <= 0 || err >= MAX_ERRNO)
			err = EIO;
	}
	kernel_param_unlock(THIS_MODULE);
	return -err;
}

/* Perform exactly one arc. Returns NULL, a new data file, or ERR_PTR. */
static struct file *vmt_step(struct vmt_dev *d, enum vfio_device_mig_state next)
{
	enum vfio_device_mig_state cur = d->mig_state;
	int ret;

	if (!vmt_arc_legal(d->caps, cur, next)) {
		WARN_ONCE(1, VMT_NAME ": illegal arc %s>%s\n", vmt_sname(cur), vmt_sname(next));
		return ERR_PTR(-EINVAL);
	}
	ret = vmt_arc_injected(cur, next);
	if (ret) {
		dev_info(d->vdev.dev, "injected failure %d of arc %s>%s%s\n",
			 ret, vmt_sname(cur), vmt_sname(next),
			 READ_ONCE(fail_to_error) ? ", device -> ERROR" : "");
		if (READ_ONCE(fail_to_error)) {
			/* spec 3.3: a driver may give up; only a reset leaves ERROR */
			vmt_disable_files(d);
			d->mig_state = VFIO_DEVICE_STATE_ERROR;
		}
		return ERR_PTR(ret);
	}

	if (cur == VFIO_DEVICE_STATE_STOP && next == VFIO_DEVICE_STATE_STOP_COPY)
		return vmt_start_saving(d, false);
#if VMT_HAVE_PRECOPY
	if ((cur == VFIO_DEVICE_STATE_RUNNING && next == VFIO_DEVICE_STATE_PRE_COPY) ||
	    (cur == VFIO_DEVICE_STATE_RUNNING_P2P && next == VFIO_DEVICE_STATE_PRE_COPY_P2P))
		return vmt_start_saving(d, true);
	if (vmt_in_precopy(cur) && next == VFIO_DEVICE_STATE_STOP_COPY) {
		ret = vmt_finish_saving(d);
		return ret ? ERR_PTR(ret) : NULL;	/* the same fd continues */
	}
	if ((cur == VFIO_DEVICE_STATE_PRE_COPY && next == VFIO_DEVICE_STATE_RUNNING) ||
	    (cur == VFIO_DEVICE_STATE_PRE_COPY_P2P && next == VFIO_DEVICE_STATE_RUNNING_P2P)) {
		vmt_disable_files(d);
		return NULL;
	}
#endif
	if (cur == VFIO_DEVICE_STATE_STOP && next == VFIO_DEVICE_STATE_RESUMING)
		return vmt_start_resuming(d);
	if (cur == VFIO_DEVICE_STATE_STOP_COPY && next == VFIO_DEVICE_STATE_STOP) {
		vmt_disable_files(d);
		return NULL;
	}
	if (cur == VFIO_DEVICE_STATE_RESUMING && next == VFIO_DEVICE_STATE_STOP) {
		ret = vmt_load(d);
		if (ret)
			return ERR_PTR(ret);	/* stay in RESUMING, fd still usable */
		vmt_disable_files(d);
		return NULL;
	}
	/* RUNNING<->RUNNING_P2P, RUNNING_P2P<->STOP, RUNNING<->STOP,
	 * PRE_COPY<->PRE_COPY_P2P: nothing to do for a device that does no DMA
	 * and raises no interrupts. */
	return NULL;
}

static void vmt_do_reset(struct vmt_dev *d)
{
	d->mig_state = VFIO_DEVICE_STATE_RUNNING;
	vmt_disable_files(d);
	mutex_lock(&d->data_lock);
	memset(d->state, 0, d->size);
	mutex_unlock(&d->data_lock);
}

/*
 * Release state_mutex; a reset requested while it was held (deferred_reset)
 * is applied first, so it is never lost and never races with an arc.
 */
static void vmt_state_mutex_unlock(struct vmt_dev *d)
{
again:
	spin_lock(&d->reset_lock);
	if (d->deferred_reset) {
		d->deferred_reset = false;
		spin_unlock(&d->reset_lock);
		vmt_do_reset(d);
		goto again;
	}
	mutex_unlock(&d->state_mutex);
	spin_unlock(&d->reset_lock);
}

static void vmt_reset(struct vmt_dev *d)
{
	spin_lock(&d->reset_lock);
	d->deferred_reset = true;
	if (!mutex_trylock(&d->state_mutex)) {
		WRITE_ONCE(deferred_resets, READ_ONCE(deferred_resets) + 1);
		spin_unlock(&d->reset_lock);
		return;		/* the holder applies it when it unlocks */
	}
	spin_unlock(&d->reset_lock);
	vmt_state_mutex_unlock(d);
}

static struct file *vmt_set_state(struct vfio_device *vdev,
				  enum vfio_device_mig_state new_state)
{
	struct vmt_dev *d = container_of(vdev, struct vmt_dev, vdev);
	enum vfio_device_mig_state next;
	struct file *res = NULL;
	int ret;

	mutex_lock(&d->state_mutex);
	while (d->mig_state != new_state) {
		ret = vfio_mig_get_next_state(vdev, d->mig_state, new_state, &next);
		if (ret) {
			res = ERR_PTR(ret);
			break;
		}
		res = vmt_step(d, next);
		if (IS_ERR(res))
			break;
		d->mig_state = next;	/* commit after every arc */
		if (WARN_ON(res && d->mig_state != new_state)) {
			fput(res);
			res = ERR_PTR(-EINVAL);
			break;
		}
	}
	vmt_state_mutex_unlock(d);
	return res;
}

static int vmt_get_state(struct vfio_device *vdev,
			 enum vfio_device_mig_state *curr)
{
	struct vmt_dev *d = container_of(vdev, struct vmt_dev, vdev);

	mutex_lock(&d->state_mutex);
	*curr = d->mig_state;
	vmt_state_mutex_unlock(d);
	return 0;
}

#if VMT_HAVE_PRECOPY
/* MIG_DATA_SIZE: the bytes STOP_COPY would still deliver. */
static int vmt_get_data_size(struct vfio_device *vdev, unsigned long *stop_copy_length)
{
	struct vmt_dev *d = container_of(vdev, struct vmt_dev, vdev);

	mutex_lock(&d->state_mutex);
	if (d->saving && vmt_in_precopy(d->mig_state))
		*stop_copy_length = d->size + VMT_TRAILER_LEN;	/* the header went in pre-copy */
	else
		*stop_copy_length = vmt_stream_len(d);
	vmt_state_mutex_unlock(d);
	return 0;
}
#endif

static const struct vfio_migration_ops vmt_mig_ops = {
	.migration_set_state = vmt_set_state,
	.migration_get_state = vmt_get_state,
#if VMT_HAVE_PRECOPY
	.migration_get_data_size = vmt_get_data_size,
#endif
};

/* ---- DMA logging: accepted, never reports a dirty page ------------------ */

static int vmt_log_start(struct vfio_device *vdev, struct rb_root_cached *ranges,
			 u32 nnodes, u64 *page_size)
{
	struct vmt_dev *d = container_of(vdev, struct vmt_dev, vdev);
	int ret = 0;

	mutex_lock(&d->state_mutex);
	if (d->logging)
		ret = -EBUSY;
	else
		d->logging = true;
	vmt_state_mutex_unlock(d);
	return ret;
}

static int vmt_log_stop(struct vfio_device *vdev)
{
	struct vmt_dev *d = container_of(vdev, struct vmt_dev, vdev);

	mutex_lock(&d->state_mutex);
	d->logging = false;
	vmt_state_mutex_unlock(d);
	return 0;
}

static int vmt_log_read_and_clear(struct vfio_device *vdev, unsigned long iova,
				  unsigned long length, struct iova_bitmap *dirty)
{
	struct vmt_dev *d = container_of(vdev, struct vmt_dev, vdev);
	int ret;

	mutex_lock(&d->state_mutex);
	ret = d->logging ? 0 : -EINVAL;
	vmt_state_mutex_unlock(d);
	return ret;
}

static const struct vfio_log_ops vmt_log_ops = {
	.log_start = vmt_log_start,
	.log_stop = vmt_log_stop,
	.log_read_and_clear = vmt_log_read_and_clear,
};

/* ---- vfio_device_ops ---------------------------------------------------- */

static int vmt_open_device(struct vfio_device *vdev)
{
	struct vmt_dev *d = container_of(vdev, struct vmt_dev, vdev);

	mutex_lock(&d->state_mutex);
	d->mig_state = VFIO_DEVICE_STATE_RUNNING;
	vmt_state_mutex_unlock(d);
	return 0;
}

static void vmt_close_device(struct vfio_device *vdev)
{
	struct vmt_dev *d = container_of(vdev, struct vmt_dev, vdev);

	mutex_lock(&d->state_mutex);
	vmt_disable_files(d);
	d->logging = false;
	vmt_state_mutex_unlock(d);
}

static ssize_t vmt_region_rw(struct vmt_dev *d, char __user *ubuf,
			     const char __user *cubuf, size_t count, loff_t *ppos)
{
	loff_t pos = *ppos;
	ssize_t ret;

	/* only region index 0 exists; it starts at offset 0 */
	if (pos < 0 || pos >= d->size)
		return -EINVAL;
	count = min_t(size_t, count, d->size - pos);
	mutex_lock(&d->data_lock);
	if (ubuf)
		ret = copy_to_user(ubuf, d->state + pos, count) ? -EFAULT : count;
	else
		ret = copy_from_user(d->state + pos, cubuf, count) ? -EFAULT : count;
	mutex_unlock(&d->data_lock);
	if (ret > 0)
		*ppos = pos + ret;
	return ret;
}

static ssize_t vmt_read(struct vfio_device *vdev, char __user *buf,
			size_t count, loff_t *ppos)
{
	return vmt_region_rw(container_of(vdev, struct vmt_dev, vdev),
			     buf, NULL, count, ppos);
}

static ssize_t vmt_write(struct vfio_device *vdev, const char __user *buf,
			 size_t count, loff_t *ppos)
{
	return vmt_region_rw(container_of(vdev, struct vmt_dev, vdev),
			     NULL, buf, count, ppos);
}

static long vmt_ioctl(struct vfio_device *vdev, unsigned int cmd,
		      unsigned long arg)
{
	struct vmt_dev *d = container_of(vdev, struct vmt_dev, vdev);
	void __user *uarg = (void __user *)arg;
	unsigned long minsz;

	switch (cmd) {
	case VFIO_DEVICE_GET_INFO: {
		struct vfio_device_info info;

		minsz = offsetofend(struct vfio_device_info, num_irqs);
		if (copy_from_user(&info, uarg, minsz))
			return -EFAULT;
		if (info.argsz < minsz)
			return -EINVAL;
		info.flags = VFIO_DEVICE_FLAGS_RESET | VFIO_DEVICE_FLAGS_PLATFORM;
		info.num_regions = 1;
		info.num_irqs = 0;
		return copy_to_user(uarg, &info, minsz) ? -EFAULT : 0;
	}
	case VFIO_DEVICE_GET_REGION_INFO: {
		struct vfio_region_info info;

		minsz = offsetofend(struct vfio_region_info, offset);
		if (copy_from_user(&info, uarg, minsz))
			return -EFAULT;
		if (info.argsz < minsz)
			return -EINVAL;
		if (info.index != 0)
			return -EINVAL;
		info.flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
		info.cap_offset = 0;
		info.size = d->size;
		info.offset = 0;
		return copy_to_user(uarg, &info, minsz) ? -EFAULT : 0;
	}
	case VFIO_DEVICE_GET_IRQ_INFO:
		return -EINVAL;		/* no interrupts */
	case VFIO_DEVICE_RESET:
		vmt_reset(d);
		return 0;
	}
	return -ENOTTY;
}

static int vmt_init_dev(struct vfio_device *vdev)
{
	struct vmt_dev *d = container_of(vdev, struct vmt_dev, vdev);
	u32 c = READ_ONCE(caps);
	int avail;

	switch (c) {
	case VFIO_MIGRATION_STOP_COPY:
	case VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P:
#if VMT_HAVE_PRECOPY
	case VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_PRE_COPY:
	case VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P | VFIO_MIGRATION_PRE_COPY:
#endif
		break;
	default:
		return -EINVAL;
	}

	do {
		avail = atomic_read(&vmt_available);
		if (avail == 0)
			return -ENOSPC;
	} while (!atomic_try_cmpxchg(&vmt_available, &avail, avail - 1));

	d->size = state_size;
	d->state = vzalloc(d->size);
	if (!d->state) {
		atomic_inc(&vmt_available);
		return -ENOMEM;
	}
	d->caps = c;
	mutex_init(&d->data_lock);
	mutex_init(&d->state_mutex);
	spin_lock_init(&d->reset_lock);
	d->mig_state = VFIO_DEVICE_STATE_RUNNING;
	vdev->migration_flags = c;
	vdev->mig_ops = &vmt_mig_ops;
	if (dma_logging)
		vdev->log_ops = &vmt_log_ops;
	return 0;
}

static void vmt_release_dev(struct vfio_device *vdev)
{
	struct vmt_dev *d = container_of(vdev, struct vmt_dev, vdev);

	mutex_destroy(&d->state_mutex);
	mutex_destroy(&d->data_lock);
	vfree(d->state);
	atomic_inc(&vmt_available);
#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 2, 0)
	vfio_free_device(vdev);		/* 6.1: the driver frees the allocation; 6.2+: the core does */
#endif
}

static const struct vfio_device_ops vmt_dev_ops = {
	.name = VMT_NAME,
	.init = vmt_init_dev,
	.release = vmt_release_dev,
	.open_device = vmt_open_device,
	.close_device = vmt_close_device,
	.read = vmt_read,
	.write = vmt_write,
	.ioctl = vmt_ioctl,
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 2, 0) && IS_ENABLED(CONFIG_IOMMUFD)
	.bind_iommufd = vfio_iommufd_emulated_bind,
	.unbind_iommufd = vfio_iommufd_emulated_unbind,
	.attach_ioas = vfio_iommufd_emulated_attach_ioas,
	.detach_ioas = vfio_iommufd_emulated_detach_ioas,
#endif
};

/* ---- mdev driver -------------------------------------------------------- */

static int vmt_probe(struct mdev_device *mdev)
{
	struct vmt_dev *d;
	int ret;

	d = vfio_alloc_device(vmt_dev, vdev, &mdev->dev, &vmt_dev_ops);
	if (IS_ERR(d))
		return PTR_ERR(d);
	ret = vfio_register_emulated_iommu_dev(&d->vdev);
	if (ret) {
		vfio_put_device(&d->vdev);
		return ret;
	}
	dev_set_drvdata(&mdev->dev, d);
	return 0;
}

static void vmt_remove(struct mdev_device *mdev)
{
	struct vmt_dev *d = dev_get_drvdata(&mdev->dev);

	vfio_unregister_group_dev(&d->vdev);
	vfio_put_device(&d->vdev);
}

static unsigned int vmt_get_available(struct mdev_type *mtype)
{
	return atomic_read(&vmt_available);
}

static ssize_t vmt_show_description(struct mdev_type *mtype, char *buf)
{
	return sysfs_emit(buf, "migration v2 test device, %u state bytes, caps 0x%x\n",
			  state_size, READ_ONCE(caps));
}

static struct mdev_driver vmt_driver = {
	.device_api = VFIO_DEVICE_API_PLATFORM_STRING,
	.max_instances = VMT_MAX_INSTANCES,
	.driver = {
		.name = VMT_NAME,
		.owner = THIS_MODULE,
		.mod_name = KBUILD_MODNAME,
	},
	.probe = vmt_probe,
	.remove = vmt_remove,
	.get_available = vmt_get_available,
	.show_description = vmt_show_description,
};

static void vmt_parent_release(struct device *dev)
{
}

static int __init vmt_init(void)
{
	int ret;

	if (state_size == 0 || state_size > VMT_MAX_STATE) {
		pr_err(VMT_NAME ": state_size must be 1..%u\n", VMT_MAX_STATE);
		return -EINVAL;
	}

	ret = mdev_register_driver(&vmt_driver);
	if (ret)
		return ret;

#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 4, 0)
	vmt_class = class_create(VMT_NAME);
#else
	vmt_class = class_create(THIS_MODULE, VMT_NAME);
#endif
	if (IS_ERR(vmt_class)) {
		ret = PTR_ERR(vmt_class);
		goto err_driver;
	}

	vmt_parent_dev.class = vmt_class;
	vmt_parent_dev.release = vmt_parent_release;
	dev_set_name(&vmt_parent_dev, "%s", VMT_NAME);
	ret = device_register(&vmt_parent_dev);
	if (ret)
		goto err_put;

	ret = mdev_register_parent(&vmt_parent, &vmt_parent_dev, &vmt_driver,
				   vmt_types, ARRAY_SIZE(vmt_types));
	if (ret)
		goto err_dev;
	pr_info(VMT_NAME ": loaded, state_size=%u caps=0x%x\n", state_size, caps);
	return 0;

err_dev:
	device_del(&vmt_parent_dev);
err_put:
	put_device(&vmt_parent_dev);
	class_destroy(vmt_class);
err_driver:
	mdev_unregister_driver(&vmt_driver);
	return ret;
}

static void __exit vmt_exit(void)
{
	mdev_unregister_parent(&vmt_parent);
	device_unregister(&vmt_parent_dev);
	class_destroy(vmt_class);
	mdev_unregister_driver(&vmt_driver);
}

module_init(vmt_init);
module_exit(vmt_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("VFIO migration v2 test device (mdev)");
