using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Vfio.User.Transport;

namespace Vfio.Cli.Commands;

/// <summary>
/// The raw reference of the <c>bench</c> commands: the same bytes moved the plainest fast way, from a source buffer
/// into a sink buffer through <c>connections</c> AF_UNIX socketpairs or loopback TCP connections, with one thread
/// of blocking 1 MiB <c>send</c> and one of blocking 1 MiB <c>recv</c> per connection. Buffers and connections are
/// made (every page touched) once, before any run, and kept for all runs, so runs can alternate with ours.
/// The copy runs in the C helper <c>vfio-mig-rawcopy</c> (tools/rawcopy, built by scripts/build-rawcopy.sh, which
/// the test command and scripts/vfio-mig run) when it can be found; otherwise in this process on .NET threads,
/// and <see cref="Description"/> says so.
/// </summary>
internal abstract class RawCopy : IDisposable
{
    /// <summary>The send and receive size of both implementations.</summary>
    public const int Chunk = 1 << 20;

    private const string HelperName = "vfio-mig-rawcopy";

    /// <summary>"c_helper" or "dotnet_threads" (for --json).</summary>
    public abstract string Tool { get; }

    /// <summary>One line saying which implementation runs and, for the fallback, why.</summary>
    public abstract string Description { get; }

    /// <summary>Copies <paramref name="bytes"/> (split over the connections); returns wall and CPU seconds of the copy alone.</summary>
    public abstract (double Seconds, double CpuSeconds) Run(long bytes);

    public abstract void Dispose();

    /// <summary>
    /// Makes the buffers and connections: <paramref name="tcp"/> loopback TCP (TCP_NODELAY) or AF_UNIX socketpairs,
    /// each socket with <paramref name="socketBuffer"/> bytes of SO_SNDBUF/SO_RCVBUF asked.
    /// </summary>
    public static RawCopy Start(bool tcp, int connections, long sourceBytes, long sinkBytes, int socketBuffer)
    {
        var (helper, why) = FindHelper();
        if (helper is not null)
            return new Helper(helper, tcp, connections, sourceBytes, sinkBytes, socketBuffer);
        return new Threads(tcp, connections, sourceBytes, sinkBytes, socketBuffer, why);
    }

