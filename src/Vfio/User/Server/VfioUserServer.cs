using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Vfio.User.Transport;

namespace Vfio.User.Server;

/// <summary>
/// A vfio-user server: listens on a UNIX socket path (mode 0600) and serves one client at a time, sequentially,
/// for as long as it runs. A stale socket file at the path is replaced only when it is a socket nobody listens on.
/// </summary>
public sealed class VfioUserServer : IAsyncDisposable
{
    private readonly VfioUserServerOptions _options;
    private readonly ILogger _logger;
    private Socket? _listener;
    private int _connections;
    private VfioUserConnection? _current;

    /// <summary>Creates a server for <paramref name="device"/> at <paramref name="path"/> (not yet listening).</summary>
    public VfioUserServer(string path, VfioUserDeviceDefinition device, VfioUserServerOptions? options = null)
    {
        Path = System.IO.Path.GetFullPath(path ?? throw new ArgumentNullException(nameof(path)));
        Device = device ?? throw new ArgumentNullException(nameof(device));
        _options = options ?? VfioUserServerOptions.Default;
        _options.Validate();
        _logger = _options.LoggerFactory.CreateLogger<VfioUserServer>();
    }

    /// <summary>The socket path.</summary>
    public string Path { get; }

    /// <summary>The device served.</summary>
    public VfioUserDeviceDefinition Device { get; }

    /// <summary>The connected client, if any.</summary>
    public VfioUserConnection? CurrentConnection => Volatile.Read(ref _current);

    /// <summary>Clients served so far.</summary>
    public int ConnectionCount => Volatile.Read(ref _connections);

    /// <summary>Raised when a client connects (tests use it to drive DMA).</summary>
    public event EventHandler<VfioUserConnection>? ClientConnected;

    /// <summary>Binds and listens.</summary>
    /// <exception cref="VfioException">EADDRINUSE when a live server owns the path; EEXIST when a non-socket file is there.</exception>
    public void Start()
    {
        if (_listener is not null)
            throw new InvalidOperationException("the server is already started");
        RemoveStaleSocket();
        // Bind under a private name in the same directory, restrict to 0600, then rename into place: no window in
        // which the socket exists at the public path with a wider mode.
        string dir = System.IO.Path.GetDirectoryName(Path) ?? "/";
        string temp = System.IO.Path.Combine(dir, $".vfio-user.{Environment.ProcessId}.{Guid.NewGuid().ToString("N")[..8]}");
        if (System.Text.Encoding.UTF8.GetByteCount(temp) > 107)
            throw new VfioException(Errno.ENAMETOOLONG, $"listen on {Path}", "the directory path is too long for a UNIX socket address (108 bytes)");
        if (System.Text.Encoding.UTF8.GetByteCount(Path) > 107)
            throw new VfioException(Errno.ENAMETOOLONG, $"listen on {Path}", "the path is too long for a UNIX socket address (108 bytes)");
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            socket.Bind(new UnixDomainSocketEndPoint(temp));
            if (!OperatingSystem.IsWindows())
                File.SetUnixFileMode(temp, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            socket.Listen(16);
            File.Move(temp, Path, overwrite: false);
        }
        catch (Exception ex) when (ex is SocketException or IOException or UnauthorizedAccessException)
        {
            socket.Dispose();
            try
            {
                File.Delete(temp);
            }
            catch (IOException)
            {
            }
            throw new VfioException(ex is IOException { HResult: 17 } ? Errno.EEXIST : Errno.EADDRINUSE, $"listen on {Path}", ex.Message, ex);
        }
        _listener = socket;
        VfioUserLog.Listening(_logger, Path);
    }

