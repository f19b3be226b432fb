using Vfio.Cli;

namespace Vfio.Tests.Cli;

/// <summary><c>migrate --source-write</c> values (spec §11 step 4: a libvfio-user sample's BAR0 time).</summary>
public class RegionWriteTests
{
    [Fact]
    public void U64_is_eight_little_endian_bytes()
    {
        var w = RegionWrite.Parse("0:0:u64=1800000000");
        Assert.Equal(0u, w.Region);
        Assert.Equal(0ul, w.Offset);
        Assert.Equal(BitConverter.GetBytes(1800000000L), w.Data);
    }

    [Fact]
    public void Hex_bytes_at_a_hex_offset()
    {
        var w = RegionWrite.Parse("1:0x10:00ff10");
        Assert.Equal(1u, w.Region);
        Assert.Equal(16ul, w.Offset);
        Assert.Equal(new byte[] { 0x00, 0xff, 0x10 }, w.Data);
    }

    [Theory]
    [InlineData("0:0")]
    [InlineData("x:0:00")]
    [InlineData("0:0:0")]
    [InlineData("0:0:zz")]
    [InlineData("0:0:u64=soon")]
    [InlineData("0:-1:00")]
    public void Malformed_values_are_EINVAL(string text)
        => Assert.Equal(Errno.EINVAL, Assert.Throws<VfioException>(() => RegionWrite.Parse(text)).Errno);
}
