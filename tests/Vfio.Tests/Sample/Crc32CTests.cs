using CsCheck;
using Vfio.Tests.TestSupport;

namespace Vfio.Tests.Sample;

// The CRC-32C (Castagnoli) that seals every record of the sample stream (docs/sample-device.md), every
// engine stream frame and every network frame header.
public class Crc32CTests
{
    [Theory] // standard check values of CRC-32C (reflected 0x82F63B78, init and xorout 0xFFFFFFFF)
    [InlineData("", 0x00000000u)]
    [InlineData("a", 0xC1D04330u)]
    [InlineData("123456789", 0xE3069283u)]
    [InlineData("The quick brown fox jumps over the lazy dog", 0x22620404u)]
    public void Compute_MatchesKnownCheckValues(string text, uint crc)
    {
        var bytes = System.Text.Encoding.ASCII.GetBytes(text);
        Assert.Equal(crc, Crc32C.Compute(bytes));
        Assert.Equal(crc, ~Crc32C.AppendPortable(0xFFFFFFFFu, bytes));
        Assert.Equal(crc, ~Crc32C.AppendSerial(0xFFFFFFFFu, bytes));
    }

    [Fact]
    public void ThirtyTwoZeroBytes_GiveTheRfc3720Value()
        => Assert.Equal(0x8A9136AAu, Crc32C.Compute(new byte[32]));

    [Fact] // RFC 3720 B.4: 32 bytes of 0xFF, and 32 bytes counting up
    public void Rfc3720Vectors_Match()
    {
        Assert.Equal(0x62A8AB43u, Crc32C.Compute(Enumerable.Repeat((byte)0xFF, 32).ToArray()));
        Assert.Equal(0x46DD794Eu, Crc32C.Compute(Enumerable.Range(0, 32).Select(i => (byte)i).ToArray()));
    }

    [Fact] // every length across the serial tail and one to five short interleaved triples, at eight alignments
    public void EveryLengthTo4200_AtEveryAlignment_MatchesThePortableTable()
    {
        var data = new byte[4200 + 8];
        new Random(7).NextBytes(data);
        for (int align = 0; align < 8; align++)
        {
            for (int length = 0; length <= 4200; length++)
            {
                var span = data.AsSpan(align, length);
                uint portable = Crc32C.AppendPortable(0xFFFFFFFFu, span);
                Assert.True(portable == Crc32C.Append(0xFFFFFFFFu, span), $"length {length}, alignment {align}");
            }
        }
    }

    [Theory] // long triples (12 KiB), their boundaries, a megabyte and odd sizes, at two alignments
    [InlineData(12287)]
    [InlineData(12288)]
    [InlineData(12289)]
    [InlineData(3 * 4096 + 3 * 256)]
    [InlineData(2 * 12288 + 767)]
    [InlineData(1 << 20)]
    [InlineData((1 << 20) + 13)]
    [InlineData(3_000_001)]
    public void LargeRandomBuffers_MatchThePortableTableAndOneSerialChain(int length)
    {
        var data = new byte[length + 3];
        new Random(length).NextBytes(data);
        foreach (int align in new[] { 0, 3 })
        {
            var span = data.AsSpan(align, length);
            uint expected = Crc32C.AppendPortable(0x12345678u, span);
            Assert.Equal(expected, Crc32C.Append(0x12345678u, span));
            Assert.Equal(expected, Crc32C.AppendSerial(0x12345678u, span));
        }
    }

    [Fact]
    public void AppendChains_EqualOneShot_AcrossLaneBoundaries()
    {
        var data = new byte[100_000];
        new Random(11).NextBytes(data);
        uint whole = Crc32C.Compute(data);
        foreach (int cut in new[] { 0, 1, 767, 768, 4096, 12287, 12288, 12289, 50_000, 99_999, 100_000 })
            Assert.Equal(whole, ~Crc32C.Append(Crc32C.Append(0xFFFFFFFFu, data.AsSpan(0, cut)), data.AsSpan(cut)));
        uint chained = 0xFFFFFFFFu;
        for (int at = 0; at < data.Length; at += 4099)
            chained = Crc32C.Append(chained, data.AsSpan(at, Math.Min(4099, data.Length - at)));
        Assert.Equal(whole, ~chained);
    }

    [Fact]
    public void HardwareAndPortablePaths_Agree_AndAppendChains_Property()
        => Gen.Byte.Array[0, 30_000].Select(Gen.Int[0, 30_000], Gen.UInt).Sample((data, cut, seed) =>
        {
            cut = Math.Min(cut, data.Length);
            uint whole = Crc32C.Compute(data);
            Assert.Equal(whole, ~Crc32C.AppendPortable(0xFFFFFFFFu, data));
            Assert.Equal(whole, ~Crc32C.Append(Crc32C.Append(0xFFFFFFFFu, data.AsSpan(0, cut)), data.AsSpan(cut)));
            Assert.Equal(Crc32C.AppendPortable(seed, data), Crc32C.Append(seed, data));
        }, iter: 300, threads: 1, seed: CsCheckSeeds.Stream);
}
