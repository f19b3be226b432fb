using Vfio.Engine;
using Vfio.Interop;
using Vfio.Migration;
using Vfio.Sample;
using Vfio.User.Client;
using Vfio.User.Protocol;
using Vfio.User.Server;
using Vfio.User.Transport;
using static Vfio.Interop.Interop;

namespace Vfio.Tests.User;

/// <summary>
/// The vfio-user transport seam: what every <see cref="IVfioUserTransport"/> must do (run over the socket and the
/// in-memory transport alike), the SCM_RIGHTS helper, and the client and server over the in-memory transport.
/// </summary>
public sealed class TransportTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(20);

    public static TheoryData<string> Transports => ["socket", "memory"];

    private static (IVfioUserTransport A, IVfioUserTransport B) Pair(string kind, int maxMessageSize = ProtocolLimits.MaxMessageBytes)
    {
        if (kind == "memory")
            return InMemoryVfioUserTransport.CreatePair(maxMessageSize);
        var (a, b) = UnixFdSocket.CreateSocketPair();
        return (new UnixFdSocket(a, maxMessageSize: maxMessageSize), new UnixFdSocket(b, maxMessageSize: maxMessageSize));
    }

    private static byte[] Message(ushort id, int payloadLength)
    {
        var payload = new byte[payloadLength];
        new Random(id).NextBytes(payload);
        return VfioUserFrame.Build(id, VfioUserCommand.RegionWrite, VfioUserMessageFlags.Command, payload);
    }

    // Runs body over a fresh connected pair of the given kind, then closes both ends.
    private static async Task WithPairAsync(string kind, Func<IVfioUserTransport, IVfioUserTransport, Task> body, int maxMessageSize = ProtocolLimits.MaxMessageBytes)
    {
        var (a, b) = Pair(kind, maxMessageSize);
        using (a)
        using (b)
            await body(a, b);
    }

    // The peer sends bytes then shuts down; returns what one receive makes of them.
    private static Task<VfioUserMessage?> ReceiveAfterAsync(IVfioUserTransport a, IVfioUserTransport b, ReadOnlyMemory<byte> bytes)
        => Task.Run(async () =>
        {
            await a.SendAsync(bytes, null, Ct);
            a.Shutdown();
            return await b.ReceiveAsync(Ct).AsTask().WaitAsync(Deadline, Ct);
        });

    [Theory]
    [MemberData(nameof(Transports))]
    public Task Messages_arrive_whole_in_order_and_a_two_part_send_is_one_message(string kind) => WithPairAsync(kind, async (a, b) =>
    {
        var first = Message(1, 100);
        var second = Message(2, 70_000);
        await a.SendAsync(first, null, Ct);
        await a.SendInTwoPartsAsync(second.AsMemory(0, 40), second.AsMemory(40), Ct);
        using (var m1 = await b.ReceiveAsync(Ct).AsTask().WaitAsync(Deadline, Ct))
        {
            Assert.Equal(1, m1!.Header.MessageId);
            Assert.Equal(first[VfioUserHeader.Size..], m1.Payload.ToArray());
            Assert.Equal(0, m1.Fds.Count);
        }
        using var m2 = await b.ReceiveAsync(Ct).AsTask().WaitAsync(Deadline, Ct);
        Assert.Equal(2, m2!.Header.MessageId);
        Assert.Equal(second[VfioUserHeader.Size..], m2.Payload.ToArray());
    });

    // Spec §2 (Disconnect): end of stream at a message boundary is the peer leaving; a short header is not.
    [Theory]
    [MemberData(nameof(Transports))]
    public async Task End_of_stream_at_a_boundary_is_null_and_inside_a_header_or_payload_is_EPROTO(string kind)
    {
        await WithPairAsync(kind, async (a, b) =>
        {
            await a.SendAsync(Message(1, 8), null, Ct);
            using (var m = await b.ReceiveAsync(Ct).AsTask().WaitAsync(Deadline, Ct))
                Assert.NotNull(m);
            a.Shutdown();
            Assert.Null(await b.ReceiveAsync(Ct).AsTask().WaitAsync(Deadline, Ct));
        });
        await WithPairAsync(kind, async (a, b) =>
        {
            var e = await Assert.ThrowsAsync<VfioUserProtocolException>(() => ReceiveAfterAsync(a, b, Message(1, 8).AsMemory(0, 10)));
            Assert.Equal(Errno.EPROTO, e.Errno);
            Assert.Contains("after 10 of 16 header bytes", e.Message, StringComparison.Ordinal);
        });
        await WithPairAsync(kind, async (a, b) =>
        {
            var e = await Assert.ThrowsAsync<VfioUserProtocolException>(() => ReceiveAfterAsync(a, b, Message(1, 64).AsMemory(0, 40)));
            Assert.Contains("in the middle of the 64-byte payload", e.Message, StringComparison.Ordinal);
        });
    }

    // Spec §3: msg_size is bounded by what this end accepts; the body is never read.
    [Theory]
    [MemberData(nameof(Transports))]
    public Task A_header_announcing_more_than_the_limit_is_a_framing_error(string kind) => WithPairAsync(kind, async (a, b) =>
    {
        await a.SendAsync(Message(7, 5000), null, Ct);
        var e = await Assert.ThrowsAsync<VfioUserFramingException>(() => b.ReceiveAsync(Ct).AsTask().WaitAsync(Deadline, Ct));
        Assert.Equal(7, e.Header.MessageId);
        Assert.Equal(Errno.EPROTO, e.Errno);
    }, maxMessageSize: 4096);

    [Theory]
    [MemberData(nameof(Transports))]
    public Task Shutdown_wakes_a_pending_receive_and_the_peers_sends_then_fail(string kind) => WithPairAsync(kind, async (a, b) =>
    {
        var pending = b.ReceiveAsync(Ct).AsTask();
        b.Shutdown();
        Assert.Null(await pending.WaitAsync(Deadline, Ct));
        var e = await Assert.ThrowsAsync<VfioException>(async () =>
        {
            // A socket may take a first send into its buffer before it reports the broken pipe.
            for (int i = 0; i < 1000; i++)
                await a.SendAsync(Message(1, 4096), null, Ct).AsTask().WaitAsync(Deadline, Ct);
        });
        Assert.Equal(Errno.ENOTCONN, e.Errno); // EPIPE, as the socket errno table names it
    });

    [Fact]
    public async Task The_in_memory_transport_refuses_fds_with_EOPNOTSUPP()
    {
        var (a, b) = InMemoryVfioUserTransport.CreatePair();
        using (a)
        using (b)
        using (var fd = NewEventFd())
        {
            Assert.False(a.CarriesFds);
            var e = await Assert.ThrowsAsync<VfioException>(() => a.SendAsync(Message(1, 8), [fd], Ct).AsTask());
            Assert.Equal(Errno.EOPNOTSUPP, e.Errno);
            Assert.False(fd.IsClosed); // the caller keeps its handle, as with sendmsg
        }
    }

    // Spec §2 (fd passing, max fds): fds beyond the receiver's control buffer are MSG_CTRUNC, a protocol error;
    // the ones that did arrive are closed, not leaked. The buffer is CMSG_SPACE(4 max), 8-byte aligned: with a
    // limit of 1 it has room for 2, so 3 overflow it.
    [Fact]
    public async Task More_fds_than_the_receiver_accepts_is_MSG_CTRUNC_and_EPROTO()
    {
        var (x, y) = UnixFdSocket.CreateSocketPair();
        using var sender = new UnixFdSocket(x);
        using var receiver = new UnixFdSocket(y, maxReceiveFds: 1);
        using var fd1 = NewEventFd();
        using var fd2 = NewEventFd();
        using var fd3 = NewEventFd();
        await sender.SendAsync(Message(1, 8), [fd1, fd2, fd3], Ct);
        var e = await Assert.ThrowsAsync<VfioUserProtocolException>(() => receiver.ReceiveAsync(Ct).AsTask().WaitAsync(Deadline, Ct));
        Assert.Contains("MSG_CTRUNC", e.Message, StringComparison.Ordinal);
        Assert.False(fd1.IsClosed);
    }

    [Fact]
    public async Task Fds_sent_with_a_message_arrive_as_new_descriptors_of_the_same_file()
    {
        var (x, y) = UnixFdSocket.CreateSocketPair();
        using var sender = new UnixFdSocket(x);
        using var receiver = new UnixFdSocket(y);
        using var fd = NewEventFd();
        await sender.SendAsync(Message(3, 8), [fd], Ct);
        using var m = await receiver.ReceiveAsync(Ct).AsTask().WaitAsync(Deadline, Ct);
        Assert.Equal(1, m!.Fds.Count);
        using var received = m.Fds.Take(0);
        Assert.NotEqual(fd.Fd, received.Fd);
        Assert.Equal(Inode(fd), Inode(received));
        Assert.True(IsCloseOnExec(received.Fd), "MSG_CMSG_CLOEXEC: a received fd must not leak into a child process");
    }

    [Fact]
    public void ScmRights_encodes_one_aligned_cmsg_and_decodes_every_fd()
    {
        Assert.Equal(24, ScmRights.ControlSpace(1)); // 16 + align8(4)
        Assert.Equal(32, ScmRights.ControlSpace(3)); // 16 + align8(12)
        var control = new byte[ScmRights.ControlSpace(3)];
        ScmRights.Encode(control, [101, 102, 103]);
        Assert.Equal(16 + 12, BitConverter.ToInt64(control, 0));            // cmsg_len = CMSG_LEN(12)
        Assert.Equal(SOL_SOCKET, BitConverter.ToInt32(control, 8));
        Assert.Equal(SCM_RIGHTS, BitConverter.ToInt32(control, 12));
        Assert.Equal(new byte[4], control[28..]);                           // padding zeroed
        Assert.Equal([101, 102, 103], DecodeNumbers(control));
        Assert.Throws<ArgumentException>(() => ScmRights.Encode(new byte[16], [1]));
    }

    [Fact]
    public void ScmRights_decode_skips_other_cmsgs_follows_alignment_and_stops_at_a_bad_length()
    {
        // SCM_RIGHTS(1 fd) at 0 (len 20, next at 24), an SCM_CREDENTIALS-like cmsg (type 2, len 28) at 24 (next
        // at 56), SCM_RIGHTS(2 fds) at 56 (len 24, next at 80), then a header claiming more than the buffer.
        var control = new byte[80 + 16];
        ScmRights.Encode(control.AsSpan(0, 24), [5]);
        BitConverter.TryWriteBytes(control.AsSpan(24), 28L);
        BitConverter.TryWriteBytes(control.AsSpan(32), SOL_SOCKET);
        BitConverter.TryWriteBytes(control.AsSpan(36), 2);
        BitConverter.TryWriteBytes(control.AsSpan(40), 999);
        ScmRights.Encode(control.AsSpan(56, 24), [6, 7]);
        BitConverter.TryWriteBytes(control.AsSpan(80), 1000L);
        BitConverter.TryWriteBytes(control.AsSpan(88), SOL_SOCKET);
        BitConverter.TryWriteBytes(control.AsSpan(92), SCM_RIGHTS);
        Assert.Equal([5, 6, 7], DecodeNumbers(control));
        Assert.Empty(DecodeNumbers(new byte[8])); // shorter than a cmsg header
    }

    // Decodes and gives the numbers back without closing them (they are not ours).
    private static int[] DecodeNumbers(ReadOnlySpan<byte> control)
    {
        var fds = new List<SafeFdHandle>();
        ScmRights.Decode(control, fds);
        var numbers = fds.Select(f => f.Fd).ToArray();
        foreach (var f in fds)
            f.SetHandleAsInvalid();
        return numbers;
    }

    [Fact]
    public async Task Client_and_server_negotiate_and_migrate_a_device_over_the_in_memory_transport()
    {
        using var served = new SampleDevice(new SampleDeviceOptions { SizeBytes = 1 << 20, Seed = 3 });
        var (serverEnd, clientEnd) = InMemoryVfioUserTransport.CreatePair();
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var serving = VfioUserServer.ServeConnectedAsync(serverEnd, VfioUserDeviceDefinition.ForSample(served), null, stop.Token);
        try
        {
            await using (var source = new VfioUserMigrationDevice(await VfioUserClient.ConnectAsync(clientEnd, "memory", null, Ct).WaitAsync(Deadline, Ct)))
            {
                Assert.Equal(2, source.Client.ServerMinor);
                Assert.False(source.Client.TwinSocketEnabled); // no fds: no twin socket
                var data = new byte[10_000];
                new Random(9).NextBytes(data);
                await source.Client.RegionWriteAsync(0, 4096, data, Ct);
                var back = new byte[data.Length];
                await source.Client.RegionReadAsync(0, 4096, back, Ct);
                Assert.Equal(data, back);

                using var target = new SampleDevice(new SampleDeviceOptions { SizeBytes = 1 << 20, Seed = 4 });
                await using var destination = new InProcessMigrationDevice(target, "sample:dst");
                await MigrationEngine.MigrateAsync([source], [destination], null, null, Ct).WaitAsync(Deadline, Ct);
                Assert.Equal(served.ComputeSha256(), target.ComputeSha256());
            }
            await serving.WaitAsync(Deadline, Ct); // the client's close is the end of the server's stream
        }
        finally
        {
            await stop.CancelAsync();
            serverEnd.Dispose();
        }
    }

    private static SafeFdHandle NewEventFd()
    {
        var fd = new SafeFdHandle(EventFd(0, EFD_CLOEXEC));
        Assert.False(fd.IsInvalid);
        return fd;
    }

    // st_ino: bytes 8..16 of struct stat on x86_64.
    private static unsafe ulong Inode(SafeFdHandle fd)
    {
        byte* stat = stackalloc byte[StatSize];
        Assert.Equal(0, FStat(fd.Fd, stat));
        return *(ulong*)(stat + 8);
    }

    // The "flags:" line of /proc/self/fdinfo/N is octal; O_CLOEXEC is 02000000.
    private static bool IsCloseOnExec(int fd)
    {
        string flags = File.ReadLines($"/proc/self/fdinfo/{fd}").First(l => l.StartsWith("flags:", StringComparison.Ordinal))[6..].Trim();
        return (Convert.ToInt64(flags, 8) & 0x80000) != 0;
    }
}
