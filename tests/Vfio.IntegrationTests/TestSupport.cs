using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using Vfio.Interop;
using Vfio.Sample;
using Vfio.User.Protocol;
using Vfio.User.Server;

[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]

namespace Vfio.IntegrationTests;

/// <summary>Temp socket paths, in-process servers, fd helpers and the CLI as a child process.</summary>
internal static class TestSupport
{
    public static string TempSocketPath() => Path.Combine(Path.GetTempPath(), $"vfu-{Guid.NewGuid().ToString("N")[..10]}.sock");

    public static unsafe SafeFdHandle EventFd()
        => new((int)Interop.Interop.CheckIo(Interop.Interop.EventFd(0, Interop.Interop.EFD_CLOEXEC), "eventfd"));

    public static unsafe ulong ReadEventFd(SafeFdHandle fd)
    {
        ulong value = 0;
        Interop.Interop.CheckIo(Interop.Interop.Read(fd.Fd, (byte*)&value, 8), "read eventfd");
        return value;
    }

    public static SafeFdHandle MemFd(long size) => SafeFdHandle.CreateMemFd(size);

    /// <summary>Reads a memfd's bytes through a temporary shared mapping.</summary>
    public static unsafe byte[] ReadMemFd(SafeFdHandle fd, long offset, int length)
    {
        nint map = Interop.Interop.MMap(0, (nuint)(offset + length), Interop.Interop.PROT_READ | Interop.Interop.PROT_WRITE, Interop.Interop.MAP_SHARED, fd.Fd, 0);
        Assert.NotEqual(Interop.Interop.MAP_FAILED, map);
        try
        {
            return new ReadOnlySpan<byte>((byte*)(map + (nint)offset), length).ToArray();
        }
        finally
        {
            Interop.Interop.MUnmap(map, (nuint)(offset + length));
        }
    }

    public static unsafe void WriteMemFd(SafeFdHandle fd, long offset, ReadOnlySpan<byte> data)
    {
        nint map = Interop.Interop.MMap(0, (nuint)(offset + data.Length), Interop.Interop.PROT_READ | Interop.Interop.PROT_WRITE, Interop.Interop.MAP_SHARED, fd.Fd, 0);
        Assert.NotEqual(Interop.Interop.MAP_FAILED, map);
        try
        {
            data.CopyTo(new Span<byte>((byte*)(map + (nint)offset), data.Length));
        }
        finally
        {
            Interop.Interop.MUnmap(map, (nuint)(offset + data.Length));
        }
    }

    /// <summary>An in-process server on a temp path, running until disposed.</summary>
    public sealed class ServerFixture : IAsyncDisposable
    {
        private readonly CancellationTokenSource _cts = new();

        public ServerFixture(SampleDeviceOptions? options = null)
        {
            Device = new SampleDevice(options ?? new SampleDeviceOptions { SizeBytes = 1 << 20, Capabilities = Migration.VfioMigrationFlags.StopCopy | Migration.VfioMigrationFlags.PreCopy });
            Path = TempSocketPath();
            Server = new VfioUserServer(Path, VfioUserDeviceDefinition.ForSample(Device));
            Server.Start();
            Run = Server.RunAsync(_cts.Token);
        }

        public SampleDevice Device { get; }

        public string Path { get; }

        public VfioUserServer Server { get; }

        public Task Run { get; }

        public async Task<VfioUserConnection> WaitForConnectionAsync()
        {
            for (int i = 0; i < 500; i++)
            {
                if (Server.CurrentConnection is { IsNegotiated: true } c)
                    return c;
                await Task.Delay(10);
            }
            throw new TimeoutException("no client connected");
        }

        public async ValueTask DisposeAsync()
        {
            _cts.Cancel();
            try
            {
                await Run.WaitAsync(TimeSpan.FromSeconds(10));
            }
            catch (OperationCanceledException)
            {
            }
            await Server.DisposeAsync();
            Device.Dispose();
            _cts.Dispose();
        }
    }

