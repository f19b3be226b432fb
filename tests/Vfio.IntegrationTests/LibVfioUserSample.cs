using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Vfio.Interop;
using Vfio.User.Protocol;
using Vfio.User.Transport;

namespace Vfio.IntegrationTests;

/// <summary>
/// A stand-in for libvfio-user's <c>samples/server</c> at efd091b with BAR1 = 0x4000 (spec §1 item 10), built from
/// the spec's record of its wire behaviour (§4.2, §5, §6, §7.2–§7.5, §8): its VERSION reply text, DEVICE_GET_INFO
/// {16, 3, 9, 5}, BAR1 mmappable with a two-area sparse cap and an fd, EINVAL for MIG_DATA_SIZE, request-echo
/// SET replies (error replies included), MIG_DATA_READ replies padded to 8 + requested, command gating in
/// STOP/STOP_COPY, and the sample device itself: BAR0 a time_t whose reads return now − t, BAR1 reads that ignore
/// the offset, the stream BAR1 (pre-copy) and BAR1 ‖ BAR0 (stop-copy), a destination that takes exactly
/// BAR1 + 8 bytes, and its asserts, which abort the process (here: drop the connection, <see cref="Aborted"/>).
/// Like the sample, it serves one client and ends when that client leaves.
/// </summary>
internal sealed class LibVfioUserSample : IAsyncDisposable
{
    public const int Bar1Size = 0x4000;
    private const uint Stop = 1, Running = 2, StopCopy = 3, Resuming = 4, PreCopy = 6;
    private const int Total = Bar1Size + 8;
    private const string VersionJson = "{ \"capabilities\": { \"max_msg_fds\": 8, \"max_data_xfer_size\": 1048576, \"migration\": { \"pgsize\": 4096 } } }";
    private readonly Socket _listener;
    private readonly byte[] _config = new byte[256];
    private readonly SafeFdHandle _bar1Fd = TestSupport.MemFd(Bar1Size);
    private readonly Task _run;
    private long _clientMaxXfer = 1 << 20;
    private int _transferred;

    /// <param name="bar1">BAR1's initial content (what a guest would have written); BAR0 starts at 0 as in the sample.</param>
    public LibVfioUserSample(byte[]? bar1 = null)
    {
        bar1?.CopyTo(Bar1, 0);
        BinaryPrimitives.WriteUInt16LittleEndian(_config, 0xdead);
        BinaryPrimitives.WriteUInt16LittleEndian(_config.AsSpan(2), 0xbeef);
        BinaryPrimitives.WriteUInt16LittleEndian(_config.AsSpan(0x2c), 0xcafe);
        BinaryPrimitives.WriteUInt16LittleEndian(_config.AsSpan(0x2e), 0xbabe);
        Path = TestSupport.TempSocketPath();
        _listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        _listener.Bind(new UnixDomainSocketEndPoint(Path));
        _listener.Listen(0);
        _run = Task.Run(ServeAsync);
    }

    public string Path { get; }

    public long Bar0 { get; private set; }

    public byte[] Bar1 { get; } = new byte[Bar1Size];

    /// <summary>The wire state (ERROR 0 … PRE_COPY_P2P 7); a libvfio-user device starts RUNNING.</summary>
    public uint State { get; private set; } = Running;

    /// <summary>One of the sample's asserts failed: the real process would have died with SIGABRT.</summary>
    public bool Aborted { get; private set; }

    /// <summary>Commands received, in order.</summary>
    public List<VfioUserCommand> Commands { get; } = [];

    /// <summary>Waits until the client left (the sample then exits).</summary>
    public Task Finished => _run;

