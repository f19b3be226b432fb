using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

namespace Vfio;

/// <summary>
/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) with the hardware instruction when present
/// (SSE4.2 <c>crc32</c> on x64, the ARMv8 CRC32 extension on Arm64), else a table.
/// </summary>
/// <remarks>
/// One <c>crc32</c> instruction depends on the result of the previous one, so a single chain runs at the
/// instruction's latency (≈ 3 cycles per 8 bytes). Larger inputs are cut into three adjacent lanes of
/// equal length that are hashed as three independent chains, which keeps the unit busy every cycle.
/// The chains are then joined with the linearity of the CRC register: running a state <c>x</c> over
/// <c>n</c> zero bytes is a fixed linear map <c>Z_n(x)</c> (a 32×32 bit matrix), so for lanes A, B, C
/// of <c>n</c> bytes each, <c>R(s, A‖B‖C) = Z_2n(R(s, A)) ⊕ Z_n(R(0, B)) ⊕ R(0, C)</c>. Each
/// <c>Z_n</c> is applied as four byte-indexed table lookups; the tables are built once for the two lane
/// lengths used.
/// </remarks>
public static class Crc32C
{
    // Bytes per lane. Inputs of at least three long lanes run long triples, then short triples, then
    // one serial chain for the tail (fewer than three short lanes).
    private const int LongLane = 4096;
    private const int ShortLane = 256;

    private static readonly uint[] s_table = BuildTable();

    // Z_n for n = lane and n = 2 × lane, four 256-entry tables each (see ApplyShift).
    private static readonly uint[] s_longShift = BuildLaneShifts(LongLane);
    private static readonly uint[] s_shortShift = BuildLaneShifts(ShortLane);

    private static bool HasHardware => Sse42.X64.IsSupported || Crc32.Arm64.IsSupported;

    /// <summary>The CRC-32C of <paramref name="data"/> (initial value all ones, final xor all ones).</summary>
    public static uint Compute(ReadOnlySpan<byte> data) => ~Append(0xFFFFFFFFu, data);

    /// <summary>Continues a raw (non-finalised) CRC over more data; finalise with <c>~crc</c>.</summary>
    public static uint Append(uint crc, ReadOnlySpan<byte> data)
        => HasHardware ? AppendHardware(crc, data) : AppendPortable(crc, data);

    // The table-driven form, used when no CRC instruction exists; internal so tests can check it on any machine.
    internal static uint AppendPortable(uint crc, ReadOnlySpan<byte> data)
    {
        foreach (byte b in data)
            crc = s_table[(crc ^ b) & 0xFF] ^ (crc >> 8);
        return crc;
    }

    // One serial chain of the CRC instruction; internal so tests can compare the interleaved form with it.
    internal static uint AppendSerial(uint crc, ReadOnlySpan<byte> data)
    {
        if (!HasHardware)
            return AppendPortable(crc, data);
        ref byte p = ref MemoryMarshal.GetReference(data);
        return Serial(crc, ref p, (nuint)data.Length);
    }

    // Fully optimised from the first call: unoptimised tiers would not inline Step and would run several times
    // slower on the first gigabytes (a migration is often over before tiering would catch up).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static uint AppendHardware(uint crc, ReadOnlySpan<byte> data)
    {
        ref byte p = ref MemoryMarshal.GetReference(data);
        nuint left = (nuint)data.Length;
        while (left >= 3 * LongLane)
        {
            crc = ThreeLanes(crc, ref p, LongLane, s_longShift);
            p = ref Unsafe.Add(ref p, 3 * LongLane);
            left -= 3 * LongLane;
        }
        while (left >= 3 * ShortLane)
        {
            crc = ThreeLanes(crc, ref p, ShortLane, s_shortShift);
            p = ref Unsafe.Add(ref p, 3 * ShortLane);
            left -= 3 * ShortLane;
        }
        return Serial(crc, ref p, left);
    }

    // Hashes lanes [0, lane), [lane, 2 lane), [2 lane, 3 lane) as three chains and joins them.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static uint ThreeLanes(uint crc, ref byte p, int lane, uint[] shifts)
    {
        ulong a = crc, b = 0, c = 0;
        ref byte pb = ref Unsafe.Add(ref p, lane);
        ref byte pc = ref Unsafe.Add(ref p, 2 * lane);
        for (nint i = 0; i < lane; i += 8)
        {
            a = Step(a, Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref p, i)));
            b = Step(b, Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref pb, i)));
            c = Step(c, Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref pc, i)));
        }
        return ApplyShift(shifts, 1024, (uint)a) ^ ApplyShift(shifts, 0, (uint)b) ^ (uint)c;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static uint Serial(uint crc, ref byte p, nuint length)
    {
        ulong c = crc;
        nuint i = 0;
        for (; i + 8 <= length; i += 8)
            c = Step(c, Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref p, i)));
        uint r = (uint)c;
        for (; i < length; i++)
            r = StepByte(r, Unsafe.Add(ref p, i));
        return r;
    }

    // The CRC instruction over 8 little-endian bytes (both supported architectures are little-endian).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong Step(ulong crc, ulong data)
        => Sse42.X64.IsSupported ? Sse42.X64.Crc32(crc, data) : Crc32.Arm64.ComputeCrc32C((uint)crc, data);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static uint StepByte(uint crc, byte data)
        => Sse42.X64.IsSupported ? Sse42.Crc32(crc, data) : Crc32.ComputeCrc32C(crc, data);

    // Applies the linear map stored as four byte tables at shifts[offset..offset + 1024].
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static uint ApplyShift(uint[] shifts, int offset, uint x)
        => shifts[offset + (int)(x & 0xFF)]
            ^ shifts[offset + 256 + (int)((x >> 8) & 0xFF)]
            ^ shifts[offset + 512 + (int)((x >> 16) & 0xFF)]
            ^ shifts[offset + 768 + (int)(x >> 24)];

    /// <summary>Z_lane at [0, 1024) and Z_(2 lane) at [1024, 2048).</summary>
    private static uint[] BuildLaneShifts(int lane)
    {
        // The images of the 32 unit vectors under Z_lane: a register with one bit set, run over lane zeros.
        var once = new uint[32];
        Span<byte> zeros = stackalloc byte[lane];
        zeros.Clear();
        for (int bit = 0; bit < 32; bit++)
            once[bit] = AppendPortable(1u << bit, zeros);
        var shifts = new uint[2048];
        FillByteTables(shifts.AsSpan(0, 1024), once);
        // Z_(2 lane) = Z_lane ∘ Z_lane.
        var twice = new uint[32];
        for (int bit = 0; bit < 32; bit++)
            twice[bit] = ApplyShift(shifts, 0, once[bit]);
        FillByteTables(shifts.AsSpan(1024, 1024), twice);
        return shifts;
    }

    // tables[256 k + v] = the map applied to v << 8k, from the images of the unit vectors.
    private static void FillByteTables(Span<uint> tables, uint[] unitImages)
    {
        for (int k = 0; k < 4; k++)
        {
            var table = tables.Slice(256 * k, 256);
            table[0] = 0;
            for (int v = 1; v < 256; v++)
            {
                int low = System.Numerics.BitOperations.TrailingZeroCount(v);
                table[v] = table[v & (v - 1)] ^ unitImages[(8 * k) + low];
            }
        }
    }

    private static uint[] BuildTable()
    {
        var table = new uint[256];
        for (uint i = 0; i < 256; i++)
        {
            uint c = i;
            for (int k = 0; k < 8; k++)
                c = (c & 1) != 0 ? 0x82F63B78u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
        return table;
    }
}
