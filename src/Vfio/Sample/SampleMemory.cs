using System.Security.Cryptography;

namespace Vfio.Sample;

// The device's state: pages stored in 1 MiB chunks so several GiB need no single huge array.
internal sealed class SampleMemory
{
    private const int ChunkSize = 1 << 20;
    private readonly byte[][] _chunks;

    public SampleMemory(long size, int pageSize, int seed)
    {
        if (pageSize < 512 || pageSize > SampleStreamFormat.MaxPageSize || (pageSize & (pageSize - 1)) != 0 || ChunkSize % pageSize != 0)
            throw new ArgumentOutOfRangeException(nameof(pageSize), pageSize, "page size must be a power of two from 512 to 1 MiB");
        if (size <= 0 || size % pageSize != 0)
            throw new ArgumentOutOfRangeException(nameof(size), size, $"size must be a positive multiple of the page size ({pageSize})");
        Size = size;
        PageSize = pageSize;
        PageCount = size / pageSize;
        _chunks = new byte[(size + ChunkSize - 1) / ChunkSize][];
        ulong x = (ulong)seed * 0x9E3779B97F4A7C15UL + 0x2545F4914F6CDD1DUL;
        for (int i = 0; i < _chunks.Length; i++)
        {
            var chunk = new byte[(int)Math.Min(ChunkSize, size - ((long)i * ChunkSize))];
            var words = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ulong>(chunk.AsSpan());
            for (int w = 0; w < words.Length; w++)
            {
                // xorshift64: cheap, deterministic content so two devices with one seed start equal.
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                words[w] = x;
            }
            _chunks[i] = chunk;
        }
    }

    public long Size { get; }

    public int PageSize { get; }

    public long PageCount { get; }

    public Span<byte> Page(long index)
    {
        long offset = index * PageSize;
        return _chunks[offset / ChunkSize].AsSpan((int)(offset % ChunkSize), PageSize);
    }

    public void Read(long offset, Span<byte> destination)
    {
        while (!destination.IsEmpty)
        {
            var src = _chunks[offset / ChunkSize].AsSpan((int)(offset % ChunkSize));
            int n = Math.Min(src.Length, destination.Length);
            src[..n].CopyTo(destination);
            destination = destination[n..];
            offset += n;
        }
    }

    public void Write(long offset, ReadOnlySpan<byte> source)
    {
        while (!source.IsEmpty)
        {
            var dst = _chunks[offset / ChunkSize].AsSpan((int)(offset % ChunkSize));
            int n = Math.Min(dst.Length, source.Length);
            source[..n].CopyTo(dst);
            source = source[n..];
            offset += n;
        }
    }

    public byte[] Sha256()
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var chunk in _chunks)
            hash.AppendData(chunk);
        return hash.GetHashAndReset();
    }
}
