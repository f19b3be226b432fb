using System.Net.Sockets;
using Vfio.Migration;
using Vfio.User.Protocol;
using Vfio.User.Transport;

namespace Vfio.Tests.User;

/// <summary>
/// The socket's splice path (<see cref="IPipeSplicingTransport"/>, docs/performance.md "Relaying without copies"):
/// a message body spliced into a kernel pipe and out behind another header arrives byte for byte, a pipe that fills
/// up leaves the rest in the socket for a plain receive, and a full destination socket is waited for, not spun on.
/// </summary>
public sealed class PipeSpliceTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);

    private static readonly VfioUserHeader Header = new(1, VfioUserCommand.MigDataRead, (uint)(VfioUserHeader.Size + (4 << 20)), VfioUserMessageFlags.Reply, 0);

    private static byte[] Random(int length, int seed)
    {
        var b = new byte[length];
        new Random(seed).NextBytes(b);
        return b;
    }

    private static async Task<byte[]> ReceiveExactlyAsync(Socket socket, int length)
    {
        var b = new byte[length];
        int got = 0;
        while (got < length)
        {
            int n = await socket.ReceiveAsync(b.AsMemory(got), SocketFlags.None, Ct);
            Assert.NotEqual(0, n);
            got += n;
        }
        return b;
    }

    [Fact]
    public async Task Bytes_spliced_from_one_socket_into_a_pipe_and_out_behind_a_header_arrive_unchanged()
    {
        var (inWrite, inRead) = UnixFdSocket.CreateSocketPair();
        var (outWrite, outRead) = UnixFdSocket.CreateSocketPair();
        using var source = new UnixFdSocket(inRead);
        using var destination = new UnixFdSocket(outWrite);
        using var pool = new KernelPipePool(1 << 20);
        using var inWriteOwned = inWrite;
        using var outReadOwned = outRead;
        var data = Random(1 << 20, 1);
        var header = "HEADER!!"u8.ToArray();
        var sending = inWrite.SendAsync(data, SocketFlags.None, Ct).AsTask();
        var pieces = new List<int>();
        int moved = 0;
        while (moved < data.Length)
        {
            var pipe = pool.Rent();
            Assert.NotNull(pipe);
            int n = await ((IPipeSplicingTransport)source).ReceiveIntoPipeAsync(Header, pipe, data.Length - moved, Ct).AsTask().WaitAsync(Deadline, Ct);
            Assert.InRange(n, 1, data.Length - moved);
            Assert.Equal(n, pipe.Count);
            await ((IPipeSplicingTransport)destination).SendWithPipeAsync(header, pipe, n, Ct).AsTask().WaitAsync(Deadline, Ct);
            Assert.Equal(0, pipe.Count);
            pool.Return(pipe);
            Assert.Same(pipe, pool.Rent()); // an emptied pipe is kept for the next reply
            pool.Return(pipe);
            moved += n;
            pieces.Add(n);
        }
        await sending.WaitAsync(Deadline, Ct);

        var got = await ReceiveExactlyAsync(outRead, data.Length + (header.Length * pieces.Count)).WaitAsync(Deadline, Ct);
        int at = 0;
        int offset = 0;
        foreach (int n in pieces)
        {
            Assert.Equal(header, got.AsSpan(at, header.Length).ToArray());
            at += header.Length;
            Assert.True(data.AsSpan(offset, n).SequenceEqual(got.AsSpan(at, n)), $"piece at {offset} differs");
            at += n;
            offset += n;
        }
    }

    [Fact]
    public async Task A_pipe_that_fills_up_takes_what_it_can_and_the_rest_stays_for_a_plain_receive()
    {
        var (inWrite, inRead) = UnixFdSocket.CreateSocketPair();
        using var source = new UnixFdSocket(inRead);
        using var inWriteOwned = inWrite;
        using var pool = new KernelPipePool(64 << 10); // 16 slots: far less than the 1 MiB announced
        var data = Random(1 << 20, 2);
        var sending = inWrite.SendAsync(data, SocketFlags.None, Ct).AsTask();
        var pipe = pool.Rent()!;
        int n = await ((IPipeSplicingTransport)source).ReceiveIntoPipeAsync(Header, pipe, data.Length, Ct).AsTask().WaitAsync(Deadline, Ct);
        Assert.InRange(n, 1, data.Length - 1); // a pipe holds 16 references, to pages of up to 32 KiB each here
        var head = new byte[n];
        var chunk = new SplicedChunk(pipe, n, pool);
        await chunk.CopyToAsync(head, Ct);
        chunk.Dispose();
        Assert.True(data.AsSpan(0, n).SequenceEqual(head));
        var rest = new byte[data.Length - n];
        await source.ReceivePayloadAsync(Header, rest, Ct).AsTask().WaitAsync(Deadline, Ct);
        Assert.True(data.AsSpan(n).SequenceEqual(rest));
        await sending.WaitAsync(Deadline, Ct);
    }

    [Fact]
    public async Task A_peer_that_closes_inside_the_payload_is_a_protocol_error_and_the_pipe_keeps_what_came()
    {
        var (inWrite, inRead) = UnixFdSocket.CreateSocketPair();
        using var source = new UnixFdSocket(inRead);
        using var pool = new KernelPipePool(1 << 20);
        await inWrite.SendAsync(Random(1000, 3), SocketFlags.None, Ct);
        inWrite.Dispose();
        var pipe = pool.Rent()!;
        await Assert.ThrowsAsync<VfioUserProtocolException>(async () => await ((IPipeSplicingTransport)source).ReceiveIntoPipeAsync(Header, pipe, 5000, Ct));
        Assert.Equal(1000, pipe.Count);
        pool.Return(pipe); // not empty: closed, not kept
        Assert.NotSame(pipe, pool.Rent());
        Assert.True(pipe.ReadEnd.IsClosed);
    }

    [Fact]
    public async Task A_full_destination_socket_is_waited_for_and_every_byte_arrives_once_the_peer_reads()
    {
        var (inWrite, inRead) = UnixFdSocket.CreateSocketPair();
        var (outWrite, outRead) = UnixFdSocket.CreateSocketPair();
        using var source = new UnixFdSocket(inRead);
        using var inWriteOwned = inWrite;
        using var outReadOwned = outRead;
        outWrite.SendBufferSize = 16 << 10; // set before the transport, which only ever enlarges; then shrink again
        using var destination = new UnixFdSocket(outWrite);
        outWrite.SendBufferSize = 16 << 10;
        using var pool = new KernelPipePool(1 << 20);
        var data = Random(256 << 10, 4);
        var feeding = inWrite.SendAsync(data, SocketFlags.None, Ct).AsTask();
        var pipe = pool.Rent()!;
        int n = 0;
        while (n < data.Length)
        {
            int more = await ((IPipeSplicingTransport)source).ReceiveIntoPipeAsync(Header, pipe, data.Length - n, Ct).AsTask().WaitAsync(Deadline, Ct);
            Assert.True(more > 0, "the 1 MiB pipe filled before 256 KiB");
            n += more;
        }
        await feeding.WaitAsync(Deadline, Ct);
        var sending = ((IPipeSplicingTransport)destination).SendWithPipeAsync("H"u8.ToArray(), pipe, n, Ct).AsTask();
        await Task.Delay(100, Ct);
        Assert.False(sending.IsCompleted); // 256 KiB do not fit in 16 KiB: it waits for the reader
        var got = await ReceiveExactlyAsync(outRead, 1 + n).WaitAsync(Deadline, Ct);
        await sending.WaitAsync(Deadline, Ct);
        Assert.Equal((byte)'H', got[0]);
        Assert.True(data.AsSpan().SequenceEqual(got.AsSpan(1)));
        Assert.Equal(0, pipe.Count);
    }

    [Fact]
    public void A_pipe_larger_than_the_kernel_allows_is_refused_and_not_asked_for_again()
    {
        // 2 GiB - 1: the kernel rounds it up to 2 GiB of pages, which no pipe gets (and an int cannot report).
        using var pool = new KernelPipePool(int.MaxValue);
        Assert.Null(pool.Rent());
        Assert.Null(pool.Rent());
    }

    [Fact]
    public void The_empty_chunk_has_no_bytes()
    {
        Assert.Equal(0, DataChunk.Empty.Length);
        DataChunk.Empty.Dispose();
    }
}
