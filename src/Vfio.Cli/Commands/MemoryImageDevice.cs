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

    public MemoryImageDevice(long size, int seed = 1)
        : base(VfioMigrationFlags.StopCopy)
    {
        _image = GC.AllocateUninitializedArray<byte>(checked((int)size));
        Fill(_image, seed);
    }

    /// <summary>The largest image one device can hold (one managed array).</summary>
    public static long MaxSize => Array.MaxLength;

    public long Size => _image.Length;

    /// <summary>The device state, for comparing a destination with its source.</summary>
    public ReadOnlySpan<byte> Image => _image;

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

    // The image is the stream and cannot change while the device is stopped: hand it out without a copy.
    protected override ReadOnlyMemory<byte>? TakeStopCopyData(int maxLength)
    {
        int n = (int)Math.Min(maxLength, _image.Length - _readAt);
        var data = _image.AsMemory((int)_readAt, n);
        _readAt += n;
        return data;
    }

    protected override void WriteResumingData(ReadOnlySpan<byte> source)
    {
        if (source.Length > _image.Length - _writeAt)
            throw new VfioException(Errno.ENOMEM, "write migration data", "more data than the image holds");
        source.CopyTo(_image.AsSpan((int)_writeAt));
        _writeAt += source.Length;
    }

    // Deterministic pseudo-random bytes (SplitMix64): a seeded Random takes seconds per GiB, this a fraction of one.
    private static void Fill(Span<byte> image, int seed)
    {
        ulong state = (ulong)seed * 0x9E3779B97F4A7C15UL;
        var words = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ulong>(image);
        for (int i = 0; i < words.Length; i++)
        {
            ulong z = state += 0x9E3779B97F4A7C15UL;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            words[i] = z ^ (z >> 31);
        }
        for (int i = words.Length * sizeof(ulong); i < image.Length; i++)
            image[i] = (byte)(i * 31 + seed);
    }

    protected override ulong EstimateStopCopySize() => (ulong)(_image.Length - Math.Max(0, _readAt));
}