    private async Task ServeAsync()
    {
        using var accepted = await _listener.AcceptAsync().ConfigureAwait(false);
        using var socket = new UnixFdSocket(accepted, 8, (1 << 20) + 32);
        bool negotiated = false;
        while (true)
        {
            VfioUserMessage? message;
            try
            {
                message = await socket.ReceiveAsync().ConfigureAwait(false);
            }
            catch (VfioException)
            {
                return;
            }
            if (message is null)
                return;
            using (message)
            {
                var h = message.Header;
                Commands.Add(h.Command);
                byte[] reply;
                uint errno;
                List<System.Runtime.InteropServices.SafeHandle>? fds = null;
                if (!negotiated && h.Command != VfioUserCommand.Version)
                {
                    (reply, errno) = ([], 22);
                }
                else
                {
                    (reply, errno) = Handle(message, ref negotiated, out bool withFd);
                    if (withFd)
                        fds = [_bar1Fd];
                }
                if (Aborted)
                    return;
                var frame = new byte[16 + reply.Length];
                var flags = VfioUserMessageFlags.Reply | (errno != 0 ? VfioUserMessageFlags.Error : 0);
                new VfioUserHeader(h.MessageId, h.Command, (uint)frame.Length, flags, errno).Encode(frame);
                reply.CopyTo(frame, 16);
                await socket.SendAsync(frame, fds).ConfigureAwait(false);
                if (!negotiated)
                    return; // a failed VERSION closes the connection
            }
        }
    }

    private (byte[] Reply, uint Errno) Handle(VfioUserMessage message, ref bool negotiated, out bool withFd)
    {
        withFd = false;
        var h = message.Header;
        var p = message.Payload;
        if (h.Command == VfioUserCommand.Version)
        {
            if (negotiated)
                return ([], 22);
            negotiated = Negotiate(p);
            if (!negotiated)
                return ([], 22);
            var json = Encoding.UTF8.GetBytes(VersionJson + "\0");
            var r = new byte[4 + json.Length];
            BinaryPrimitives.WriteUInt16LittleEndian(r.AsSpan(2), Math.Min(BinaryPrimitives.ReadUInt16LittleEndian(p[2..]), (ushort)2));
            json.CopyTo(r, 4);
            return (r, 0);
        }
        if (!h.IsCommand || (p.IsEmpty && h.Command != VfioUserCommand.DeviceReset) || !Allowed(h.Command))
            return ([], 22);
        switch (h.Command)
        {
            case VfioUserCommand.DeviceGetInfo:
                return p.Length < 16 || BinaryPrimitives.ReadUInt32LittleEndian(p) < 16 ? ([], 22u) : (new DeviceInfoPayload(16, 3, 9, 5).Encode(), 0u);
            case VfioUserCommand.DeviceGetRegionInfo:
                return RegionInfo(p, out withFd);
            case VfioUserCommand.DeviceGetIrqInfo:
            {
                uint index = p.Length < 16 ? 99 : BinaryPrimitives.ReadUInt32LittleEndian(p[8..]);
                return index >= 5 ? ([], 22u) : (new IrqInfoPayload(16, 1, index, index is 0 or 3 or 4 ? 1u : 0u).Encode(), 0u);
            }
            case VfioUserCommand.RegionRead:
            case VfioUserCommand.RegionWrite:
                return RegionAccess(h.Command == VfioUserCommand.RegionWrite, p);
            case VfioUserCommand.DmaMap:
            case VfioUserCommand.DeviceSetIrqs:
            case VfioUserCommand.DeviceReset:
                return ([], 0);
            case VfioUserCommand.DmaUnmap:
                return (p[..Math.Min(24, p.Length)].ToArray(), 0);
            case VfioUserCommand.DeviceFeature:
                return Feature(p);
            case VfioUserCommand.MigDataRead:
                return MigDataRead(p);
            case VfioUserCommand.MigDataWrite:
                return MigDataWrite(p);
            default:
                return ([], 22);
        }
    }

