using System.Text.RegularExpressions;

namespace Vfio.IntegrationTests;

/// <summary>
/// Runs the README's "5-minute tour" block line by line, as a user would, in a fresh directory: with smaller
/// sizes (1GiB → 16MiB, 64MiB → 4MiB) and an ephemeral port instead of 7400, and nothing else changed. A line
/// ending in <c>&amp;</c> starts a background process (waited on until it is ready); <c>(exit N)</c> in a line's
/// comment is the exit code it documents. Cost: about a minute (two demos, two checks, both benches at 16 MiB).
/// </summary>
public sealed partial class ReadmeTourTests
{
    private static readonly TimeSpan Step = TimeSpan.FromMinutes(3);

    [GeneratedRegex(@"\(exit (\d)\)")]
    private static partial Regex DocumentedExit();

    [GeneratedRegex(@"listening on 127\.0\.0\.1:(\d+)")]
    private static partial Regex ListeningPort();

    [Fact]
    public async Task The_tour_runs_verbatim_with_small_sizes()
    {
        string root = RepositoryRoot();
        var lines = TourBlock(File.ReadAllText(Path.Combine(root, "README.md")));
        Assert.Contains(lines, l => l.StartsWith("vfio-mig token new", StringComparison.Ordinal)); // the tour makes its token

        string dir = Path.Combine(Path.GetTempPath(), "vfio-tour-" + Guid.NewGuid().ToString("N")[..10]);
        Directory.CreateDirectory(dir);
        var background = new List<TestSupport.CliProcess>();
        string? port = null;
        try
        {
            foreach (string raw in lines)
            {
                int hash = raw.IndexOf(" #", StringComparison.Ordinal);
                string comment = hash < 0 ? "" : raw[hash..];
                string line = (hash < 0 ? raw : raw[..hash]).Trim();
                if (line.Length == 0 || line.StartsWith("alias ", StringComparison.Ordinal))
                    continue;
                if (line.StartsWith("kill ", StringComparison.Ordinal))
                {
                    foreach (var server in background.Where(b => !b.Process.HasExited))
                        Assert.Equal(0, await server.SignalAndWaitAsync("TERM", TimeSpan.FromSeconds(30)));
                    continue;
                }
                Assert.StartsWith("vfio-mig ", line, StringComparison.Ordinal);
                line = line.Replace("1GiB", "16MiB", StringComparison.Ordinal).Replace("64MiB", "4MiB", StringComparison.Ordinal)
                    .Replace("--listen 127.0.0.1:7400", "--listen 127.0.0.1:0", StringComparison.Ordinal);
                if (port is not null)
                    line = line.Replace("127.0.0.1:7400", "127.0.0.1:" + port, StringComparison.Ordinal);
                bool inBackground = line.EndsWith('&');
                string[] args = line.TrimEnd('&').Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries)[1..];

                var cli = new TestSupport.CliProcess(dir, args);
                if (inBackground)
                {
                    background.Add(cli);
                    await cli.WaitForOutputAsync(args[0] == "receive" ? "listening on" : "serving", Step);
                    if (args[0] == "receive")
                        port = ListeningPort().Match(cli.Output).Groups[1].Value;
                    continue;
                }
                using (cli)
                {
                    int expected = DocumentedExit().Match(comment) is { Success: true } m ? int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) : 0;
                    int exit = await cli.WaitOrExplainAsync(Step);
                    Assert.True(exit == expected, $"README line `{raw}` exited {exit}, documented {expected}; stdout: {cli.Output} stderr: {cli.Error}");
                    if (args[0] is "demo" or "migrate" or "send")
                        Assert.Contains("verified: destination matches source (sha256 ", cli.Output, StringComparison.Ordinal);
                    if (args is ["path", "--all", ..])
                        Assert.Equal(File.ReadAllText(Path.Combine(root, "tests", "fixtures", "fsm-paths.csv")), cli.Output);
                }
            }
            // The receiver took its one migration and exited by itself; the servers were stopped by the kill line.
            Assert.All(background, b => Assert.True(b.Process.HasExited, "a background process of the tour is still running"));
            var receiver = Assert.Single(background, b => b.Process.StartInfo.ArgumentList.Contains("receive"));
            Assert.Equal(0, receiver.Process.ExitCode);
            Assert.Contains("verified: destination matches source", receiver.Output, StringComparison.Ordinal);
        }
        finally
        {
            foreach (var b in background)
                b.Dispose();
            Directory.Delete(dir, recursive: true);
        }
    }

    private static List<string> TourBlock(string readme)
    {
        int tour = readme.IndexOf("## 5-minute tour", StringComparison.Ordinal);
        Assert.True(tour >= 0, "README.md has no '## 5-minute tour'");
        int start = readme.IndexOf("```sh\n", tour, StringComparison.Ordinal) + "```sh\n".Length;
        int end = readme.IndexOf("```", start, StringComparison.Ordinal);
        return [.. readme[start..end].Split('\n').Where(l => l.Length > 0 && !l.StartsWith('#'))];
    }

    private static string RepositoryRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Vfio.slnx")))
            dir = dir.Parent;
        Assert.NotNull(dir);
        return dir.FullName;
    }
}
