using System.Runtime.InteropServices;
using System.Security.Cryptography;

namespace Vfio.Sample;

// The device's state: one block of native memory, off the GC heap, so a multi-GiB device adds nothing
// for the collector to scan or compact and the process's managed heap stays the size of the engine's
// buffers. Callers serialise access (the device's memory lock) and dispose it under that lock; a
// finalizer frees a device that was never disposed.
internal sealed unsafe class SampleMemory : IDisposable
{
    private const int HashChunk = 1 << 20;
    private byte* _base;

    public SampleMemory(long size, int pageSize, int seed)
    {
        if (pageSize < 512 || pageSize > SampleStreamFormat.MaxPageSize || (pageSize & (pageSize - 1)) != 0)
            throw new ArgumentOutOfRangeException(nameof(pageSize), pageSize, "page size must be a power of two from 512 to 1 MiB");
        if (size <= 0 || size % pageSize != 0)
            throw new ArgumentOutOfRangeException(nameof(size), size, $"size must be a positive multiple of the page size ({pageSize})");
        Size = size;
        PageSize = pageSize;
        PageCount = size / pageSize;
        _base = (byte*)NativeMemory.AlignedAlloc((nuint)size, 4096);
        GC.AddMemoryPressure(size);
        ulong x = (ulong)seed * 0x9E3779B97F4A7C15UL + 0x2545F4914F6CDD1DUL;
        var words = (ulong*)_base;
        long count = size / 8;
        for (long w = 0; w < count; w++)
        {
            // xorshift64: cheap, deterministic content so two devices with one seed start equal.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            words[w] = x;
        }
    }

    ~SampleMemory() => Free();

    public long Size { get; }

    public int PageSize { get; }

    public long PageCount { get; }

    public Span<byte> Page(long index) => new(At(index * PageSize, PageSize), PageSize);

    public Span<byte> Slice(long offset, int length) => new(At(offset, length), length);

    // The bytes as memory a transport may send from after the call returns (zero-copy stop-copy data): valid while
    // this block lives; the caller keeps the bytes unchanged until they are sent.
    public ReadOnlyMemory<byte> Share(long offset, int length) => new NativeSlice(At(offset, length), length).Memory;

    public void Read(long offset, Span<byte> destination) => new ReadOnlySpan<byte>(At(offset, destination.Length), destination.Length).CopyTo(destination);

    public void Write(long offset, ReadOnlySpan<byte> source) => source.CopyTo(new Span<byte>(At(offset, source.Length), source.Length));

    public byte[] Sha256()
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        for (long offset = 0; offset < Size; offset += HashChunk)
        {
            int n = (int)Math.Min(HashChunk, Size - offset);
            hash.AppendData(new ReadOnlySpan<byte>(At(offset, n), n));
        }
        return hash.GetHashAndReset();
    }

    public void Dispose()
    {
        Free();
        GC.SuppressFinalize(this);
    }

    private byte* At(long offset, int length)
    {
        ObjectDisposedException.ThrowIf(_base is null, this);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        if (offset < 0 || offset > Size - length)
            throw new ArgumentOutOfRangeException(nameof(offset), offset, $"{length} bytes at this offset lie outside the {Size}-byte state");
        return _base + offset;
    }

    private void Free()
    {
        if (_base is null)
            return;
        NativeMemory.AlignedFree(_base);
        _base = null;
        GC.RemoveMemoryPressure(Size);
    }
}

// A Memory<byte> over native bytes that outlive it (the device's state block).
internal sealed unsafe class NativeSlice(byte* start, int length) : System.Buffers.MemoryManager<byte>
{
    public override Span<byte> GetSpan() => new(start, length);

    public override System.Buffers.MemoryHandle Pin(int elementIndex = 0) => new(start + elementIndex);

    public override void Unpin()
    {
    }

    protected override void Dispose(bool disposing)
    {
    }
}
