namespace Vfio;

/// <summary>Linux x86_64 errno values that the migration protocol uses (spec §1.6).</summary>
public enum Errno
{
    /// <summary>No error.</summary>
    None = 0,
    /// <summary>Operation not permitted.</summary>
    EPERM = 1,
    /// <summary>No such file or directory.</summary>
    ENOENT = 2,
    /// <summary>Interrupted system call.</summary>
    EINTR = 4,
    /// <summary>I/O error.</summary>
    EIO = 5,
    /// <summary>Argument list too long (too many DMA logging ranges).</summary>
    E2BIG = 7,
    /// <summary>Bad file descriptor (wrong direction on a data fd).</summary>
    EBADF = 9,
    /// <summary>Try again.</summary>
    EAGAIN = 11,
    /// <summary>Out of memory (resuming write beyond the device's maximum).</summary>
    ENOMEM = 12,
    /// <summary>Permission denied.</summary>
    EACCES = 13,
    /// <summary>Bad address.</summary>
    EFAULT = 14,
    /// <summary>Device or resource busy.</summary>
    EBUSY = 16,
    /// <summary>File exists.</summary>
    EEXIST = 17,
    /// <summary>No such device (terminated data stream).</summary>
    ENODEV = 19,
    /// <summary>Invalid argument.</summary>
    EINVAL = 22,
    /// <summary>File table overflow.</summary>
    ENFILE = 23,
    /// <summary>Too many open files.</summary>
    EMFILE = 24,
    /// <summary>Inappropriate ioctl (feature not supported).</summary>
    ENOTTY = 25,
    /// <summary>File too large.</summary>
    EFBIG = 27,
    /// <summary>No space left on device (DMA map too large).</summary>
    ENOSPC = 28,
    /// <summary>Illegal seek.</summary>
    ESPIPE = 29,
    /// <summary>Broken pipe.</summary>
    EPIPE = 32,
    /// <summary>Result out of range.</summary>
    ERANGE = 34,
    /// <summary>File name too long.</summary>
    ENAMETOOLONG = 36,
    /// <summary>Function not implemented.</summary>
    ENOSYS = 38,
    /// <summary>No message of desired type (PRE_COPY temporary end of stream).</summary>
    ENOMSG = 42,
    /// <summary>Not a data message.</summary>
    EBADMSG = 74,
    /// <summary>Value too large for defined data type.</summary>
    EOVERFLOW = 75,
    /// <summary>Protocol error.</summary>
    EPROTO = 71,
    /// <summary>Message too long.</summary>
    EMSGSIZE = 90,
    /// <summary>Operation not supported.</summary>
    EOPNOTSUPP = 95,
    /// <summary>Connection reset by peer.</summary>
    ECONNRESET = 104,
    /// <summary>Address already in use.</summary>
    EADDRINUSE = 98,
    /// <summary>Transport endpoint is not connected.</summary>
    ENOTCONN = 107,
    /// <summary>Connection timed out.</summary>
    ETIMEDOUT = 110,
    /// <summary>Connection refused.</summary>
    ECONNREFUSED = 111,
    /// <summary>Operation canceled.</summary>
    ECANCELED = 125,
}
