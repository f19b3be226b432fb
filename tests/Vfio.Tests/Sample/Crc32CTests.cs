using CsCheck;
using Vfio.Tests.TestSupport;

namespace Vfio.Tests.Sample;

// The CRC-32C (Castagnoli) that seals every record of the sample stream (docs/sample-device.md).
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
    }

    [Fact]
    public void ThirtyTwoZeroBytes_GiveTheRfc3720Value()
        => Assert.Equal(0x8A9136AAu, Crc32C.Compute(new byte[32]));

    [Fact]
    public void HardwareAndPortablePaths_Agree_AndAppendChains_Property()
        => Gen.Byte.Array[0, 300].Select(Gen.Int[0, 300]).Sample((data, cut) =>
        {
            cut = Math.Min(cut, data.Length);
            uint whole = Crc32C.Compute(data);
            Assert.Equal(whole, ~Crc32C.AppendPortable(0xFFFFFFFFu, data));
            Assert.Equal(whole, ~Crc32C.Append(Crc32C.Append(0xFFFFFFFFu, data.AsSpan(0, cut)), data.AsSpan(cut)));
        }, iter: 500, threads: 1, seed: CsCheckSeeds.Stream);
}
