using System.Buffers.Binary;
using Vfio;
using Vfio.Device;
using Vfio.Migration;

namespace MinimalDevice;

/// <summary>
/// A device whose whole state is 16 32-bit registers. It migrates with STOP_COPY only: the stop-copy stream is
/// a 4-byte magic followed by the registers, and the destination refuses a stream that is short or foreign.
/// </summary>
internal sealed class RegisterFileDevice() : MigrationDevice(VfioMigrationFlags.StopCopy)
{
    private const uint Magic = 0x52454731; // "REG1": a version tag, so a future layout can be told apart
    private const int StreamLength = 4 + (4 * 16);

    private readonly uint[] _registers = new uint[16];
    private readonly byte[] _stream = new byte[StreamLength];
    private int _position;

    /// <summary>The registers, as the guest would see them.</summary>
    public Span<uint> Registers => _registers;

    // RUNNING > STOP > STOP_COPY: the device is stopped, so its state is fixed; serialize it once.
    protected override void OnStopToStopCopy()
    {
        BinaryPrimitives.WriteUInt32LittleEndian(_stream, Magic);
        for (int i = 0; i < _registers.Length; i++)
            BinaryPrimitives.WriteUInt32LittleEndian(_stream.AsSpan(4 + (4 * i)), _registers[i]);
        _position = 0;
    }

    // The engine reads until this returns 0 (the end of the stream).
    protected override int ReadSavingData(Span<byte> destination, VfioMigrationState state)
    {
        int n = Math.Min(destination.Length, StreamLength - _position);
        _stream.AsSpan(_position, n).CopyTo(destination);
        _position += n;
        return n;
    }

    protected override ulong EstimateStopCopySize() => (ulong)(StreamLength - _position);

    // STOP > RESUMING: the destination starts a new load.
    protected override void OnStopToResuming() => _position = 0;

    protected override void WriteResumingData(ReadOnlySpan<byte> source)
    {
        if (source.Length > StreamLength - _position)
            throw new VfioException(Errno.EINVAL, "load register file", "more data than the device's state");
        source.CopyTo(_stream.AsSpan(_position));
        _position += source.Length;
    }

    // RESUMING > STOP: validate and apply; an error here fails the migration and the source keeps running.
    protected override void OnResumingToStop()
    {
        if (_position != StreamLength || BinaryPrimitives.ReadUInt32LittleEndian(_stream) != Magic)
            throw new VfioException(Errno.EINVAL, "load register file", $"{_position} of {StreamLength} bytes, or not a register-file stream");
        for (int i = 0; i < _registers.Length; i++)
            _registers[i] = BinaryPrimitives.ReadUInt32LittleEndian(_stream.AsSpan(4 + (4 * i)));
    }
}