    private bool Negotiate(ReadOnlySpan<byte> p)
    {
        if (p.Length < 4 || BinaryPrimitives.ReadUInt16LittleEndian(p) != 0)
            return false;
        if (p.Length == 4)
            return true;
        if (p[^1] != 0)
            return false;
        try
        {
            using var doc = JsonDocument.Parse(p[4..^1].ToArray());
            if (!doc.RootElement.TryGetProperty("capabilities", out var caps) || caps.ValueKind != JsonValueKind.Object)
                return false;
            if (caps.TryGetProperty("max_msg_fds", out var fds) && (fds.ValueKind != JsonValueKind.Number || fds.GetInt64() is < 0 or > 1024))
                return false;
            if (caps.TryGetProperty("max_data_xfer_size", out var xfer))
            {
                if (xfer.ValueKind != JsonValueKind.Number)
                    return false;
                _clientMaxXfer = xfer.GetInt64();
            }
            return !caps.TryGetProperty("migration", out var mig) || !mig.TryGetProperty("pgsize", out var pg) || pg.GetInt64() == 4096;
        }
        catch (JsonException)
        {
            return false;
        }
    }

    // spec §7.4: STOP serves REGION_READ/WRITE, DEVICE_FEATURE and MIG_DATA_READ; STOP_COPY only the last two.
    private bool Allowed(VfioUserCommand command) => State switch
    {
        Stop => command is VfioUserCommand.RegionRead or VfioUserCommand.RegionWrite or VfioUserCommand.DeviceFeature or VfioUserCommand.MigDataRead,
        StopCopy => command is VfioUserCommand.DeviceFeature or VfioUserCommand.MigDataRead,
        _ => true,
    };

    // spec §6.4: the reply is min(32 + caps, argsz) long; caps, the CAPS flag, cap_offset and the fd come only when
    // argsz holds them all. BAR1 carries a sparse cap {0, 0x1000}, {0x2000, 0x1000}.
    private static (byte[], uint) RegionInfo(ReadOnlySpan<byte> p, out bool withFd)
    {
        withFd = false;
        if (p.Length < 32 || BinaryPrimitives.ReadUInt32LittleEndian(p) < 32 || BinaryPrimitives.ReadUInt32LittleEndian(p[8..]) >= 9)
            return ([], 22);
        uint argsz = BinaryPrimitives.ReadUInt32LittleEndian(p), index = BinaryPrimitives.ReadUInt32LittleEndian(p[8..]);
        (uint flags, ulong size) = index switch { 0 => (3u, 8ul), 1 => (7u, (ulong)Bar1Size), 7 => (3u, 256ul), _ => (0u, 0ul) };
        if (index != 1)
            return (new RegionInfoPayload(32, flags, index, 0, size, 0).Encode(), 0);
        if (argsz < 80)
            return (new RegionInfoPayload(80, flags, index, 0, size, 0).Encode(), 0);
        var r = new byte[80];
        new RegionInfoPayload(80, flags | RegionInfoPayload.FlagCaps, index, 32, size, 0).Encode().CopyTo(r, 0);
        BinaryPrimitives.WriteUInt16LittleEndian(r.AsSpan(32), 1);
        BinaryPrimitives.WriteUInt16LittleEndian(r.AsSpan(34), 1);
        BinaryPrimitives.WriteUInt32LittleEndian(r.AsSpan(40), 2);
        BinaryPrimitives.WriteUInt64LittleEndian(r.AsSpan(56), 0x1000);
        BinaryPrimitives.WriteUInt64LittleEndian(r.AsSpan(64), 0x2000);
        BinaryPrimitives.WriteUInt64LittleEndian(r.AsSpan(72), 0x1000);
        withFd = true;
        return (r, 0);
    }

