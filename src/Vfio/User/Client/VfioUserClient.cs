using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Vfio.Interop;
using Vfio.User.Protocol;
using Vfio.User.Transport;

namespace Vfio.User.Client;

/// <summary>
/// A vfio-user client connection: VERSION negotiation, a request table by message id (replies may be pipelined),
/// and a read loop that also serves the server's DMA_READ/DMA_WRITE on message-mode regions.
/// </summary>
public sealed partial class VfioUserClient : IAsyncDisposable
{
    private readonly IVfioUserTransport _socket;
    private readonly VfioUserClientOptions _options;
    private readonly ILogger _logger;
    private readonly ConcurrentDictionary<ushort, TaskCompletionSource<VfioUserMessage>> _pending = new();
    private readonly ConcurrentDictionary<ushort, MigDataTarget> _dataTargets = new();
    private readonly byte[] _migDataHead = new byte[MigDataPayload.Length];
    private readonly List<(ulong Iova, Memory<byte> Memory)> _dmaMemory = [];
    private readonly Lock _dmaLock = new();
    private readonly CancellationTokenSource _shutdown = new();
    private KernelPipePool? _pipes;
    private Task? _readLoop;
    private int _nextId;
    private Exception? _closedReason;

    private VfioUserClient(IVfioUserTransport socket, string name, VfioUserClientOptions options)
    {
        _socket = socket;
        Name = name;
        _options = options;
        _logger = options.LoggerFactory.CreateLogger<VfioUserClient>();
        _socket.MaxMessageSize = VfioUserHeader.Size + 64 + Math.Max(options.MaxDataTransferBytes, ProtocolLimits.MaxDataTransferBytes);
    }

    /// <summary>A name for messages (e.g. <c>unix:/run/dev.sock</c>).</summary>
    public string Name { get; }

    /// <summary>Negotiated minor version.</summary>
    public ushort ServerMinor { get; private set; }

    /// <summary>The server's max_data_xfer_size (default 1 MiB when absent).</summary>
    public int ServerMaxDataTransferBytes { get; private set; } = VfioUserSpec.DefaultMaxDataTransferBytes;

    /// <summary>The server's max_msg_fds (default 1 when absent).</summary>
    public int ServerMaxMessageFds { get; private set; } = VfioUserSpec.DefaultMaxMessageFds;

    /// <summary>Our socket's (send, receive) buffer sizes as the kernel reports them.</summary>
    public (int Send, int Receive) SocketBuffers => _socket.BufferSizes;

    /// <summary>The server's capabilities JSON as received.</summary>
    public VersionCapabilities ServerCapabilities { get; private set; } = new();

    /// <summary>
    /// Largest data count per outgoing write message (REGION_WRITE, MIG_DATA_WRITE): the server's max_data_xfer_size
    /// when the server enabled the twin socket, else <see cref="VfioUserClientOptions.WriteChunkBytes"/> (64 KiB). The
    /// small pieces are for libvfio-user, which reads a body with one recv() (spec §10.1 item 1) and never offers a
    /// twin socket (spec §1.1); a server that implements the twin socket reads whole messages, as ours does, and a
    /// 1 MiB frame of migration data then goes in one message instead of sixteen.
    /// </summary>
    internal int WriteChunk => Math.Max(1, TwinSocketEnabled ? ServerMaxDataTransferBytes : Math.Min(_options.WriteChunkBytes, ServerMaxDataTransferBytes));

    /// <summary>Largest data count per read request (what both sides accept).</summary>
    internal int ReadChunk => Math.Max(1, Math.Min(_options.MaxDataTransferBytes, ServerMaxDataTransferBytes));

    /// <summary>True when migration data can move between this connection's socket and kernel pipes (<see cref="SplicedChunk"/>).</summary>
    internal bool SplicesData => _socket is IPipeSplicingTransport;

    /// <summary>MIG_DATA_READ data bytes spliced into kernel pipes, and MIG_DATA_WRITE data bytes spliced out of them.</summary>
    internal (long Received, long Sent) SplicedBytes => (Interlocked.Read(ref _splicedReceived), Interlocked.Read(ref _splicedSent));

