using Vfio.Cli;

namespace Vfio.Tests.Cli;

/// <summary>Sizes follow QEMU: binary suffixes; SI spellings are refused with an explanation.</summary>
public class UnitsTests
{
    [Theory]
    [InlineData("4096", 4096L)]
    [InlineData("64M", 64L << 20)]
    [InlineData("64MiB", 64L << 20)]
    [InlineData("64mib", 64L << 20)]
    [InlineData("1.5GiB", 3L << 29)]
    [InlineData("4K", 4096L)]
    [InlineData("2T", 2L << 40)]
    [InlineData("512B", 512L)]
    public void Sizes_are_binary(string text, long bytes) => Assert.Equal(bytes, Units.ParseBytes(text, "size"));

    [Theory]
    [InlineData("64MB")]
    [InlineData("1GB")]
    [InlineData("4kb")]
    public void SI_suffixes_are_refused_with_the_binary_spelling(string text)
    {
        var e = Assert.Throws<VfioException>(() => Units.ParseBytes(text, "size"));
        Assert.Equal(Errno.EINVAL, e.Errno);
        Assert.Contains("binary as in QEMU", e.Message, StringComparison.Ordinal);
        Assert.Contains("iB", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("")]
    [InlineData("-1")]
    [InlineData("0.3K")]
    [InlineData("1e3")]
    [InlineData("lots")]
    [InlineData("99999999T")]
    public void Other_text_is_not_a_size(string text)
        => Assert.Equal(Errno.EINVAL, Assert.Throws<VfioException>(() => Units.ParseBytes(text, "size")).Errno);

    [Theory]
    [InlineData("0x1")]
    [InlineData("0x3")]
    [InlineData("0x5")]
    [InlineData("7")]
    public void Defined_caps_parse(string text) => Assert.True(Units.IsDefined(Units.ParseCaps(text)));

    [Theory]
    [InlineData("0x0")]
    [InlineData("0x2")]
    [InlineData("0x9")]
    [InlineData("0x8")]
    [InlineData("seven")]
    public void Other_caps_are_refused(string text)
        => Assert.Equal(Errno.EINVAL, Assert.Throws<VfioException>(() => Units.ParseCaps(text)).Errno);

    [Theory]
    [InlineData(4096L, "4KiB")]
    [InlineData(64L << 20, "64MiB")]
    [InlineData(1L << 30, "1GiB")]
    [InlineData(1000L, "1000")]
    public void Exact_format_parses_back(long bytes, string text)
    {
        Assert.Equal(text, Units.FormatExact(bytes));
        Assert.Equal(bytes, Units.ParseBytes(text, "size"));
    }

    [Fact]
    public void Sample_keys_are_checked_like_the_options()
    {
        Assert.Equal(Errno.EINVAL, Assert.Throws<VfioException>(() => DeviceAddress.Parse("sample:size=4MB")).Errno);
        Assert.Equal(Errno.EINVAL, Assert.Throws<VfioException>(() => DeviceAddress.Parse("sample:size=4097")).Errno);
        Assert.Equal(Errno.EINVAL, Assert.Throws<VfioException>(() => DeviceAddress.Parse("sample:caps=0x2")).Errno);
        Assert.Equal(Errno.EINVAL, Assert.Throws<VfioException>(() => DeviceAddress.Parse("sample:seed=x")).Errno);
        Assert.Equal(4L << 20, DeviceAddress.ParseSampleOptions("size=4M,caps=0x5,seed=-3").SizeBytes);
        Assert.Equal(1L << 20, DeviceAddress.ParseSampleOptions("reinit-after=1MiB").ReinitAfterBytes);
        Assert.Equal(Errno.EINVAL, Assert.Throws<VfioException>(() => DeviceAddress.Parse("sample:reinit-after=0")).Errno);
    }
}
