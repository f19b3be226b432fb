using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using Vfio.Stream;

namespace Vfio.IntegrationTests.Net;

/// <summary>
/// A man in the middle on plain TCP that understands the frames: it passes the handshake through, then rewrites one
/// byte of device data in the first large Data frame the sender sends on the control channel, and fixes every
/// checksum it can (the migration stream frame's CRC-32C when it can read it, the transport's payload CRC when
/// present). Against sealed frames it can only flip ciphertext. Bounded: it stops with the test (Dispose).
/// </summary>
internal sealed class RewritingRelay : TcpRelay
{
    private readonly int _trailer;

    /// <param name="target">The receiver.</param>
    /// <param name="sealedFrames">True when the frames carry a 16-byte tag, false for --insecure (4-byte CRC).</param>
    public RewritingRelay(IPEndPoint target, bool sealedFrames)
        : base(target)
    {
        _trailer = sealedFrames ? 16 : 4;
        Start();
    }

    /// <summary>True once a frame was rewritten.</summary>
    public bool Rewrote { get; private set; }

    /// <summary>True when the rewrite also fixed the migration stream's own CRC (the plaintext was readable).</summary>
    public bool FixedStreamCrc { get; private set; }

    protected override void OnConnection(int index, Socket client, Socket server)
    {
        _ = index == 0 ? RewriteAsync(client, server) : PumpAsync(client, server);
        _ = PumpAsync(server, client);
    }

    private async Task RewriteAsync(Socket from, Socket to)
    {
        try
        {
            await CopyAsync(from, to, 64).ConfigureAwait(false); // hello
            await CopyAsync(from, to, 32).ConfigureAwait(false); // the sender's proof, sent once the receiver's arrived
            byte[] header = new byte[20];
            while (!Cts.IsCancellationRequested)
            {
                if (!await ReadExactAsync(from, header).ConfigureAwait(false))
                {
                    to.Shutdown(SocketShutdown.Send);
                    return;
                }
                int length = (int)BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(4));
                byte[] body = new byte[length + _trailer];
                if (!await ReadExactAsync(from, body).ConfigureAwait(false))
                    return;
                if (!Rewrote && header[0] == 1 && length >= 64 << 10)
                    Rewrite(header, body, length);
                await to.SendAsync(header, SocketFlags.None, Cts.Token).ConfigureAwait(false);
                await to.SendAsync(body, SocketFlags.None, Cts.Token).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (IsStop(e))
        {
            from.Dispose();
            to.Dispose();
        }
    }

    private void Rewrite(byte[] header, byte[] body, int length)
    {
        Rewrote = true;
        const int at = MigrationFrameCodec.FrameHeaderSize + 100; // inside the payload of the stream frame that starts the segment
        body[at] ^= 0x5A;
        // Fix the migration stream frame's CRC when the plaintext can be read (its header CRC checks out).
        var h = body.AsSpan(0, MigrationFrameCodec.FrameHeaderSize);
        int frameLength = (int)BinaryPrimitives.ReadUInt32LittleEndian(h[4..]);
        if (Crc32C.Compute(h[..12]) == BinaryPrimitives.ReadUInt32LittleEndian(h[12..]) && MigrationFrameCodec.FrameSize(frameLength) <= length)
        {
            MigrationFrameCodec.SealFrame(body, (MigrationFrameType)h[0], BinaryPrimitives.ReadUInt16LittleEndian(h[2..]), BinaryPrimitives.ReadUInt32LittleEndian(h[8..]), frameLength);
            FixedStreamCrc = true;
        }
        // Fix the transport's payload CRC when the frame has one.
        if (_trailer == 4 && header[1] == 0)
        {
            uint crc = ~Crc32C.Append(Crc32C.Append(0xFFFFFFFFu, header), body.AsSpan(0, length));
            BinaryPrimitives.WriteUInt32BigEndian(body.AsSpan(length), crc);
        }
    }

    private async Task CopyAsync(Socket from, Socket to, int count)
    {
        byte[] buffer = new byte[count];
        if (await ReadExactAsync(from, buffer).ConfigureAwait(false))
            await to.SendAsync(buffer, SocketFlags.None, Cts.Token).ConfigureAwait(false);
    }

    private async Task<bool> ReadExactAsync(Socket from, byte[] buffer)
    {
        int got = 0;
        while (got < buffer.Length)
        {
            int n = await from.ReceiveAsync(buffer.AsMemory(got), SocketFlags.None, Cts.Token).ConfigureAwait(false);
            if (n == 0)
                return false;
            got += n;
        }
        return true;
    }
}
