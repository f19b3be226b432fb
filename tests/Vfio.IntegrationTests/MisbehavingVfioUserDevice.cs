using System.Buffers.Binary;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Vfio.Migration;
using Vfio.Uapi;
using Vfio.User.Protocol;
using Vfio.User.Transport;

namespace Vfio.IntegrationTests;

/// <summary>What a misbehaving vfio-user device does differently from ours (the ways real devices do).</summary>
[Flags]
public enum Misbehaviour
{
    None = 0,

    /// <summary>libvfio-user ≥ PR #844 (vfio-user.md §6.10): DEVICE_RESET refused (EINVAL) in STOP/STOP_COPY, elsewhere it succeeds and leaves the migration state alone.</summary>
    ResetKeepsState = 1 << 0,

    /// <summary>libvfio-user (vfio-user.md §6.12): DMA_LOGGING_START uses only the page size; the ranges are ignored, the request echoed.</summary>
    IgnoreLoggingRanges = 1 << 1,

    /// <summary>libvfio-user (vfio-user.md §7.6): DMA_LOGGING_REPORT answers only for a range that is exactly one DMA_MAP'd region, else ENOENT.</summary>
    ReportOnlyMappedRegions = 1 << 2,

    /// <summary>MIG_DATA_READ of any size but 64 bytes is refused with EINVAL (a device with a fixed record size).</summary>
    Only64ByteReads = 1 << 3,

    /// <summary>The device dies (the connection closes) at its first DMA_LOGGING_START: halfway through a check run.</summary>
    DieAtLoggingStart = 1 << 4,

    /// <summary>The device dies on a MIG_DATA_READ larger than 64 bytes (libvfio-user's gpio sample asserts its read size).</summary>
    DieOnLargeRead = 1 << 5,

    /// <summary>MIG_DATA_READ outside PRE_COPY/STOP_COPY is answered with zeros instead of an error (a stale stream that keeps reading).</summary>
    ReadsOutsideSession = 1 << 6,
}

/// <summary>
/// A vfio-user device built in the test suite that misbehaves the way real ones do: our server with the sample device,
/// behind an interposer on its own socket that answers some requests itself, rewrites others, or closes the
/// connection. Requests are relayed one at a time (fds included); replies keep their order.
/// </summary>
internal sealed class MisbehavingVfioUserDevice : IAsyncDisposable
{
    private readonly TestSupport.ServerFixture _server;
    private readonly Socket _listener;
    private readonly Misbehaviour _behaviour;
    private readonly CancellationTokenSource _cts = new();
    private readonly Task _relay;
    private readonly List<(ulong Addr, ulong Size)> _mapped = [];
    private VfioMigrationState _state = VfioMigrationState.Running;

    public MisbehavingVfioUserDevice(Misbehaviour behaviour, long sizeBytes = 64 << 10)
    {
        _behaviour = behaviour;
        _server = new TestSupport.ServerFixture(new Sample.SampleDeviceOptions { SizeBytes = sizeBytes, Capabilities = VfioMigrationFlags.StopCopy | VfioMigrationFlags.PreCopy });
        Path = TestSupport.TempSocketPath();
        _listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        _listener.Bind(new UnixDomainSocketEndPoint(Path));
        _listener.Listen(1);
        _relay = Task.Run(() => RelayAsync(_cts.Token));
    }

    /// <summary>The socket a client connects to.</summary>
    public string Path { get; }

    /// <summary>The state the device is in, as the server sees it.</summary>
    public VfioMigrationState ServerState => _server.Device.State;

    /// <summary>Set once the device has closed its connection on purpose.</summary>
    public bool Died { get; private set; }

    private async Task RelayAsync(CancellationToken ct)
    {
        using var accepted = await _listener.AcceptAsync(ct);
        using var client = new UnixFdSocket(accepted);
        using var upstream = await UnixFdSocket.ConnectAsync(_server.Path, ct);
        while (!ct.IsCancellationRequested)
        {
            using var request = await client.ReceiveAsync(ct);
            if (request is null)
                return;
            var h = request.Header;
            var payload = request.Payload.ToArray();
            var own = Answer(h, payload);
            if (own is { Die: true })
            {
                Died = true;
                return; // disposing both sockets closes the connection mid-run
            }
            if (own is { } answer)
            {
                var flags = VfioUserMessageFlags.Reply | (answer.Errno != 0 ? VfioUserMessageFlags.Error : 0);
                await client.SendAsync(VfioUserFrame.Build(h.MessageId, h.Command, flags, answer.Payload, answer.Errno), null, ct);
                continue;
            }
            var forwarded = Rewrite(h, payload);
            var fds = TakeFds(request.Fds);
            try
            {
                await upstream.SendAsync(VfioUserFrame.Build(h.MessageId, h.Command, h.Flags, forwarded, h.ErrorNo), fds, ct);
            }
            finally
            {
                foreach (var fd in fds)
                    fd.Dispose();
            }
            if (h.NoReply)
                continue;
            using var reply = await upstream.ReceiveAsync(ct);
            if (reply is null)
                return;
            var replyPayload = Observe(h, payload, reply.Header, reply.Payload.ToArray());
            var replyFds = TakeFds(reply.Fds);
            try
            {
                await client.SendAsync(VfioUserFrame.Build(reply.Header.MessageId, reply.Header.Command, reply.Header.Flags, replyPayload, reply.Header.ErrorNo), replyFds, ct);
            }
            finally
            {
                foreach (var fd in replyFds)
                    fd.Dispose();
            }
        }
    }

