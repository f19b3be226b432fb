using System.Buffers.Binary;
using System.Runtime.Intrinsics.X86;

namespace Vfio;

/// <summary>CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) with the SSE4.2 instruction when present.</summary>
public static class Crc32C
{
    private static readonly uint[] s_table = BuildTable();

    /// <summary>The CRC-32C of <paramref name="data"/> (initial value all ones, final xor all ones).</summary>
    public static uint Compute(ReadOnlySpan<byte> data) => ~Append(0xFFFFFFFFu, data);

    /// <summary>Continues a raw (non-finalised) CRC over more data; finalise with <c>~crc</c>.</summary>
    public static uint Append(uint crc, ReadOnlySpan<byte> data)
    {
        if (Sse42.X64.IsSupported)
        {
            ulong c = crc;
            while (data.Length >= 8)
            {
                c = Sse42.X64.Crc32(c, BinaryPrimitives.ReadUInt64LittleEndian(data));
                data = data[8..];
            }
            crc = (uint)c;
            foreach (byte b in data)
                crc = Sse42.Crc32(crc, b);
            return crc;
        }
        return AppendPortable(crc, data);
    }

    // The table-driven form, used when SSE4.2 is absent; internal so tests can check it on any machine.
    internal static uint AppendPortable(uint crc, ReadOnlySpan<byte> data)
    {
        foreach (byte b in data)
            crc = s_table[(crc ^ b) & 0xFF] ^ (crc >> 8);
        return crc;
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