    private void RemoveStaleSocket()
    {
        uint? mode = LStatMode(Path);
        if (mode is null)
            return;
        if ((mode.Value & Interop.Interop.S_IFMT) != Interop.Interop.S_IFSOCK)
            throw new VfioException(Errno.EEXIST, $"listen on {Path}", "the path exists and is not a socket; refusing to replace it");
        using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            probe.Connect(new UnixDomainSocketEndPoint(Path));
        }
        catch (SocketException ex) when (ex.SocketErrorCode == SocketError.ConnectionRefused)
        {
            File.Delete(Path);
            VfioUserLog.StaleSocketReplaced(_logger, Path);
            return;
        }
        catch (SocketException ex)
        {
            throw new VfioException(Errno.EADDRINUSE, $"listen on {Path}", $"cannot tell whether the existing socket is live: {ex.Message}", ex);
        }
        throw new VfioException(Errno.EADDRINUSE, $"listen on {Path}", "another server is listening on this socket");
    }

    /// <summary>True when <paramref name="path"/> is a socket file (lstat; the CLI names a path that is not one).</summary>
    internal static bool IsSocket(string path) => LStatMode(path) is { } mode && (mode & Interop.Interop.S_IFMT) == Interop.Interop.S_IFSOCK;

    // lstat(2) st_mode, or null when nothing is at the path (symlinks are not followed).
    private static unsafe uint? LStatMode(string path)
    {
        byte* stat = stackalloc byte[Interop.Interop.StatSize];
        var bytes = System.Text.Encoding.UTF8.GetBytes(path + "\0");
        fixed (byte* p = bytes)
        {
            if (Interop.Interop.LStat(p, stat) != 0)
                return null;
        }
        return *(uint*)(stat + Interop.Interop.StatModeOffset);
    }

    /// <summary>Accepts and serves clients one after the other until cancelled.</summary>
    public async Task RunAsync(CancellationToken cancellationToken = default)
    {
        if (_listener is null)
            Start();
        while (!cancellationToken.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await _listener!.AcceptAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                break;
            }
            catch (ObjectDisposedException)
            {
                break;
            }
            catch (SocketException ex)
            {
                // EMFILE and friends: keep the listener, try again shortly.
                VfioUserLog.ProtocolError(_logger, 0, "accept failed: " + ex.Message);
                await Task.Delay(100, cancellationToken).ConfigureAwait(false);
                continue;
            }
            int id = Interlocked.Increment(ref _connections);
            var socket = new UnixFdSocket(client, _options.MaxMessageFds);
            var connection = new VfioUserConnection(socket, Device, _options, id);
            Volatile.Write(ref _current, connection);
            VfioUserLog.ClientConnected(_logger, id, socket.SendBufferSize, socket.ReceiveBufferSize);
            ClientConnected?.Invoke(this, connection);
            try
            {
                await connection.RunAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
            }
#pragma warning disable CA1031 // one client's failure must never take the server down
            catch (Exception ex)
#pragma warning restore CA1031
            {
                VfioUserLog.HandlerCrashed(_logger, "connection", id, ex);
            }
            finally
            {
                Volatile.Write(ref _current, null);
                client.Dispose();
            }
        }
    }

    /// <summary>
    /// Serves one already-connected socket (e.g. one end of a socketpair) until the peer goes away: the in-process
    /// path used by <c>vfio-mig info sample:</c>, tests and the benchmark.
    /// </summary>
    public static Task ServeConnectedSocketAsync(Socket socket, VfioUserDeviceDefinition device, VfioUserServerOptions? options = null, CancellationToken cancellationToken = default)
    {
        options ??= VfioUserServerOptions.Default;
        options.Validate();
        return ServeConnectedAsync(new UnixFdSocket(socket, options.MaxMessageFds), device, options, cancellationToken);
    }

    /// <summary>Serves one connected transport end (a socket, or an in-memory end in tests) until the peer goes away.</summary>
    internal static Task ServeConnectedAsync(IVfioUserTransport transport, VfioUserDeviceDefinition device, VfioUserServerOptions? options = null, CancellationToken cancellationToken = default)
    {
        var connection = new VfioUserConnection(transport, device, options ?? VfioUserServerOptions.Default, 1);
        return connection.RunAsync(cancellationToken);
    }

    /// <summary>Stops listening and removes the socket file.</summary>
    public ValueTask DisposeAsync()
    {
        var listener = Interlocked.Exchange(ref _listener, null);
        if (listener is not null)
        {
            listener.Dispose();
            try
            {
                if (IsSocket(Path))
                    File.Delete(Path);
            }
            catch (IOException)
            {
            }
        }
        return ValueTask.CompletedTask;
    }
}