    /// <summary>A raw protocol peer: sends arbitrary bytes, reads replies by header.</summary>
    public sealed class RawPeer : IDisposable
    {
        public RawPeer(string path)
        {
            Socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            Socket.Connect(new UnixDomainSocketEndPoint(path));
            Socket.ReceiveTimeout = 10000;
        }

        public Socket Socket { get; }

        public void Send(byte[] bytes) => Socket.Send(bytes);

        public void Send(ushort id, VfioUserCommand cmd, ReadOnlySpan<byte> payload, VfioUserMessageFlags flags = VfioUserMessageFlags.Command)
            => Socket.Send(VfioUserFrame.Build(id, cmd, flags, payload));

        /// <summary>Reads one message; null on EOF.</summary>
        public (VfioUserHeader Header, byte[] Payload)? Receive()
        {
            var head = new byte[16];
            if (!ReadExactly(head))
                return null;
            var h = VfioUserHeader.Decode(head);
            var body = new byte[h.MessageSize - 16];
            if (!ReadExactly(body))
                return null;
            return (h, body);
        }

        public bool IsClosed()
        {
            var b = new byte[1];
            try
            {
                return Socket.Receive(b) == 0;
            }
            catch (SocketException)
            {
                return true;
            }
        }

        private bool ReadExactly(byte[] buffer)
        {
            int got = 0;
            while (got < buffer.Length)
            {
                int n;
                try
                {
                    n = Socket.Receive(buffer, got, buffer.Length - got, SocketFlags.None);
                }
                catch (SocketException ex) when (ex.SocketErrorCode == SocketError.ConnectionReset)
                {
                    return false;
                }
                if (n == 0)
                    return false;
                got += n;
            }
            return true;
        }

        public void Negotiate()
        {
            Send(1, VfioUserCommand.Version, new VersionPayload(0, 2, new VersionCapabilities { MaxMessageFds = 8, MaxDataTransferSize = 1 << 20 }).Encode());
            var r = Receive();
            Assert.NotNull(r);
            Assert.False(r.Value.Header.IsError);
        }

        public void Dispose() => Socket.Dispose();
    }

