namespace Vfio.Device;

/// <summary>
/// One migration data stream of a device: the user-space twin of the kernel's data fd. A session is
/// fresh for every saving or resuming phase; once terminated it answers ENODEV forever (spec §4.4).
/// </summary>
public sealed class DataSession
{
    private readonly MigrationDevice _device;
    private bool _active = true;
    private long _bytes;

    internal DataSession(MigrationDevice device, DataSessionKind kind, long id)
    {
        _device = device;
        Kind = kind;
        Id = id;
    }

    /// <summary>Saving or resuming.</summary>
    public DataSessionKind Kind { get; }

    /// <summary>A per-device sequence number; a later session always has a larger id.</summary>
    public long Id { get; }

    /// <summary>False once the session was terminated (session-ending arc, reset or device disposal).</summary>
    public bool IsActive => Volatile.Read(ref _active);

    /// <summary>Bytes read from or written to this session so far.</summary>
    public long BytesTransferred => Interlocked.Read(ref _bytes);

    /// <summary>
    /// Reads the next bytes of a saving stream. Returns 0 only at the permanent end of a STOP_COPY stream.
    /// </summary>
    /// <exception cref="VfioException">ENOMSG at a PRE_COPY temporary end; ENODEV when terminated; EBADF on a resuming session.</exception>
    public int Read(Span<byte> destination)
    {
        int n = _device.ReadSession(this, destination);
        Interlocked.Add(ref _bytes, n);
        return n;
    }

    /// <summary>
    /// STOP_COPY only: the next up to <paramref name="maxLength"/> stream bytes as the device's own memory, without a
    /// copy, when the device offers that (see <c>MigrationDevice.TakeStopCopyData</c>); null means "use
    /// <see cref="Read"/>". Empty is the end of the stream. The memory stays unchanged while the session lives.
    /// </summary>
    /// <exception cref="VfioException">ENODEV when terminated; EBADF on a resuming session.</exception>
    public ReadOnlyMemory<byte>? TryTakeStopCopy(int maxLength)
    {
        var data = _device.TakeSession(this, maxLength);
        if (data is { } d)
            Interlocked.Add(ref _bytes, d.Length);
        return data;
    }

    /// <summary>Writes the next bytes of a resuming stream, in order.</summary>
    /// <exception cref="VfioException">ENODEV when terminated; EBADF on a saving session; device errors (ENOMEM, EINVAL, …).</exception>
    public void Write(ReadOnlySpan<byte> source)
    {
        _device.WriteSession(this, source);
        Interlocked.Add(ref _bytes, source.Length);
    }

    /// <summary>VFIO_MIG_GET_PRECOPY_INFO on this stream.</summary>
    /// <exception cref="VfioException">EINVAL unless the device is in PRE_COPY/PRE_COPY_P2P; ENODEV when terminated; ENOTTY on a resuming session.</exception>
    public PrecopyEstimate GetPrecopyInfo() => _device.GetPrecopyInfo(this);

    internal void Terminate() => Volatile.Write(ref _active, false);
}
