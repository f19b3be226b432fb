using BenchmarkDotNet.Attributes;

namespace Vfio.Benchmarks;

/// <summary>CRC-32C over one page and over one maximal data frame.</summary>
[MemoryDiagnoser]
public class Crc32CBenchmarks
{
    private byte[] _data = [];

    /// <summary>Bytes hashed per operation.</summary>
    [Params(4 * 1024, 1024 * 1024)]
    public int Size { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _data = new byte[Size];
        new Random(1).NextBytes(_data);
    }

    [Benchmark]
    public uint Compute() => Crc32C.Compute(_data);
}