    // VFIO_MIG_RAWCOPY, else artifacts/rawcopy/vfio-mig-rawcopy above this binary or the working directory.
    private static (string? Path, string Why) FindHelper()
    {
        if (Environment.GetEnvironmentVariable("VFIO_MIG_RAWCOPY") is { Length: > 0 } named)
            return File.Exists(named) ? (named, "") : (null, $"VFIO_MIG_RAWCOPY={named} does not exist");
        foreach (var start in new[] { AppContext.BaseDirectory, Environment.CurrentDirectory })
        {
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                string candidate = System.IO.Path.Combine(dir.FullName, "artifacts", "rawcopy", HelperName);
                if (File.Exists(candidate))
                    return (candidate, "");
            }
        }
        return (null, $"{HelperName} not found (build it with scripts/build-rawcopy.sh, which needs cc, or set VFIO_MIG_RAWCOPY)");
    }

    private static string Plural(int connections, bool tcp)
        => string.Create(CultureInfo.InvariantCulture, $"{connections} {(tcp ? "loopback TCP connection" : "AF_UNIX socketpair")}{(connections == 1 ? "" : "s")}");

    /// <summary>The C helper, one process for all runs: a line with the byte count in, "SECONDS CPU_SECONDS" out.</summary>
    private sealed class Helper : RawCopy
    {
        private static readonly TimeSpan ReadyDeadline = TimeSpan.FromMinutes(2);
        private static readonly TimeSpan RunDeadline = TimeSpan.FromMinutes(10);
        private readonly Process _process;
        private readonly string _path;
        private readonly string _what;

        public Helper(string path, bool tcp, int connections, long sourceBytes, long sinkBytes, int socketBuffer)
        {
            _path = path;
            _what = Plural(connections, tcp);
            var psi = new ProcessStartInfo(path) { RedirectStandardInput = true, RedirectStandardOutput = true, UseShellExecute = false };
            foreach (var a in new object[] { tcp ? "tcp" : "unix", connections, sourceBytes, sinkBytes, Chunk, socketBuffer })
                psi.ArgumentList.Add(Convert.ToString(a, CultureInfo.InvariantCulture)!);
            _process = Process.Start(psi) ?? throw new VfioException(Errno.ENOENT, "bench raw copy", $"could not start {path}");
            if (ReadLine(ReadyDeadline) != "ready")
                throw new VfioException(Errno.EPROTO, "bench raw copy", $"{path} did not start its copy (see its error above)");
        }

        public override string Tool => "c_helper";

        public override string Description => $"raw reference: C helper {_path} (blocking send/recv of 1 MiB on pthreads, {_what})";

        public override (double Seconds, double CpuSeconds) Run(long bytes)
        {
            _process.StandardInput.WriteLine(bytes.ToString(CultureInfo.InvariantCulture));
            _process.StandardInput.Flush();
            string line = ReadLine(RunDeadline) ?? throw new VfioException(Errno.EIO, "bench raw copy", $"{_path} stopped (see its error above)");
            var parts = line.Split(' ');
            if (parts.Length != 2 || !double.TryParse(parts[0], CultureInfo.InvariantCulture, out double seconds) || !double.TryParse(parts[1], CultureInfo.InvariantCulture, out double cpu))
                throw new VfioException(Errno.EPROTO, "bench raw copy", $"{_path} answered '{line}', expected 'SECONDS CPU_SECONDS'");
            return (seconds, cpu);
        }

        private string? ReadLine(TimeSpan deadline)
        {
            var read = _process.StandardOutput.ReadLineAsync();
            if (!read.Wait(deadline))
                throw new VfioException(Errno.ETIMEDOUT, "bench raw copy", $"{_path} did not answer within {deadline.TotalSeconds:0} s");
            return read.Result;
        }

        public override void Dispose()
        {
            try
            {
                _process.StandardInput.Close();
                if (!_process.WaitForExit(TimeSpan.FromSeconds(10)))
                    _process.Kill();
            }
            catch (InvalidOperationException)
            {
            }
            _process.Dispose();
        }
    }

    /// <summary>The fallback: the same algorithm on .NET threads in this process.</summary>
    private sealed class Threads : RawCopy
    {
        private readonly List<(Socket Sender, Socket Receiver)> _connections = [];
        private readonly BenchBuffer _source;
        private readonly BenchBuffer _sink;
        private readonly string _why;
        private readonly string _what;

        public Threads(bool tcp, int connections, long sourceBytes, long sinkBytes, int socketBuffer, string why)
        {
            _why = why;
            _what = Plural(connections, tcp);
            _source = new BenchBuffer(sourceBytes, random: true);
            _sink = new BenchBuffer(sinkBytes, random: false);
            using var listener = tcp ? new Socket(SocketType.Stream, ProtocolType.Tcp) : null;
            if (listener is not null)
            {
                listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
                listener.Listen(connections);
            }
            for (int c = 0; c < connections; c++)
            {
                Socket sender, receiver;
                if (listener is not null)
                {
                    sender = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                    sender.Connect(listener.LocalEndPoint!);
                    receiver = listener.Accept();
                    receiver.NoDelay = true;
                }
                else
                {
                    (sender, receiver) = UnixFdSocket.CreateSocketPair();
                }
                sender.SendBufferSize = sender.ReceiveBufferSize = socketBuffer;
                receiver.SendBufferSize = receiver.ReceiveBufferSize = socketBuffer;
                _connections.Add((sender, receiver));
            }
        }

        public override string Tool => "dotnet_threads";

        public override string Description => $"raw reference: FALLBACK to blocking send/recv of 1 MiB on .NET threads in this process, {_what}: {_why}";

        public override (double Seconds, double CpuSeconds) Run(long bytes)
        {
            Exception? failed = null;
            var threads = new List<Thread>();
            void Guarded(Action body)
            {
                try
                {
                    body();
                }
                catch (SocketException ex)
                {
                    failed = ex;
                }
            }
            for (int c = 0; c < _connections.Count; c++)
            {
                long begin = bytes * c / _connections.Count, end = bytes * (c + 1) / _connections.Count;
                var (sender, receiver) = _connections[c];
                threads.Add(new Thread(() => Guarded(() =>
                {
                    for (long at = begin; at < end;)
                        at += sender.Send(_source.At(at, Math.Min(Chunk, end - at)).Span, SocketFlags.None);
                })) { IsBackground = true, Name = "bench-raw-send" });
                threads.Add(new Thread(() => Guarded(() =>
                {
                    for (long at = begin; at < end;)
                    {
                        int n = receiver.Receive(_sink.At(at, Math.Min(Chunk, end - at)).Span, SocketFlags.None);
                        if (n == 0)
                            throw new SocketException((int)SocketError.ConnectionReset);
                        at += n;
                    }
                })) { IsBackground = true, Name = "bench-raw-receive" });
            }
            BenchSupport.Settle();
            var clock = BenchSupport.StartClock();
            foreach (var t in threads)
                t.Start();
            foreach (var t in threads)
                t.Join();
            var result = clock.Read();
            if (failed is not null)
                throw new VfioException(Errno.EIO, "bench raw copy", failed.Message);
            return result;
        }

        public override void Dispose()
        {
            foreach (var (sender, receiver) in _connections)
            {
                sender.Dispose();
                receiver.Dispose();
            }
        }
    }
}