    // spec §6.8 and the sample's bar0_access/bar1_access.
    private (byte[], uint) RegionAccess(bool write, ReadOnlySpan<byte> p)
    {
        if (p.Length < 16)
            return ([], 22);
        var a = RegionAccessPayload.Decode(p, "REGION");
        ulong size = a.Region switch { 0 => 8, 1 => Bar1Size, 7 => 256, _ => 0 };
        if (a.Count > 1 << 20 || a.Region >= 9 || (write && p.Length - 16 != a.Count) || a.Offset + a.Count > size)
            return ([], 22);
        if (a.Count == 0)
            return ([], 0);
        var data = p.Slice(16, write ? (int)a.Count : 0);
        var r = new byte[16 + (write ? 0 : (int)a.Count)];
        p[..16].CopyTo(r);
        switch (a.Region)
        {
            case 0:
                if (a.Count != 8 || a.Offset != 0)
                    return ([], 22);
                if (!write)
                {
                    BinaryPrimitives.WriteInt64LittleEndian(r.AsSpan(16), DateTimeOffset.UtcNow.ToUnixTimeSeconds() - Bar0);
                    break;
                }
                long t = BinaryPrimitives.ReadInt64LittleEndian(data);
                if (State == Running && !TimerArmable(t))
                    return ([], 22);
                Bar0 = t;
                break;
            case 1:
                if (write)
                    data.CopyTo(Bar1.AsSpan((int)a.Offset));
                else
                    Bar1.AsSpan(0, (int)a.Count).CopyTo(r.AsSpan(16)); // the sample ignores the offset on reads
                break;
            default:
                if (!write)
                    _config.AsSpan((int)a.Offset, (int)a.Count).CopyTo(r.AsSpan(16));
                break;
        }
        return (r, 0);
    }

    // arm_timer: setitimer() with it_value = t − now fails (EINVAL) when that is negative.
    private static bool TimerArmable(long t) => t - DateTimeOffset.UtcNow.ToUnixTimeSeconds() >= 0;

    // spec §6.12: features 1 (GET), 2 (GET/SET), 6/7 (SET), 8 (GET), each also PROBE; anything else EINVAL.
    private (byte[], uint) Feature(ReadOnlySpan<byte> p)
    {
        if (p.Length < 8)
            return ([], 22);
        uint flags = BinaryPrimitives.ReadUInt32LittleEndian(p[4..]);
        uint feature = flags & 0xffff, ops = (flags >> 16) & 7;
        uint allowed = feature switch { 1 => 1 | 4, 2 => 1 | 2 | 4, 6 or 7 => 2 | 4, 8 => 1 | 4, _ => 0 };
        if (allowed == 0 || ops == 0 || (ops & ~allowed) != 0)
            return ([], 22);
        var echo = p.ToArray();
        if ((ops & 4) != 0)
            return (echo, 0);
        switch (feature)
        {
            case 1:
                var caps = new byte[16];
                BinaryPrimitives.WriteUInt32LittleEndian(caps, 16);
                BinaryPrimitives.WriteUInt32LittleEndian(caps.AsSpan(4), flags);
                BinaryPrimitives.WriteUInt64LittleEndian(caps.AsSpan(8), 0x5);
                return (caps, 0);
            case 2 when (ops & 1) != 0:
                var state = new byte[16];
                BinaryPrimitives.WriteUInt32LittleEndian(state, 16);
                BinaryPrimitives.WriteUInt32LittleEndian(state.AsSpan(4), flags);
                BinaryPrimitives.WriteUInt32LittleEndian(state.AsSpan(8), State);
                return (state, 0);
            case 2:
                // The error reply carries the 16-byte echo too (spec §3, §8).
                return (echo, p.Length >= 12 && SetState(BinaryPrimitives.ReadUInt32LittleEndian(p[8..])) ? 0u : 22u);
            case 6 or 7:
                return (echo, p.Length >= 16 && BinaryPrimitives.ReadUInt64LittleEndian(p[8..]) != 0 ? 0u : 22u);
            default:
                return ([], 22); // REPORT: logging was never started
        }
    }

