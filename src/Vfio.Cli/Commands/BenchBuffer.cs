namespace Vfio.Cli.Commands;

/// <summary>
/// A large buffer for the raw-copy references of <c>bench tcp</c>, in 64 MiB pieces so it may exceed one array's
/// limit. Every page is written when it is made, so a timed copy never pays for first-touch page faults.
/// </summary>
internal sealed class BenchBuffer
{
    private const int PieceSize = 64 << 20;
    private readonly byte[][] _pieces;

    /// <summary>Makes <paramref name="length"/> bytes of random data (<paramref name="random"/>) or of a fill byte.</summary>
    public BenchBuffer(long length, bool random)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(length, 1);
        Length = length;
        _pieces = new byte[(int)((length + PieceSize - 1) / PieceSize)][];
        for (int i = 0; i < _pieces.Length; i++)
        {
            var piece = GC.AllocateUninitializedArray<byte>((int)Math.Min(PieceSize, length - ((long)i * PieceSize)));
            if (random)
                Random.Shared.NextBytes(piece);
            else
                piece.AsSpan().Fill(0x5A);
            _pieces[i] = piece;
        }
    }

    /// <summary>Total bytes.</summary>
    public long Length { get; }

    /// <summary>
    /// The contiguous bytes at <paramref name="offset"/> modulo <see cref="Length"/> (a smaller buffer is reused
    /// from its start), at most <paramref name="max"/> of them.
    /// </summary>
    public Memory<byte> At(long offset, long max)
    {
        offset %= Length;
        var piece = _pieces[(int)(offset / PieceSize)];
        int start = (int)(offset % PieceSize);
        return piece.AsMemory(start, (int)Math.Min(max, piece.Length - start));
    }
}
