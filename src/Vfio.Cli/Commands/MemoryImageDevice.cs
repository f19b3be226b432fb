using Vfio.Device;
using Vfio.Migration;

namespace Vfio.Cli.Commands;

/// <summary>
/// A minimal migration device for transport benchmarks: its state is a byte image and its stop-copy stream is
/// exactly those bytes (one memcpy per read), so a measurement shows the transport, not the device's format.
/// </summary>
internal sealed class MemoryImageDevice : MigrationDevice
{
    private readonly byte[] _image;
    private long _readAt = -1;
    private long _writeAt = -1;

    public MemoryImageDevice(long size)
        : base(VfioMigrationFlags.StopCopy)
    {
        _image = GC.AllocateUninitializedArray<byte>(checked((int)size));
        new Random(1).NextBytes(_image);
    }

    public long Size => _image.Length;

    public void Read(long offset, Span<byte> destination) => _image.AsSpan((int)offset, destination.Length).CopyTo(destination);

    public void Write(long offset, ReadOnlySpan<byte> source) => source.CopyTo(_image.AsSpan((int)offset));

    protected override void OnStopToStopCopy() => _readAt = 0;

    protected override void OnStopToResuming() => _writeAt = 0;

    protected override void OnResumingToStop()
    {
        if (_writeAt != _image.Length)
            throw new VfioException(Errno.EINVAL, "arc RESUMING>STOP", $"{_writeAt} of {_image.Length} bytes were loaded");
    }

    protected override int ReadSavingData(Span<byte> destination, VfioMigrationState state)
    {
        int n = (int)Math.Min(destination.Length, _image.Length - _readAt);
        _image.AsSpan((int)_readAt, n).CopyTo(destination);
        _readAt += n;
        return n;
    }

    protected override void WriteResumingData(ReadOnlySpan<byte> source)
    {
        if (source.Length > _image.Length - _writeAt)
            throw new VfioException(Errno.ENOMEM, "write migration data", "more data than the image holds");
        source.CopyTo(_image.AsSpan((int)_writeAt));
        _writeAt += source.Length;
    }

    protected override ulong EstimateStopCopySize() => (ulong)(_image.Length - Math.Max(0, _readAt));
}