    /// <summary>Finds the built vfio-mig.dll next to the CLI project.</summary>
    public static string CliDll()
    {
        var local = System.IO.Path.Combine(AppContext.BaseDirectory, "vfio-mig.dll");
        if (File.Exists(local) && File.Exists(System.IO.Path.Combine(AppContext.BaseDirectory, "vfio-mig.runtimeconfig.json")))
            return local;
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(System.IO.Path.Combine(dir.FullName, "Vfio.slnx")))
            dir = dir.Parent;
        Assert.NotNull(dir);
        string config = AppContext.BaseDirectory.Contains("/Release/", StringComparison.Ordinal) ? "Release" : "Debug";
        var path = System.IO.Path.Combine(dir.FullName, "src", "Vfio.Cli", "bin", config, "net10.0", "vfio-mig.dll");
        Assert.True(File.Exists(path), $"vfio-mig.dll not found at {path}");
        return path;
    }

    /// <summary>
    /// The published CLI (<c>VFIO_MIG_BINARY</c>, e.g. the NativeAOT build that scripts/aot-smoke.sh makes) when
    /// set, so the process tests run against the binary that ships; null: <c>dotnet vfio-mig.dll</c> of this build.
    /// </summary>
    public static string? PublishedCli => Environment.GetEnvironmentVariable("VFIO_MIG_BINARY") is { Length: > 0 } p ? System.IO.Path.GetFullPath(p) : null;

    /// <summary>A CLI child process with its output captured line by line.</summary>
    public sealed class CliProcess : IDisposable
    {
        private readonly StringBuilder _out = new();
        private readonly StringBuilder _err = new();
        private readonly Lock _lock = new();

        public CliProcess(params string[] args)
            : this(null, args)
        {
        }

        /// <summary>Starts the CLI in <paramref name="workingDirectory"/> (null: this process's), with <paramref name="environment"/> added.</summary>
        public CliProcess(string? workingDirectory, string[] args, params (string Name, string Value)[] environment)
        {
            string? binary = PublishedCli;
            var psi = new ProcessStartInfo(binary ?? "dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = workingDirectory ?? "" };
            foreach (var (name, value) in environment)
                psi.Environment[name] = value;
            if (binary is null)
                psi.ArgumentList.Add(CliDll());
            foreach (var a in args)
                psi.ArgumentList.Add(a);
            Process = Process.Start(psi)!;
            Process.OutputDataReceived += (_, e) =>
            {
                if (e.Data is not null)
                {
                    lock (_lock)
                        _out.AppendLine(e.Data);
                }
            };
            Process.ErrorDataReceived += (_, e) =>
            {
                if (e.Data is not null)
                {
                    lock (_lock)
                        _err.AppendLine(e.Data);
                }
            };
            Process.BeginOutputReadLine();
            Process.BeginErrorReadLine();
        }

        public Process Process { get; }

        public string Output
        {
            get
            {
                lock (_lock)
                    return _out.ToString();
            }
        }

        public string Error
        {
            get
            {
                lock (_lock)
                    return _err.ToString();
            }
        }

        public async Task WaitForOutputAsync(string text, TimeSpan timeout)
        {
            var until = DateTime.UtcNow + timeout;
            while (!Output.Contains(text, StringComparison.Ordinal))
            {
                if (Process.HasExited || DateTime.UtcNow > until)
                    throw new TimeoutException($"'{text}' not printed; stdout: {Output} stderr: {Error}");
                await Task.Delay(20);
            }
        }

        public async Task<int> WaitAsync(TimeSpan timeout)
        {
            using var cts = new CancellationTokenSource(timeout);
            await Process.WaitForExitAsync(cts.Token);
            Process.WaitForExit();
            return Process.ExitCode;
        }

        /// <summary>Like <see cref="WaitAsync"/>, but a timeout fails with everything the process printed.</summary>
        public async Task<int> WaitOrExplainAsync(TimeSpan timeout)
        {
            try
            {
                return await WaitAsync(timeout);
            }
            catch (OperationCanceledException)
            {
                throw new TimeoutException($"still running after {timeout.TotalSeconds} s; {SignalState()}; stdout: {Output} stderr: {Error}");
            }
        }

        // The signal masks of the process (blocked, pending, caught), for a process that ignores a signal.
        private string SignalState()
        {
            try
            {
                return string.Join(", ", File.ReadLines($"/proc/{Process.Id}/status").Where(l => l.StartsWith("Sig", StringComparison.Ordinal) || l.StartsWith("ShdPnd", StringComparison.Ordinal)));
            }
            catch (IOException)
            {
                return "no /proc status";
            }
        }

        public void Signal(string signal)
        {
            using var kill = Process.Start("kill", ["-" + signal, Process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
            kill.WaitForExit();
            Assert.True(kill.ExitCode == 0, $"kill -{signal} {Process.Id} exited {kill.ExitCode}");
        }

        /// <summary>
        /// Sends <paramref name="signal"/> and waits for the exit. Should the process show no sign of having seen it
        /// within 10 s (on the first, cold run of a fresh build a signal was seen to go unanswered), it is sent once
        /// more; the exit code is returned either way and a timeout fails with everything the process printed.
        /// </summary>
        public async Task<int> SignalAndWaitAsync(string signal, TimeSpan timeout)
        {
            Signal(signal);
            using (var first = new CancellationTokenSource(TimeSpan.FromSeconds(10)))
            {
                try
                {
                    await Process.WaitForExitAsync(first.Token);
                    Process.WaitForExit();
                    return Process.ExitCode;
                }
                catch (OperationCanceledException) when (!Error.Contains(signal, StringComparison.Ordinal))
                {
                    Signal(signal);
                }
            }
            return await WaitOrExplainAsync(timeout);
        }

        public void Dispose()
        {
            if (!Process.HasExited)
                Process.Kill(entireProcessTree: true);
            Process.Dispose();
        }
    }
}