    /// <summary>Kernel pipes of this connection not yet closed (0 once disposed, unless a chunk was leaked).</summary>
    internal int OpenPipes => _pipes?.Open ?? 0;

    private long _splicedReceived;
    private long _splicedSent;

    internal VfioUserClientOptions Options => _options;

    /// <summary>Connects to <paramref name="path"/> and negotiates.</summary>
    /// <exception cref="VfioException">Connection or negotiation failure (errno + reason).</exception>
    public static async Task<VfioUserClient> ConnectAsync(string path, VfioUserClientOptions? options = null, CancellationToken cancellationToken = default)
    {
        options ??= VfioUserClientOptions.Default;
        options.Validate();
        var socket = await UnixFdSocket.ConnectAsync(path, cancellationToken).ConfigureAwait(false);
        return await ConnectAsync(socket, "unix:" + path, options, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Wraps an already-connected socket (tests: socketpair).</summary>
    public static async Task<VfioUserClient> ConnectAsync(System.Net.Sockets.Socket connected, string name, VfioUserClientOptions? options = null, CancellationToken cancellationToken = default)
    {
        options ??= VfioUserClientOptions.Default;
        options.Validate();
        return await ConnectAsync(new UnixFdSocket(connected, options.MaxMessageFds), name, options, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Negotiates over a connected transport end (a socket, or an in-memory end in tests); takes ownership of it.</summary>
    internal static async Task<VfioUserClient> ConnectAsync(IVfioUserTransport transport, string name, VfioUserClientOptions? options = null, CancellationToken cancellationToken = default)
    {
        options ??= VfioUserClientOptions.Default;
        options.Validate();
        var client = new VfioUserClient(transport, name, options);
        try
        {
            client._readLoop = Task.Run(client.ReadLoopAsync, CancellationToken.None);
            await client.NegotiateAsync(cancellationToken).ConfigureAwait(false);
            return client;
        }
        catch
        {
            await client.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    private async Task NegotiateAsync(CancellationToken cancellationToken)
    {
        const string op = "VERSION";
        bool askTwin = _options.TwinSocket && _options.MaxMessageFds > 0;
        var request = new VersionPayload(VfioUserSpec.VersionMajor, VfioUserSpec.VersionMinor, new VersionCapabilities
        {
            MaxMessageFds = _options.MaxMessageFds,
            MaxDataTransferSize = _options.MaxDataTransferBytes,
            Migration = new MigrationCapability { PageSize = VfioUserSpec.MigrationPageBytes },
            TwinSocket = askTwin ? new TwinSocketCapability { Supported = true } : null,
        });
        using var reply = await RequestAsync(VfioUserCommand.Version, request.Encode(), null, cancellationToken).ConfigureAwait(false);
        var answer = VersionPayload.Decode(reply.Payload);
        if (answer.Major != VfioUserSpec.VersionMajor)
            VfioException.Throw(Errno.EPROTO, op, $"server major version {answer.Major}, ours {VfioUserSpec.VersionMajor}");
        if (answer.Minor > VfioUserSpec.VersionMinor)
            VfioException.Throw(Errno.EPROTO, op, $"server minor {answer.Minor} exceeds the {VfioUserSpec.VersionMinor} we proposed");
        var caps = answer.Capabilities ?? new VersionCapabilities();
        long fds = caps.MaxMessageFds ?? VfioUserSpec.DefaultMaxMessageFds;
        long xfer = caps.MaxDataTransferSize ?? VfioUserSpec.DefaultMaxDataTransferBytes;
        if (fds is < 0 or > ProtocolLimits.MaxPeerMessageFds)
            VfioException.Throw(Errno.EPROTO, op, $"server max_msg_fds {fds} is out of range");
        if (xfer is <= 0 or > ProtocolLimits.MaxPeerDataTransferBytes)
            VfioException.Throw(Errno.EPROTO, op, $"server max_data_xfer_size {xfer} is out of range (1..64 MiB)");
        if (caps.Migration?.PageSize is { } pg && pg != VfioUserSpec.MigrationPageBytes)
            VfioException.Throw(Errno.EPROTO, op, $"server migration.pgsize {pg} is not 4096");
        // Spec §4.3: supported=false or absent = not enabled; true with a valid fd_index = enabled; else abort.
        bool twin = caps.TwinSocket?.Supported == true;
        if (twin && !askTwin)
            VfioException.Throw(Errno.EPROTO, op, "the server enabled twin_socket although we did not ask for it");
        if (twin && (caps.TwinSocket!.FdIndex is not { } index || index < 0 || index >= reply.Fds.Count))
            VfioException.Throw(Errno.EPROTO, op, $"twin_socket.fd_index {caps.TwinSocket!.FdIndex?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "(missing)"} names none of the {reply.Fds.Count} fds of the reply");
        if (!twin && reply.Fds.Count > 0)
            VfioException.Throw(Errno.EPROTO, op, $"the VERSION reply carries {reply.Fds.Count} fds but enables no twin socket");
        if (twin)
            StartTwinSocket(reply.Fds.Take((int)caps.TwinSocket!.FdIndex!.Value));
        ServerMinor = answer.Minor;
        ServerMaxMessageFds = (int)fds;
        ServerMaxDataTransferBytes = (int)xfer;
        ServerCapabilities = caps;
        VfioUserLog.Negotiated(_logger, Name, answer.Major, answer.Minor, (int)xfer, (int)fds, twin);
    }

    /// <summary>
    /// Sends a command and awaits its reply (drained by msg_size, payload or not). Error replies throw
    /// <see cref="VfioException"/> with the peer's errno (clamped to 1..4096, else EINVAL).
    /// </summary>
    internal async Task<VfioUserMessage> RequestAsync(VfioUserCommand command, ReadOnlyMemory<byte> payload, IReadOnlyList<SafeHandle>? fds = null, CancellationToken cancellationToken = default)
    {
        var reply = await SendCommandAsync(command, payload, fds, cancellationToken).ConfigureAwait(false);
        return await CompleteAsync(command, reply, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Sends without awaiting: returns the task of the reply (pipelining).</summary>
    /// <remarks>
    /// With <paramref name="dataTarget"/> (MIG_DATA_READ only) the reply's data is received into the buffer the
    /// reader provides to the target. Any other command first abandons the targets still waiting: its reply queues
    /// behind theirs, so the read loop must not wait for a reader who is now waiting for that other reply.
    /// With <paramref name="pipeData"/> the message's data is that many bytes from a <see cref="KernelPipe"/>, spliced
    /// into the socket behind the header (the transport must be an <see cref="IPipeSplicingTransport"/>).
    /// </remarks>
    internal async Task<Task<VfioUserMessage>> SendCommandAsync(VfioUserCommand command, ReadOnlyMemory<byte> payload, IReadOnlyList<SafeHandle>? fds, CancellationToken cancellationToken, MigDataTarget? dataTarget = null, ReadOnlyMemory<byte> data = default, (KernelPipe Pipe, int Count)? pipeData = null)
    {
        if (_closedReason is not null)
            throw new VfioException(Errno.ENOTCONN, $"{command} to {Name}", "the connection is closed: " + _closedReason.Message);
        if (fds is { Count: > 0 } && fds.Count > ServerMaxMessageFds)
            VfioException.Throw(Errno.EINVAL, command.ToString(), $"{fds.Count} fds exceed the server's max_msg_fds {ServerMaxMessageFds}");
        // A data reader resumes on the read loop itself: it hands over its next buffer before the loop reaches the
        // next reply, so streaming costs no thread hand-over per message. Every other caller resumes elsewhere.
        var tcs = new TaskCompletionSource<VfioUserMessage>(dataTarget is null ? TaskCreationOptions.RunContinuationsAsynchronously : TaskCreationOptions.None);
        ushort id;
        do
        {
            id = (ushort)Interlocked.Increment(ref _nextId);
        }
        while (!_pending.TryAdd(id, tcs));
        if (dataTarget is null)
            AbandonDataTargets();
        else
            _dataTargets[id] = dataTarget;
        // Header and payload in one pooled buffer. Large data (a MIG_DATA_WRITE's bytes after its head) is sent from
        // where the caller holds it, gathered behind them in one sendmsg: no copy of the bytes and no fresh
        // large-object array; small data is copied in, which costs less than a second piece.
        int pipeCount = pipeData?.Count ?? 0;
        int length = VfioUserHeader.Size + payload.Length + data.Length + pipeCount;
        bool gather = data.Length >= VfioUserTuning.GatherDataBytes && fds is not { Count: > 0 };
        int built = gather ? length - data.Length : length - pipeCount;
        var message = ArrayPool<byte>.Shared.Rent(built);
        new VfioUserHeader(id, command, (uint)length, VfioUserMessageFlags.Command, 0).Encode(message);
        payload.Span.CopyTo(message.AsSpan(VfioUserHeader.Size));
        if (!gather)
            data.Span.CopyTo(message.AsSpan(VfioUserHeader.Size + payload.Length));
        try
        {
            if (pipeData is var (pipe, count))
            {
                await ((IPipeSplicingTransport)_socket).SendWithPipeAsync(message.AsMemory(0, built), pipe, count, cancellationToken).ConfigureAwait(false);
                Interlocked.Add(ref _splicedSent, count);
            }
            else if (gather)
                await _socket.SendInTwoPartsAsync(message.AsMemory(0, built), data, cancellationToken).ConfigureAwait(false);
            else
                await _socket.SendAsync(message.AsMemory(0, length), fds, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            _pending.TryRemove(id, out _);
            _dataTargets.TryRemove(id, out _);
            throw;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(message);
        }
        var closed = _closedReason;
        if (closed is not null && _pending.TryRemove(id, out _))
            tcs.TrySetException(new VfioException(Errno.ECONNRESET, $"{command} to {Name}", "the connection closed: " + closed.Message));
        return tcs.Task;
    }

    internal async Task<VfioUserMessage> CompleteAsync(VfioUserCommand command, Task<VfioUserMessage> pending, CancellationToken cancellationToken)
    {
        var reply = await pending.WaitAsync(cancellationToken).ConfigureAwait(false);
        if (reply.Header.Command != command)
        {
            reply.Dispose();
            VfioException.Throw(Errno.EPROTO, command.ToString(), $"the reply names command {(ushort)reply.Header.Command}");
        }
        if (reply.Header.IsError)
        {
            uint raw = reply.Header.ErrorNo;
            reply.Dispose();
            var errno = raw is >= 1 and <= 4096 ? (Errno)raw : Errno.EINVAL;
            throw new VfioException(errno, $"{command} on {Name}", $"the server answered {VfioException.NameOf(errno)} ({VfioException.Describe(errno)})");
        }
        return reply;
    }

    private async Task ReadLoopAsync()
    {
        Exception reason = new VfioException(Errno.ECONNRESET, Name, "the server closed the connection");
        try
        {
            while (true)
            {
                if (await _socket.ReceiveHeaderAsync(_shutdown.Token).ConfigureAwait(false) is not var (header, fds))
                    break;
                VfioUserMessage message;
                MigDataTarget? target = null;
                try
                {
                    message = header.IsReply && _dataTargets.TryGetValue(header.MessageId, out target)
                        ? await ReceiveMigDataAsync(header, fds, target).ConfigureAwait(false)
                        : await _socket.ReceiveBodyAsync(header, fds, _shutdown.Token).ConfigureAwait(false);
                }
                catch
                {
                    fds.Dispose();
                    throw;
                }
                finally
                {
                    _dataTargets.TryRemove(header.MessageId, out _);
                }
                if (message.Header.IsReply)
                {
                    if (_pending.TryRemove(message.Header.MessageId, out var tcs))
                        tcs.TrySetResult(message);
                    else
                    {
                        message.Dispose(); // a reply to a request the caller abandoned
                        target?.Held?.Dispose();
                    }
                    continue;
                }
                using (message)
                    await ServeServerCommandAsync(message, _socket).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException)
        {
            reason = new VfioException(Errno.ECANCELED, Name, "the client was closed");
        }
        catch (VfioException ex)
        {
            reason = ex;
        }
        finally
        {
            _closedReason = reason;
            if (!_shutdown.IsCancellationRequested)
                VfioUserLog.ConnectionClosed(_logger, Name, reason);
            foreach (var key in _pending.Keys)
            {
                if (_pending.TryRemove(key, out var tcs))
                    tcs.TrySetException(new VfioException(Errno.ECONNRESET, Name, "the connection closed: " + reason.Message, reason));
            }
        }
    }

    // A well-formed MIG_DATA_READ reply: {argsz, size} head, then size data bytes into the reader's buffer (the
    // rest into the target's overflow), then any padding (libvfio-user pads to the requested size) is drained.
    // Anything else (error, fds, a size the request did not allow) is received whole for the reader to judge.
    private async ValueTask<VfioUserMessage> ReceiveMigDataAsync(VfioUserHeader header, ReceivedFds fds, MigDataTarget target)
    {
        int length = header.PayloadLength;
        if (header.IsError || fds.Count > 0 || length < MigDataPayload.Length)
            return await _socket.ReceiveBodyAsync(header, fds, _shutdown.Token).ConfigureAwait(false);
        await _socket.ReceivePayloadAsync(header, _migDataHead, _shutdown.Token).ConfigureAwait(false);
        var head = MigDataPayload.Decode(_migDataHead, "MIG_DATA_READ reply");
        int data = length - MigDataPayload.Length;
        if (head.Size > (uint)target.Requested || head.Size > (uint)data)
        {
            var whole = ArrayPool<byte>.Shared.Rent(length);
            try
            {
                _migDataHead.CopyTo(whole, 0);
                await _socket.ReceivePayloadAsync(header, whole.AsMemory(MigDataPayload.Length, data), _shutdown.Token).ConfigureAwait(false);
            }
            catch
            {
                ArrayPool<byte>.Shared.Return(whole);
                throw;
            }
            return new VfioUserMessage(header, whole, length, fds);
        }
        int size = (int)head.Size;
        int direct = 0;
        SplicedChunk? held = null;
        var provided = target.Destination;
        if (!provided.IsCompleted)
        {
            // The reader is expected within microseconds while it streams. One that does not come (busy elsewhere,
            // or gone) must not hold up the connection: after a short wait the data goes to the overflow.
            try
            {
                await provided.WaitAsync(_options.ReaderWait, _shutdown.Token).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
                target.Abandon();
            }
        }
        var placement = await provided.WaitAsync(_shutdown.Token).ConfigureAwait(false);
        if (placement.Hold && size > 0 && _socket is IPipeSplicingTransport splicing && RentPipe() is { } pipe)
        {
            try
            {
                direct = await splicing.ReceiveIntoPipeAsync(header, pipe, size, _shutdown.Token).ConfigureAwait(false);
            }
            catch
            {
                _pipes!.Return(pipe);
                throw;
            }
            Interlocked.Add(ref _splicedReceived, direct);
            if (direct > 0)
                held = new SplicedChunk(pipe, direct, _pipes!);
            else
                _pipes!.Return(pipe);
        }
        else
        {
            var destination = target.BeginWrite(placement.Buffer);
            try
            {
                direct = Math.Min(size, destination.Length);
                await _socket.ReceivePayloadAsync(header, destination[..direct], _shutdown.Token).ConfigureAwait(false);
            }
            finally
            {
                target.EndWrite();
            }
        }
        var overflow = ArrayPool<byte>.Shared.Rent(Math.Max(1, data - direct)); // overflow data, then the padding
        try
        {
            await _socket.ReceivePayloadAsync(header, overflow.AsMemory(0, size - direct), _shutdown.Token).ConfigureAwait(false);
            if (data > size)
                await _socket.ReceivePayloadAsync(header, overflow.AsMemory(size - direct, data - size), _shutdown.Token).ConfigureAwait(false);
        }
        catch
        {
            ArrayPool<byte>.Shared.Return(overflow);
            held?.Dispose();
            throw;
        }
        target.SetPlaced(direct, overflow, size - direct, held);
        return new VfioUserMessage(header, ArrayPool<byte>.Shared.Rent(1), 0, fds);
    }

    // A kernel pipe for a held reply, from a pool made on first use with room for a whole reply (read loop only).
    private KernelPipe? RentPipe() => (_pipes ??= new KernelPipePool(ReadChunk)).Rent();

    /// <summary>Shuts the socket down (pending receives fail at once) without disposing the client.</summary>
    internal void Sever() => _socket.Shutdown();

    /// <summary>Every MIG_DATA_READ reply still waiting for its reader's buffer goes to an overflow array instead.</summary>
    internal void AbandonDataTargets()
    {
        foreach (var target in _dataTargets.Values)
            target.Abandon();
    }

    // Server→client commands: DMA_READ / DMA_WRITE on message-mode regions (16-byte {addr, count} head).
    private async Task ServeServerCommandAsync(VfioUserMessage message, IVfioUserTransport replyTo)
    {
        var h = message.Header;
        byte[] reply;
        Errno error = Errno.None;
        try
        {
            if (message.Fds.Count > 0)
                VfioException.Throw(Errno.EINVAL, h.Command.ToString(), "fds on a server command");
            switch (h.Command)
            {
                case VfioUserCommand.DmaRead:
                {
                    var r = DmaAccessPayload.Decode(message.Payload, "DMA_READ");
                    if (r.Count > (ulong)_options.MaxDataTransferBytes)
                        VfioException.Throw(Errno.E2BIG, "DMA_READ", $"count {r.Count} exceeds our max_data_xfer_size");
                    reply = new byte[VfioUserHeader.Size + DmaAccessPayload.Length + (int)r.Count];
                    r.Encode(reply.AsSpan(VfioUserHeader.Size));
                    FindDmaMemory(r.Address, (int)r.Count).Span.CopyTo(reply.AsSpan(VfioUserHeader.Size + DmaAccessPayload.Length));
                    break;
                }
                case VfioUserCommand.DmaWrite:
                {
                    var r = DmaAccessPayload.Decode(message.Payload, "DMA_WRITE");
                    if (r.Count > (ulong)(message.PayloadLength - DmaAccessPayload.Length))
                        VfioException.Throw(Errno.EINVAL, "DMA_WRITE", $"count {r.Count} but {message.PayloadLength - DmaAccessPayload.Length} data bytes");
                    message.Payload.Slice(DmaAccessPayload.Length, (int)r.Count).CopyTo(FindDmaMemory(r.Address, (int)r.Count).Span);
                    reply = new byte[VfioUserHeader.Size + DmaAccessPayload.Length];
                    r.Encode(reply.AsSpan(VfioUserHeader.Size));
                    break;
                }
                default:
                    throw new VfioException(Errno.ENOSYS, $"server command {(ushort)h.Command}", "not a server-to-client command");
            }
        }
        catch (VfioException ex)
        {
            error = ex.Errno;
            reply = new byte[VfioUserHeader.Size];
        }
        if (h.NoReply)
            return;
        var flags = VfioUserMessageFlags.Reply | (error != Errno.None ? VfioUserMessageFlags.Error : 0);
        new VfioUserHeader(h.MessageId, h.Command, (uint)reply.Length, flags, (uint)error).Encode(reply);
        await replyTo.SendAsync(reply, null, _shutdown.Token).ConfigureAwait(false);
    }

    private Memory<byte> FindDmaMemory(ulong address, int count)
    {
        lock (_dmaLock)
        {
            foreach (var (iova, memory) in _dmaMemory)
            {
                if (address >= iova && address - iova <= (ulong)memory.Length && (ulong)count <= (ulong)memory.Length - (address - iova))
                    return memory.Slice((int)(address - iova), count);
            }
        }
        throw new VfioException(Errno.EFAULT, "DMA", $"0x{address:x}+{count} is not in any message-mode region we mapped");
    }

    /// <summary>Closes the connection; pending requests fail with ECONNRESET/ECANCELED.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_shutdown.IsCancellationRequested)
            return;
        _shutdown.Cancel();
        _socket.Shutdown();
        await CloseTwinSocketAsync().ConfigureAwait(false);
        if (_readLoop is not null)
        {
            try
            {
                await _readLoop.ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
            }
        }
        _socket.Dispose();
        _pipes?.Dispose();
        _shutdown.Dispose();
    }
}
