namespace Vfio.Migration;

/// <summary>
/// Bytes of a migration data stream that a transport holds outside this process's memory (a kernel pipe filled
/// straight from a vfio-user socket). A chunk read from one device connection can be written to another without
/// its bytes ever being copied into, or out of, this process: where both ends are in one process (the engine's
/// in-process pipe in <c>migrate</c>) the bytes are relayed by the kernel alone. Any other consumer copies them out
/// with <see cref="CopyToAsync"/>. Single use: the bytes are gone once written or copied.
/// </summary>
internal abstract class DataChunk : IDisposable
{
    /// <summary>The chunk of no bytes: what a read that would have returned 0 returns.</summary>
    public static DataChunk Empty { get; } = new EmptyChunk();

    /// <summary>Bytes the chunk holds (0 only for <see cref="Empty"/>).</summary>
    public abstract int Length { get; }

    /// <summary>Moves the bytes into <paramref name="destination"/>, which holds exactly <see cref="Length"/> bytes.</summary>
    public abstract ValueTask CopyToAsync(Memory<byte> destination, CancellationToken cancellationToken = default);

    /// <summary>Lets the bytes go (whatever was not consumed is dropped).</summary>
    public abstract void Dispose();

    private sealed class EmptyChunk : DataChunk
    {
        public override int Length => 0;

        public override ValueTask CopyToAsync(Memory<byte> destination, CancellationToken cancellationToken = default) => ValueTask.CompletedTask;

        public override void Dispose()
        {
        }
    }
}
