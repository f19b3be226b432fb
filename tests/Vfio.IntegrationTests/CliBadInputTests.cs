using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;
using Vfio.User.Client;

namespace Vfio.IntegrationTests;

/// <summary>
/// Every command fed bad input (units, caps, addresses, missing files, dead and busy peers, the same source and
/// destination): one error line <c>vfio-mig CMD: error: ERRNO: words</c>, only hint lines after it, the documented
/// exit code (docs/cli/conventions.md), no stack trace and no hang.
/// </summary>
public sealed partial class CliBadInputTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(60);

    [GeneratedRegex(@"^vfio-mig( [a-z-]+){0,2}: error: E[A-Z0-9]+: \S")]
    private static partial Regex ErrorLine();

    /// <summary>Runs the CLI, asserts the one-line error shape and returns (exit code, stderr).</summary>
    private static async Task<(int Exit, string Error)> FailAsync(string command, int expectedExit, params string[] args)
    {
        using var cli = new TestSupport.CliProcess(args);
        int exit = await cli.WaitOrExplainAsync(Deadline);
        string error = cli.Error;
        var lines = error.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(exit == expectedExit, $"vfio-mig {string.Join(' ', args)}: exit {exit}, expected {expectedExit}; stderr: {error} stdout: {cli.Output}");
        Assert.NotEmpty(lines);
        Assert.StartsWith($"vfio-mig{(command.Length == 0 ? "" : " " + command)}: error: ", lines[0], StringComparison.Ordinal);
        Assert.Matches(ErrorLine(), lines[0]);
        Assert.All(lines.Skip(1), l => Assert.StartsWith("  hint: ", l, StringComparison.Ordinal));
        Assert.DoesNotContain("   at ", error, StringComparison.Ordinal);
        Assert.DoesNotContain("Exception", error, StringComparison.Ordinal);
        if (expectedExit == 2)
            Assert.Empty(cli.Output); // usage errors: nothing was done, no help dumped on stdout
        return (exit, error);
    }

    [Theory]
    // units
    [InlineData("demo", "EINVAL", "demo", "--size", "64MB")]
    [InlineData("demo", "EINVAL", "demo", "--size", "1000")]
    [InlineData("demo", "EINVAL", "demo", "--size", "-4KiB")]
    [InlineData("demo", "EINVAL", "demo", "--dirty-rate", "fast")]
    [InlineData("demo", "EINVAL", "demo", "--downtime-limit", "300")]
    [InlineData("demo", "EINVAL", "demo", "--devices", "0x")]
    [InlineData("demo", "EINVAL", "demo", "--devices", "65")]
    [InlineData("demo", "EINVAL", "demo", "--max-rounds", "0")]
    [InlineData("serve", "EINVAL", "serve", "--socket", "x.sock", "--size", "1.5KiB")]
    [InlineData("bench tcp", "EINVAL", "bench", "tcp", "--size", "1KiB")]
    [InlineData("bench tcp", "EINVAL", "bench", "tcp", "--channels", "0")]
    [InlineData("bench vfio-user", "EINVAL", "bench", "vfio-user", "--max-xfer", "1GiB")]
    [InlineData("receive", "EINVAL", "receive", "--listen", "127.0.0.1:0", "--into", "sample:", "--max-queued", "1KiB")]
    // caps
    [InlineData("demo", "EINVAL", "demo", "--caps", "0x2")]
    [InlineData("serve", "EINVAL", "serve", "--socket", "x.sock", "--caps", "0x2")]
    [InlineData("path", "EINVAL", "path", "RUNNING", "STOP", "--caps", "0x9")]
    [InlineData("path", "EINVAL", "path", "RUNNING", "NOWHERE")]
    [InlineData("path", "EINVAL", "path", "RUNNING")]
    [InlineData("demo", "EINVAL", "demo", "--devices", "2", "--caps", "0x5")]
    // sample: keys, validated like the options
    [InlineData("check", "EINVAL", "check", "sample:size=4MB")]
    [InlineData("check", "EINVAL", "check", "sample:size=4097")]
    [InlineData("check", "EINVAL", "check", "sample:caps=0x2")]
    [InlineData("check", "EINVAL", "check", "sample:seed=abc")]
    [InlineData("check", "EINVAL", "check", "sample:colour=red")]
    [InlineData("info", "EINVAL", "info", "sample:fault=nope")]
    // addresses
    [InlineData("info", "EINVAL", "info")]
    [InlineData("info", "EINVAL", "info", "pci:0000:00:01.0")]
    [InlineData("migrate", "EINVAL", "migrate", "--from", "tcp://127.0.0.1:1", "--to", "sample:")]
    [InlineData("migrate", "EINVAL", "migrate", "--from", "unix:", "--to", "sample:")]
    [InlineData("migrate", "EINVAL", "migrate", "--from", "unix:./d.sock", "--to", "unix:./d.sock")]
    [InlineData("migrate", "EINVAL", "migrate", "--to", "sample:")]
    [InlineData("send", "EINVAL", "send", "--from", "sample:", "--to", "127.0.0.1:7499", "--insecure")]
    [InlineData("send", "EINVAL", "send", "--from", "sample:", "--to", "tcp://127.0.0.1:99999", "--insecure")]
    [InlineData("send", "EINVAL", "send", "--from", "sample:", "--to", "tcp://127.0.0.1:1", "--channels", "0")]
    [InlineData("send", "EINVAL", "send", "--from", "sample:", "--to", "tcp://127.0.0.1:1", "--tls-cert", "c.pem")]
    [InlineData("receive", "EINVAL", "receive", "--listen", "7400", "--into", "sample:")]
    // resolve, recover, state: a migration id, a decision, a device that outlives a process
    [InlineData("resolve", "EINVAL", "resolve", "nope")]
    [InlineData("resolve", "EINVAL", "resolve", "6f1c0b6e-0000-4000-8000-000000000000", "--decision", "maybe")]
    [InlineData("recover", "EINVAL", "recover", "sample:")]
    [InlineData("state", "EINVAL", "state", "sample:")]
    [InlineData("state", "EINVAL", "state", "pci:0000:00:01.0")]
    // the command line itself
    [InlineData("", "EINVAL", "bogus")]
    [InlineData("demo", "EINVAL", "demo", "--no-such-option")]
    [InlineData("bench", "EINVAL", "bench")]
    public async Task Usage_errors_exit_2_with_one_line(string command, string errno, params string[] args)
    {
        var (_, error) = await FailAsync(command, 2, args);
        Assert.Contains($": error: {errno}: ", error, StringComparison.Ordinal);
        Assert.Contains($"  hint: vfio-mig{(command.Length == 0 ? "" : " " + command)} --help", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Resolve_recover_and_state_fail_through_the_shared_error_path()
    {
        string dir = Path.Combine(Path.GetTempPath(), "vfio-cli-" + Guid.NewGuid().ToString("N")[..10]);
        string id = Guid.NewGuid().ToString("D");
        var (_, error) = await FailAsync("resolve", 1, "resolve", id, "--state-dir", dir);
        Assert.Contains($"ENOENT: resolve: no record of migration {id} in {dir}", error, StringComparison.Ordinal);
        Assert.Contains("  hint: run it on the host (and with the --state-dir) of the migration", error, StringComparison.Ordinal);

        string missing = TestSupport.TempSocketPath();
        (_, error) = await FailAsync("recover", 1, "recover", "unix:" + missing, "--state-dir", dir);
        Assert.Contains("ENOENT", error, StringComparison.Ordinal);
        (_, error) = await FailAsync("state", 1, "state", "unix:" + missing, "--state-dir", dir);
        Assert.Contains("ENOENT", error, StringComparison.Ordinal);

        // Under --json the failure is one document on stdout too.
        using var json = new TestSupport.CliProcess("resolve", id, "--state-dir", dir, "--json");
        Assert.Equal(1, await json.WaitOrExplainAsync(Deadline));
        using var doc = System.Text.Json.JsonDocument.Parse(json.Output);
        Assert.False(doc.RootElement.GetProperty("ok").GetBoolean());
        Assert.Equal("resolve", doc.RootElement.GetProperty("command").GetString());
        Assert.Equal("ENOENT", doc.RootElement.GetProperty("errno").GetString());
        Assert.Equal(1, doc.RootElement.GetProperty("exit_code").GetInt32());
        Assert.False(Directory.Exists(dir), "a failed resolve created the state directory");
    }

    [Fact]
    public async Task Missing_files_and_wrong_kinds_of_file_are_named()
    {
        string dir = Path.Combine(Path.GetTempPath(), "vfio-cli-" + Guid.NewGuid().ToString("N")[..10]);
        Directory.CreateDirectory(dir);
        try
        {
            // serve into a directory that does not exist: ENOENT naming it, not EADDRINUSE.
            var (_, error) = await FailAsync("serve", 2, "serve", "--socket", Path.Combine(dir, "nodir", "x.sock"));
            Assert.Contains("ENOENT: --socket: the directory", error, StringComparison.Ordinal);

            // a regular file is not a socket: said so, not ECONNREFUSED.
            string file = Path.Combine(dir, "regular.file");
            await File.WriteAllTextAsync(file, "x", TestContext.Current.CancellationToken);
            (_, error) = await FailAsync("info", 2, "info", "unix:" + file);
            Assert.Contains("is not a socket", error, StringComparison.Ordinal);

            (_, error) = await FailAsync("info", 1, "info", "unix:" + Path.Combine(dir, "missing.sock"));
            Assert.Contains("ENOENT", error, StringComparison.Ordinal);

            (_, error) = await FailAsync("send", 1, "send", "--from", "sample:size=1MiB", "--to", "tcp://127.0.0.1:1", "--token-file", Path.Combine(dir, "no-token.txt"));
            Assert.Contains("ENOENT", error, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task A_dead_vfio_user_socket_and_a_dead_tcp_peer_fail_with_exit_1()
    {
        // A stale socket: bound, never listened on, so connect() is refused (kept open: closing it removes the file).
        string stale = TestSupport.TempSocketPath();
        using var bound = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        bound.Bind(new UnixDomainSocketEndPoint(stale));
        try
        {
            var (_, error) = await FailAsync("migrate", 1, "migrate", "--from", "unix:" + stale, "--to", "sample:");
            Assert.Contains("ECONNREFUSED", error, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(stale);
        }

        int port;
        using (var listener = new TcpListener(IPAddress.Loopback, 0))
        {
            listener.Start();
            port = ((IPEndPoint)listener.LocalEndpoint).Port;
        }
        var (_, sendError) = await FailAsync("send", 1, "send", "--from", "sample:size=1MiB", "--to", $"tcp://127.0.0.1:{port}", "--insecure", "--connect-timeout", "5s");
        Assert.Contains("hint: source device sample:size=1MiB is RUNNING", sendError, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_busy_vfio_user_server_is_reported_busy_within_the_connect_timeout()
    {
        await using var fx = new TestSupport.ServerFixture();
        // The server serves one client at a time: this one holds it.
        await using var holder = await VfioUserClient.ConnectAsync(fx.Path, null, TestContext.Current.CancellationToken);

        var (_, error) = await FailAsync("info", 1, "info", "unix:" + fx.Path, "--connect-timeout", "1s");
        Assert.Contains("EBUSY", error, StringComparison.Ordinal);
        Assert.Contains("one client at a time", error, StringComparison.Ordinal);

        (_, error) = await FailAsync("migrate", 1, "migrate", "--from", "unix:" + fx.Path, "--to", "sample:", "--connect-timeout", "1s");
        Assert.Contains("EBUSY", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Json_failures_print_one_error_document_on_stdout()
    {
        using var cli = new TestSupport.CliProcess("info", "unix:" + TestSupport.TempSocketPath(), "--json");
        Assert.Equal(1, await cli.WaitOrExplainAsync(Deadline));
        using var doc = System.Text.Json.JsonDocument.Parse(cli.Output);
        Assert.False(doc.RootElement.GetProperty("ok").GetBoolean());
        Assert.Equal("ENOENT", doc.RootElement.GetProperty("errno").GetString());
        Assert.Equal(1, doc.RootElement.GetProperty("exit_code").GetInt32());
    }
}
