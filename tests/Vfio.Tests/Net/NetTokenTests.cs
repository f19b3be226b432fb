using Vfio.Net;

namespace Vfio.Tests.Net;

/// <summary>Tokens are generated keys (≥ 128 bits) with a recognisable, checked text form; files must be private.</summary>
public sealed class NetTokenTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("vfio-token-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void New_Is256RandomBits_AndRoundTripsThroughItsText()
    {
        var a = NetToken.New();
        var b = NetToken.New();
        Assert.Equal(NetToken.KeyBytes, a.Key.Length);
        Assert.False(a.Key.SequenceEqual(b.Key));
        string text = a.Format();
        Assert.StartsWith(NetToken.Prefix, text, StringComparison.Ordinal);
        Assert.Matches("^vfiomig1_[0-9a-f]{64}_[0-9a-f]{8}$", text);
        Assert.True(NetToken.Parse(text + "\n").Key.SequenceEqual(a.Key));
        Assert.DoesNotContain(text[9..30], a.ToString(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("hunter2")]
    [InlineData("x")]
    [InlineData("correct horse battery staple")]
    public void Passwords_AreRefused_WithAPointerToTokenNew(string password)
    {
        var e = Assert.Throws<VfioException>(() => NetToken.Parse(password));
        Assert.Equal(Errno.EINVAL, e.Errno);
        Assert.Contains("vfio-mig token new", e.Message, StringComparison.Ordinal);
        Assert.Contains("guessed", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void OneMistypedDigit_FailsTheCheck()
    {
        string text = NetToken.New().Format();
        char c = text[20] == 'a' ? 'b' : 'a';
        var e = Assert.Throws<VfioException>(() => NetToken.Parse(text[..20] + c + text[21..]));
        Assert.Contains("check digits do not match", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void TruncatedOrShortKeys_AreRefused()
    {
        string text = NetToken.New().Format();
        Assert.Contains("malformed", Assert.Throws<VfioException>(() => NetToken.Parse(text[..40])).Message, StringComparison.Ordinal);
        Assert.Contains("malformed", Assert.Throws<VfioException>(() => NetToken.Parse("vfiomig1_00_00000000")).Message, StringComparison.Ordinal);
        var e = Assert.Throws<VfioException>(() => NetToken.FromKey([1]));
        Assert.Contains("at least 128 bits", e.Message, StringComparison.Ordinal);
        Assert.Equal(16, NetToken.FromKey(new byte[16]).Key.Length);
    }

    [Fact]
    public void WriteNewFile_IsMode0600_AndNeverOverwrites()
    {
        string path = Path.Combine(_dir, "t");
        var token = NetToken.New();
        token.WriteNewFile(path);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
        Assert.True(NetToken.ReadFile(path).Key.SequenceEqual(token.Key));
        var e = Assert.Throws<VfioException>(() => NetToken.New().WriteNewFile(path));
        Assert.Equal(Errno.EEXIST, e.Errno);
        Assert.True(NetToken.ReadFile(path).Key.SequenceEqual(token.Key));
    }

    [Theory]
    [InlineData(UnixFileMode.GroupRead)]
    [InlineData(UnixFileMode.OtherRead)]
    [InlineData(UnixFileMode.GroupWrite)]
    public void ReadFile_OpenToOthers_IsRefusedWithTheChmodFix(UnixFileMode extra)
    {
        string path = Path.Combine(_dir, "open");
        NetToken.New().WriteNewFile(path);
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | extra);
        var e = Assert.Throws<VfioException>(() => NetToken.ReadFile(path));
        Assert.Equal(Errno.EACCES, e.Errno);
        Assert.Contains($"chmod 600 {path}", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ReadFile_Password_Missing_Oversized_SayWhat()
    {
        string path = Path.Combine(_dir, "pw");
        File.WriteAllText(path, "hunter2\n");
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        Assert.Contains("vfio-mig token new", Assert.Throws<VfioException>(() => NetToken.ReadFile(path)).Message, StringComparison.Ordinal);
        File.WriteAllBytes(path, new byte[5000]);
        Assert.Equal(Errno.EINVAL, Assert.Throws<VfioException>(() => NetToken.ReadFile(path)).Errno);
        Assert.Equal(Errno.ENOENT, Assert.Throws<VfioException>(() => NetToken.ReadFile(Path.Combine(_dir, "none"))).Errno);
    }
}