    private static List<SafeHandle> TakeFds(ReceivedFds fds)
    {
        var list = new List<SafeHandle>();
        for (int i = 0; i < fds.Count; i++)
            list.Add(fds.Take(i));
        return list;
    }

    private readonly record struct OwnAnswer(uint Errno, byte[] Payload, bool Die = false);

    private bool Has(Misbehaviour m) => (_behaviour & m) != 0;

    private static (VfioDeviceFeatureId Feature, bool Set) Feature(ReadOnlySpan<byte> payload)
    {
        var head = VfioDeviceFeature.Decode(payload);
        return (head.FeatureId, (head.Flags & (uint)VfioDeviceFeatureFlags.Set) != 0);
    }

    // Requests the device answers itself (or dies on); null = relay to the server.
    private OwnAnswer? Answer(VfioUserHeader h, byte[] payload)
    {
        switch (h.Command)
        {
            case VfioUserCommand.DeviceReset when Has(Misbehaviour.ResetKeepsState):
                return _state is VfioMigrationState.Stop or VfioMigrationState.StopCopy ? new OwnAnswer(22, []) : new OwnAnswer(0, []);
            case VfioUserCommand.MigDataRead:
            {
                uint size = BinaryPrimitives.ReadUInt32LittleEndian(payload.AsSpan(4));
                if (Has(Misbehaviour.DieOnLargeRead) && size > 64)
                    return new OwnAnswer(0, [], Die: true);
                if (Has(Misbehaviour.Only64ByteReads) && size != 64)
                    return new OwnAnswer(22, []);
                if (Has(Misbehaviour.ReadsOutsideSession) && _state is not (VfioMigrationState.StopCopy or VfioMigrationState.PreCopy))
                {
                    var zeros = new byte[8 + size];
                    BinaryPrimitives.WriteUInt32LittleEndian(zeros, 8 + size);
                    BinaryPrimitives.WriteUInt32LittleEndian(zeros.AsSpan(4), size);
                    return new OwnAnswer(0, zeros);
                }
                return null;
            }
            case VfioUserCommand.DeviceFeature when payload.Length >= VfioDeviceFeature.Size:
            {
                var (feature, _) = Feature(payload);
                if (feature == VfioDeviceFeatureId.DmaLoggingStart && Has(Misbehaviour.DieAtLoggingStart))
                    return new OwnAnswer(0, [], Die: true);
                if (feature == VfioDeviceFeatureId.DmaLoggingReport && Has(Misbehaviour.ReportOnlyMappedRegions) && payload.Length >= 32)
                {
                    ulong iova = BinaryPrimitives.ReadUInt64LittleEndian(payload.AsSpan(8)), length = BinaryPrimitives.ReadUInt64LittleEndian(payload.AsSpan(16));
                    if (!_mapped.Contains((iova, length)))
                        return new OwnAnswer(2, payload); // ENOENT, the request echoed
                }
                return null;
            }
            default:
                return null;
        }
    }

    // DMA_LOGGING_START without its ranges (num_ranges 0: "everything" on our server, what ignoring them amounts to).
    private byte[] Rewrite(VfioUserHeader h, byte[] payload)
    {
        if (h.Command != VfioUserCommand.DeviceFeature || !Has(Misbehaviour.IgnoreLoggingRanges) || payload.Length < 24)
            return payload;
        if (Feature(payload).Feature != VfioDeviceFeatureId.DmaLoggingStart)
            return payload;
        var bare = payload[..24];
        BinaryPrimitives.WriteUInt32LittleEndian(bare, 24);
        BinaryPrimitives.WriteUInt32LittleEndian(bare.AsSpan(16), 0);
        return bare;
    }

    // Tracks the migration state and DMA maps from the server's answers; returns the reply payload to send on.
    private byte[] Observe(VfioUserHeader h, byte[] request, VfioUserHeader replyHeader, byte[] reply)
    {
        if (replyHeader.IsError)
            return reply;
        switch (h.Command)
        {
            case VfioUserCommand.DmaMap when request.Length >= DmaMapPayload.Length:
                _mapped.Add((BinaryPrimitives.ReadUInt64LittleEndian(request.AsSpan(16)), BinaryPrimitives.ReadUInt64LittleEndian(request.AsSpan(24))));
                return reply;
            case VfioUserCommand.DmaUnmap when request.Length >= 24:
                _mapped.Remove((BinaryPrimitives.ReadUInt64LittleEndian(request.AsSpan(8)), BinaryPrimitives.ReadUInt64LittleEndian(request.AsSpan(16))));
                return reply;
            case VfioUserCommand.DeviceReset:
                _state = VfioMigrationState.Running;
                return reply;
            case VfioUserCommand.DeviceFeature when request.Length >= VfioDeviceFeature.Size:
            {
                var (feature, set) = Feature(request);
                if (feature == VfioDeviceFeatureId.MigDeviceState && reply.Length >= 12)
                    _state = (VfioMigrationState)BinaryPrimitives.ReadUInt32LittleEndian((set ? request : reply).AsSpan(8));
                // libvfio-user echoes the START request it was sent, ranges and all.
                if (feature == VfioDeviceFeatureId.DmaLoggingStart && Has(Misbehaviour.IgnoreLoggingRanges))
                    return request;
                return reply;
            }
            default:
                return reply;
        }
    }

    public async ValueTask DisposeAsync()
    {
        _cts.Cancel();
        _listener.Dispose();
        try
        {
            await _relay.WaitAsync(TimeSpan.FromSeconds(10));
        }
        catch (Exception ex) when (ex is OperationCanceledException or SocketException or VfioException or ObjectDisposedException)
        {
        }
        File.Delete(Path);
        await _server.DisposeAsync();
        _cts.Dispose();
    }
}