    // libvfio-user's next_state[][] walk (spec §7.2), one transition callback per arc.
    private bool SetState(uint target)
    {
        if (target is not (Stop or Running or StopCopy or Resuming or PreCopy))
            return false;
        while (State != target)
        {
            uint next = (State, target) switch
            {
                (Stop, PreCopy) => Running,
                (Running, StopCopy) or (Running, Resuming) => Stop,
                (StopCopy, PreCopy) => 0,
                (StopCopy, _) or (Resuming, _) => Stop,
                (PreCopy, Stop) or (PreCopy, Resuming) => Running,
                _ => target,
            };
            if (next == 0 || !Transition(next))
                return false;
            State = next;
        }
        return true;
    }

    // The sample's migration_device_state_transition.
    private bool Transition(uint to)
    {
        switch (to)
        {
            case StopCopy or PreCopy or Resuming:
                _transferred = 0;
                return true;
            case Stop:
                return State != StopCopy || Assert(_transferred == Total);
            case Running:
                return Assert(_transferred == Total) && TimerArmable(Bar0);
            default:
                return false;
        }
    }

    private bool Assert(bool condition)
    {
        Aborted |= !condition;
        return condition;
    }

    // spec §6.13: the reply is request length + requested size long, zero-padded; size/argsz tell the truth.
    private (byte[], uint) MigDataRead(ReadOnlySpan<byte> p)
    {
        if (p.Length < 8 || State is not (PreCopy or StopCopy))
            return ([], 22);
        uint argsz = BinaryPrimitives.ReadUInt32LittleEndian(p), size = BinaryPrimitives.ReadUInt32LittleEndian(p[4..]);
        if (size > _clientMaxXfer || argsz < 8 + (ulong)size)
            return ([], 22);
        var r = new byte[p.Length + (int)size];
        var stream = Stream();
        int end = State == StopCopy ? Total : Bar1Size;
        int n = (int)Math.Min(size, (uint)(end - Math.Min(_transferred, end)));
        stream.AsSpan(_transferred, n).CopyTo(r.AsSpan(8));
        _transferred += n;
        BinaryPrimitives.WriteUInt32LittleEndian(r, (uint)(8 + n));
        BinaryPrimitives.WriteUInt32LittleEndian(r.AsSpan(4), (uint)n);
        return (r, 0);
    }

    // The device state as the sample streams it: BAR1 ‖ BAR0 (little-endian time_t).
    private byte[] Stream()
    {
        var stream = new byte[Total];
        Bar1.CopyTo(stream, 0);
        BinaryPrimitives.WriteInt64LittleEndian(stream.AsSpan(Bar1Size), Bar0);
        return stream;
    }

    // The destination takes exactly BAR1 ‖ BAR0; libvfio-user refuses a partial write with EINVAL.
    private (byte[], uint) MigDataWrite(ReadOnlySpan<byte> p)
    {
        if (p.Length < 8 || State != Resuming)
            return ([], 22);
        uint argsz = BinaryPrimitives.ReadUInt32LittleEndian(p), size = BinaryPrimitives.ReadUInt32LittleEndian(p[4..]);
        if (size > _clientMaxXfer || argsz < 8 + (ulong)size || p.Length < 8 + (long)size)
            return ([], 22);
        int n = (int)Math.Min(size, (uint)(Total - _transferred));
        var stream = Stream();
        p.Slice(8, n).CopyTo(stream.AsSpan(_transferred));
        stream.AsSpan(0, Bar1Size).CopyTo(Bar1);
        Bar0 = BinaryPrimitives.ReadInt64LittleEndian(stream.AsSpan(Bar1Size));
        _transferred += n;
        return ([], n == size ? 0u : 22u);
    }

    public async ValueTask DisposeAsync()
    {
        _listener.Dispose();
        try
        {
            await _run.WaitAsync(TimeSpan.FromSeconds(10)).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException or TimeoutException)
        {
        }
        _bar1Fd.Dispose();
        File.Delete(Path);
    }
}
