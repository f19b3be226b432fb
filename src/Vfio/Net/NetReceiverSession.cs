using System.Buffers.Binary;

namespace Vfio.Net;

using Stream = System.IO.Stream;

/// <summary>
/// The receiving end of a migration session (made by <see cref="NetListener.AcceptSessionAsync"/>): the
/// channels' segments are reassembled in order into <see cref="MigrationStream"/>; <see cref="ReturnStream"/>
/// and <see cref="SendStatusAsync"/> answer the sender over the control channel.
/// </summary>
public sealed class NetReceiverSession : NetSession
{
    private readonly NetSecurityOptions _security;
    private readonly ReorderBuffer _reorder;
    private readonly Task[] _readers;
    private readonly Task _watchdog;
    private readonly TaskCompletionSource _bye = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private byte[] _byePayload = [];
    private ulong _returnSeq;
    private bool _statusSent;

    internal NetReceiverSession(NetChannel[] channels, Guid sessionId, NetSecurityOptions security, NetSessionOptions options)
        : base(channels, sessionId, "receiver", options.LoggerFactory)
    {
        _security = security;
        _reorder = new ReorderBuffer(options.MaxQueuedBytes, options.MaxQueuedSegments);
        _readers = new Task[channels.Length];
        for (int i = 0; i < channels.Length; i++)
        {
            var ch = channels[i];
            _readers[i] = Task.Run(() => ReaderLoopAsync(ch));
        }
        _watchdog = Task.Run(WatchdogLoopAsync);
        MigrationStream = new DelegatingStream(ReadMigrationAsync, null, null);
        ReturnStream = new DelegatingStream(null, WriteReturnAsync, null);
    }

    /// <summary>The sender's address (control channel).</summary>
    public string Peer => Channels[0].Socket.RemoteEndPoint?.ToString() ?? "?";

    /// <summary>The reassembled migration stream (read-only); ends (0) after the sender's last segment.</summary>
    public Stream MigrationStream { get; }

    /// <summary>
    /// The reassembled migration stream as a pipe whose buffers are the received segments themselves (no copy).
    /// For the engine (<see cref="NetMigration"/>); use either this or <see cref="MigrationStream"/>, not both.
    /// </summary>
    internal System.IO.Pipelines.PipeReader CreateMigrationReader() => new ReorderPipeReader(_reorder, Channels[0].Sealed);

    /// <summary>The return path to the sender (write-only).</summary>
    public Stream ReturnStream { get; }

    /// <summary>The reassembly buffer (cap, peak use).</summary>
    internal ReorderBuffer Reassembly => _reorder;

    /// <summary>
    /// Sends the final status, then waits (bounded by the idle timeout) for the sender's goodbye. Returns the
    /// sender's verdict (0 not verified, 1 digests match, 2 digests differ, 3 not comparable) and the rest of the
    /// Bye payload (see <see cref="NetDigest.DecodeBye"/>); (0, empty) when the sender closed without a Bye.
    /// </summary>
    public async Task<(byte Verdict, byte[] SourceDigest)> SendStatusAsync(NetStatus status, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(status);
        ThrowIfFaulted();
        await Channels[0].WriteFrameAsync(NetFrameType.Status, 0, status.Encode(), Linked(cancellationToken)).ConfigureAwait(false);
        _statusSent = true;
        try
        {
            await _bye.Task.WaitAsync(_security.IdleTimeout, cancellationToken).ConfigureAwait(false);
            byte[] p = _byePayload;
            return p.Length == 0 ? ((byte)0, []) : (p[0], p[1..]);
        }
        catch (TimeoutException)
        {
            throw new VfioException(Errno.ETIMEDOUT, "receive", "the sender did not acknowledge the final status");
        }
    }

    /// <summary>Tells the sender the migration is abandoned (best effort, bounded), then ends the session.</summary>
    public Task AbortAsync(Errno errno, string reason)
        => MarkTellAndCloseAsync(new VfioException(Errno.ECANCELED, "receive", "the migration was abandoned: " + reason), errno, reason);

    private CancellationToken Linked(CancellationToken token) => token.CanBeCanceled ? token : Cts.Token;

    private ValueTask<int> ReadMigrationAsync(Memory<byte> buffer, CancellationToken cancellationToken)
        => _reorder.ReadAsync(buffer, cancellationToken);

