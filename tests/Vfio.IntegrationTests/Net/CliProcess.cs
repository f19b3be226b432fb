using System.Diagnostics;
using System.Text;

namespace Vfio.IntegrationTests.Net;

/// <summary>A vfio-mig child process (optionally inside a network namespace) whose output is collected line by line.</summary>
internal sealed class CliProcess : IDisposable
{
    private readonly Process _process;
    private readonly List<string> _stdout = [];
    private readonly List<string> _stderr = [];
    private readonly Lock _lock = new();
    private readonly string _label;
    private readonly ITestOutputHelper _log;

    private CliProcess(Process process, string label, ITestOutputHelper log)
    {
        _process = process;
        _label = label;
        _log = log;
    }

    public static string CliDll => Path.Combine(AppContext.BaseDirectory, "vfio-mig.dll");

    public static string DotnetHost => Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } p && File.Exists(p) ? p : "dotnet";

    /// <summary>Starts <c>[ip netns exec NS] dotnet vfio-mig.dll args</c>.</summary>
    public static CliProcess Start(string? netns, IEnumerable<string> args, string label, ITestOutputHelper log)
    {
        string? binary = TestSupport.PublishedCli;
        var psi = new ProcessStartInfo
        {
            FileName = netns is null ? binary ?? DotnetHost : "ip",
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            StandardOutputEncoding = Encoding.UTF8,
            StandardErrorEncoding = Encoding.UTF8,
        };
        if (netns is not null)
        {
            foreach (var a in new[] { "netns", "exec", netns, binary ?? DotnetHost })
                psi.ArgumentList.Add(a);
        }
        if (binary is null)
            psi.ArgumentList.Add(CliDll);
        foreach (var a in args)
            psi.ArgumentList.Add(a);
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        log.WriteLine($"[{label}] $ {(netns is null ? "" : $"ip netns exec {netns} ")}{binary ?? "dotnet vfio-mig.dll"} {string.Join(' ', args)}");
        var process = new Process { StartInfo = psi, EnableRaisingEvents = true };
        var cli = new CliProcess(process, label, log);
        process.OutputDataReceived += (_, e) => cli.Add(cli._stdout, e.Data, "");
        process.ErrorDataReceived += (_, e) => cli.Add(cli._stderr, e.Data, "stderr: ");
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return cli;
    }

    private void Add(List<string> list, string? line, string prefix)
    {
        if (line is null)
            return;
        lock (_lock)
            list.Add(line);
        try
        {
            _log.WriteLine($"[{_label}] {prefix}{line}");
        }
        catch (InvalidOperationException)
        {
            // The test already ended.
        }
    }

    public IReadOnlyList<string> Stdout
    {
        get
        {
            lock (_lock)
                return [.. _stdout];
        }
    }

    public string StderrText
    {
        get
        {
            lock (_lock)
                return string.Join('\n', _stderr);
        }
    }

    public string AllText
    {
        get
        {
            lock (_lock)
                return string.Join('\n', _stdout.Concat(_stderr));
        }
    }

    /// <summary>Waits (bounded) for a stdout line containing <paramref name="text"/>; returns it.</summary>
    public async Task<string> WaitForLineAsync(string text, TimeSpan timeout)
    {
        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed < timeout)
        {
            lock (_lock)
            {
                foreach (var l in _stdout)
                {
                    if (l.Contains(text, StringComparison.Ordinal))
                        return l;
                }
            }
            if (_process.HasExited)
            {
                await Task.Delay(100);
                lock (_lock)
                {
                    foreach (var l in _stdout)
                    {
                        if (l.Contains(text, StringComparison.Ordinal))
                            return l;
                    }
                }
                throw new InvalidOperationException($"{_label} exited ({_process.ExitCode}) without printing '{text}':\n{AllText}");
            }
            await Task.Delay(25);
        }
        throw new TimeoutException($"{_label} did not print '{text}' within {timeout.TotalSeconds} s:\n{AllText}");
    }

    /// <summary>Waits (bounded) for the exit; kills the process tree on timeout.</summary>
    public async Task<int> WaitForExitAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await _process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            _process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{_label} did not exit within {timeout.TotalSeconds} s:\n{AllText}");
        }
        _process.WaitForExit(); // drain the output
        return _process.ExitCode;
    }

    /// <summary>Kills the process at once (SIGKILL), like a crashed host.</summary>
    public void Kill() => _process.Kill(entireProcessTree: true);

    public void Dispose()
    {
        try
        {
            if (!_process.HasExited)
                _process.Kill(entireProcessTree: true);
        }
        catch (InvalidOperationException)
        {
        }
        _process.Dispose();
    }
}
