using System.Diagnostics.CodeAnalysis;

namespace Vfio;

/// <summary>
/// The one error type of the library: an operation failed with a Linux errno, whether the errno came
/// from the kernel, from a vfio-user peer, from a device model, or from our own validation.
/// </summary>
/// <remarks>The message always starts with the errno name, then says in plain words what failed.</remarks>
public class VfioException : IOException
{
    /// <summary>Creates an exception for <paramref name="errno"/> raised by <paramref name="operation"/>.</summary>
    public VfioException(Errno errno, string operation, string? detail = null, Exception? inner = null)
        : base(Format(errno, operation, detail), inner)
    {
        Errno = errno;
        Operation = operation;
        Detail = detail;
        HResult = (int)errno;
    }

    /// <summary>For errors that add context of their own (e.g. a failed migration): the message is already formatted.</summary>
    protected VfioException(Errno errno, string operation, string? detail, string message, Exception? inner)
        : base(message, inner)
    {
        Errno = errno;
        Operation = operation;
        Detail = detail;
        HResult = (int)errno;
    }

    /// <summary>The Linux errno.</summary>
    public Errno Errno { get; }

    /// <summary>What was being done, e.g. <c>SET device_state RUNNING&gt;STOP</c>.</summary>
    public string Operation { get; }

    /// <summary>Plain-words detail, if any.</summary>
    public string? Detail { get; }

    /// <summary>Throws a <see cref="VfioException"/>; a helper that keeps throw code out of hot paths.</summary>
    [DoesNotReturn]
    public static void Throw(Errno errno, string operation, string? detail = null)
        => throw new VfioException(errno, operation, detail);

    /// <summary>The conventional strerror text for an errno.</summary>
    public static string Describe(Errno errno) => errno switch
    {
        Errno.EPERM => "operation not permitted",
        Errno.ENOENT => "no such file or directory",
        Errno.EINTR => "interrupted system call",
        Errno.EIO => "input/output error",
        Errno.E2BIG => "argument list too long",
        Errno.EBADF => "bad file descriptor",
        Errno.EAGAIN => "resource temporarily unavailable",
        Errno.ENOMEM => "cannot allocate memory",
        Errno.EACCES => "permission denied",
        Errno.EFAULT => "bad address",
        Errno.EBUSY => "device or resource busy",
        Errno.EEXIST => "file exists",
        Errno.ENODEV => "no such device",
        Errno.EINVAL => "invalid argument",
        Errno.ENFILE => "too many open files in system",
        Errno.EMFILE => "too many open files",
        Errno.ENOTTY => "inappropriate ioctl for device",
        Errno.EFBIG => "file too large",
        Errno.ENOSPC => "no space left on device",
        Errno.ESPIPE => "illegal seek",
        Errno.ENAMETOOLONG => "file name too long",
        Errno.EADDRINUSE => "address already in use",
        Errno.EPIPE => "broken pipe",
        Errno.ERANGE => "numerical result out of range",
        Errno.ENOSYS => "function not implemented",
        Errno.ENOMSG => "no message of desired type",
        Errno.EPROTO => "protocol error",
        Errno.EBADMSG => "bad message",
        Errno.EOVERFLOW => "value too large for defined data type",
        Errno.EMSGSIZE => "message too long",
        Errno.EOPNOTSUPP => "operation not supported",
        Errno.ECONNRESET => "connection reset by peer",
        Errno.ENOTCONN => "transport endpoint is not connected",
        Errno.ETIMEDOUT => "connection timed out",
        Errno.ECONNREFUSED => "connection refused",
        Errno.ECANCELED => "operation canceled",
        _ => "error " + ((int)errno).ToString(System.Globalization.CultureInfo.InvariantCulture),
    };

    /// <summary>The errno's symbolic name (e.g. <c>EINVAL</c>), or <c>E&lt;n&gt;</c> for values we do not name.</summary>
    public static string NameOf(Errno errno)
        => Enum.IsDefined(errno) ? errno.ToString() : "E" + ((int)errno).ToString(System.Globalization.CultureInfo.InvariantCulture);

    private static string Format(Errno errno, string operation, string? detail)
        => $"{NameOf(errno)}: {operation}: {detail ?? Describe(errno)}";
}
