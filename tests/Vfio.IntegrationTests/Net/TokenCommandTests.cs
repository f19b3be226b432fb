using Vfio.Net;

namespace Vfio.IntegrationTests.Net;

/// <summary><c>vfio-mig token new</c> as a process: a private file, never overwritten, or the token on stdout.</summary>
public sealed class TokenCommandTests(ITestOutputHelper log) : IDisposable
{
    private static readonly TimeSpan s_exit = TimeSpan.FromSeconds(60);
    private readonly string _dir = Directory.CreateTempSubdirectory("vfio-token-cli-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public async Task TokenNew_Output_WritesA0600File_AndRefusesToOverwriteIt()
    {
        string path = Path.Combine(_dir, "token");
        using (var first = CliProcess.Start(null, ["token", "new", "--output", path], "token", log))
            Assert.Equal(0, await first.WaitForExitAsync(s_exit));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
        byte[] key = NetToken.ReadFile(path).Key.ToArray();

        using var second = CliProcess.Start(null, ["token", "new", "--output", path], "token", log);
        Assert.Equal(1, await second.WaitForExitAsync(s_exit));
        Assert.Contains("vfio-mig token new: error: EEXIST", second.StderrText, StringComparison.Ordinal);
        Assert.True(NetToken.ReadFile(path).Key.SequenceEqual(key));
    }

    [Fact]
    public async Task TokenNew_WithoutOutput_PrintsOneToken()
    {
        using var p = CliProcess.Start(null, ["token", "new"], "token", log);
        Assert.Equal(0, await p.WaitForExitAsync(s_exit));
        Assert.Single(p.Stdout);
        Assert.Equal(NetToken.KeyBytes, NetToken.Parse(p.Stdout[0]).Key.Length);
    }
}