    private async ValueTask WriteReturnAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        ThrowIfFaulted();
        while (data.Length > 0)
        {
            int n = Math.Min(data.Length, 64 << 10);
            await Channels[0].WriteFrameAsync(NetFrameType.Return, _returnSeq++, data[..n], Linked(cancellationToken)).ConfigureAwait(false);
            data = data[n..];
        }
    }

    private async Task ReaderLoopAsync(NetChannel channel)
    {
        bool ended = false;
        int trailer = channel.Sealed ? NetProtocol.TagSize : NetProtocol.CrcTrailerSize;
        // A Data frame's room in the reorder buffer is made between its header and its payload: a channel waits
        // for room before it reads, so the buffer's cap bounds everything the channels hold, however many there are.
        // That wait is our own backpressure: the idle watchdog skips it, and the payload's read starts a fresh clock.
        async ValueTask admit(NetFrameHeader header, CancellationToken token)
        {
            if (header.Type != NetFrameType.Data || ended)
                return;
            channel.WaitingForRoom = true;
            try
            {
                await _reorder.ReserveAsync(header.Sequence, header.PayloadLength, header.PayloadLength + trailer, channel.Name, token).ConfigureAwait(false);
            }
            finally
            {
                channel.WaitingForRoom = false;
                channel.NoteReading();
            }
        }
        try
        {
            while (true)
            {
                channel.NoteReading();
                var frame = await channel.ReadFrameAsync(admit, Cts.Token).ConfigureAwait(false);
                if (frame is null)
                {
                    // On the control channel only a goodbye ends the session: an end of stream after the status is
                    // a sender that never confirmed it, not a finished migration.
                    if (channel.Index == 0 && !_bye.Task.IsCompleted)
                        Fault(new VfioException(Errno.ECONNRESET, $"receive on {channel.Name}", _statusSent
                            ? "the sender closed the connection without acknowledging the final status"
                            : "the sender closed the connection before the migration finished"));
                    else if (channel.Index != 0 && !ended)
                        await FaultAfterPeerReasonAsync(new VfioException(Errno.ECONNRESET, $"receive on {channel.Name}", "the sender closed the connection before the migration finished"), channel.Name, waitForControl: true).ConfigureAwait(false);
                    return;
                }
                bool keep = false;
                try
                {
                    switch (frame.Type)
                    {
                        case NetFrameType.Data:
                            if (ended)
                                throw new VfioException(Errno.EPROTO, $"receive on {channel.Name}", "data after the end of the stream");
                            keep = true;
                            _reorder.AddReserved(frame, channel.Name);
                            break;
                        case NetFrameType.DataEnd:
                            if (frame.Length != 8)
                                throw new VfioException(Errno.EBADMSG, $"receive on {channel.Name}", "malformed end-of-stream frame");
                            _reorder.SetEnd(frame.Sequence, BinaryPrimitives.ReadInt64BigEndian(frame.Payload.Span), channel.Name);
                            ended = true;
                            if (channel.Index != 0)
                                channel.ExpectingFrames = false;
                            break;
                        case NetFrameType.Abort:
                            var (errno, reason) = NetStatus.DecodeAbort(frame.Payload.Span);
                            Fault(new VfioException(errno, "sender", "the sender abandoned the migration: " + reason));
                            return;
                        case NetFrameType.Keepalive:
                            break;
                        case NetFrameType.Bye when channel.Index == 0:
                            channel.ExpectingFrames = false;
                            if (frame.Length > NetDigest.MaxByeLength)
                                throw new VfioException(Errno.EBADMSG, $"receive on {channel.Name}", "malformed goodbye frame");
                            _byePayload = frame.Payload.ToArray();
                            _bye.TrySetResult();
                            break;
                        default:
                            throw new VfioException(Errno.EPROTO, $"receive on {channel.Name}", $"unexpected {frame.Type} frame from the sender");
                    }
                }
                finally
                {
                    if (!keep)
                        frame.Return();
                }
            }
        }
        catch (VfioException e) when (e.Errno is Errno.EBADMSG or Errno.EPROTO && FaultReason is null)
        {
            await TellAndFaultAsync(e).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            await FaultAfterPeerReasonAsync(e, $"receive on {channel.Name}", waitForControl: channel.Index != 0).ConfigureAwait(false);
        }
    }

    private Task TellAndFaultAsync(VfioException e) => MarkTellAndCloseAsync(e, e.Errno, e.Message);

    private async Task WatchdogLoopAsync()
    {
        var idle = _security.IdleTimeout;
        var tick = TimeSpan.FromMilliseconds(Math.Clamp(idle.TotalMilliseconds / 6, 20, 1000));
        var control = Channels[0];
        try
        {
            while (!Cts.IsCancellationRequested)
            {
                await Task.Delay(tick, Cts.Token).ConfigureAwait(false);
                foreach (var ch in Channels)
                {
                    if (ch.ExpectingFrames && !ch.WaitingForRoom && ch.SinceLastReceived > idle)
                    {
                        // Tell the sender why (if the control channel still works), then end.
                        await TellAndFaultAsync(new VfioException(Errno.ETIMEDOUT, $"receive on {ch.Name}", $"nothing heard from the sender for {idle.TotalSeconds:0.#} s (--idle-timeout): the peer stalled or the link is down")).ConfigureAwait(false);
                        return;
                    }
                }
                if (control.SinceLastSent > idle / 3)
                {
                    try
                    {
                        _ = control.WriteFrameAsync(NetFrameType.Keepalive, 0, ReadOnlyMemory<byte>.Empty, Cts.Token).AsTask().ContinueWith(static t => _ = t.Exception, TaskScheduler.Default);
                    }
                    catch (VfioException)
                    {
                    }
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    private protected override Task ControlReader => _readers[0];

    private protected override void OnFault(Exception e)
    {
        _reorder.Fault(e);
        _bye.TrySetException(e);
        _ = _bye.Task.Exception;
    }

    /// <inheritdoc/>
    public override async ValueTask DisposeAsync()
    {
        if (MarkDisposed(out var disposed))
        {
            _reorder.Fault(disposed);
            _bye.TrySetResult();
            await Cts.CancelAsync().ConfigureAwait(false);
        }
        foreach (var c in Channels)
            await c.DisposeAsync().ConfigureAwait(false);
        try
        {
            await Task.WhenAll([.. _readers, _watchdog]).ConfigureAwait(false);
        }
        catch (Exception e) when (e is OperationCanceledException or VfioException or IOException)
        {
        }
        // Cts is not disposed: late fire-and-forget keepalives may still read its token.
    }
}
