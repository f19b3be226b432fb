using System.Buffers;
using Vfio.Sample;
using Vfio.User.Protocol;
using Vfio.User.Transport;

namespace Vfio.User.Server;

/// <summary>
/// The server's decoder and dispatcher without a socket: frames a byte stream into messages and executes each
/// against a small sample device, exactly as a connection would. Used by the fuzz target and the corpus replay.
/// The connection's transport is an in-memory end nobody reads: replies are taken from the dispatcher directly,
/// and an in-memory end carries no fds, so VERSION never opens a twin socket here.
/// </summary>
internal sealed class DispatchHarness : IDisposable
{
    private readonly SampleDevice _device;
    private readonly VfioUserConnection _connection;
    private readonly InMemoryVfioUserTransport _ours;
    private readonly InMemoryVfioUserTransport _peer;

    public DispatchHarness(bool negotiate = true)
    {
        _device = new SampleDevice(new SampleDeviceOptions { SizeBytes = 64 << 10, Capabilities = Migration.VfioMigrationFlags.StopCopy | Migration.VfioMigrationFlags.PreCopy });
        (_ours, _peer) = InMemoryVfioUserTransport.CreatePair();
        _connection = new VfioUserConnection(_ours, VfioUserDeviceDefinition.ForSample(_device), VfioUserServerOptions.Default, 0);
        if (negotiate)
        {
            var version = new VersionPayload(0, 2, new VersionCapabilities { MaxMessageFds = 8, MaxDataTransferSize = 1 << 20 }).Encode();
            Feed(VfioUserFrame.Build(1, VfioUserCommand.Version, VfioUserMessageFlags.Command, version));
        }
    }

    /// <summary>Replies produced so far (errno per message, None for success).</summary>
    public List<(VfioUserHeader Request, Errno Error, int ReplyLength)> Replies { get; } = [];

    /// <summary>True once a message ended the connection (framing error or a fatal VERSION failure).</summary>
    public bool Closed { get; private set; }

    /// <summary>Frames and executes every complete message in <paramref name="data"/>; returns the messages executed.</summary>
    public int Feed(ReadOnlySpan<byte> data)
    {
        int count = 0;
        while (!Closed)
        {
            VfioUserHeader header;
            int consumed;
            try
            {
                if (!VfioUserFrame.TryReadMessage(data, out header, out consumed))
                    break;
            }
            catch (VfioUserFramingException ex)
            {
                Replies.Add((ex.Header, Errno.EINVAL, VfioUserHeader.Size));
                Closed = true;
                break;
            }
            using (var message = VfioUserMessage.FromBytes(header, data.Slice(VfioUserHeader.Size, consumed - VfioUserHeader.Size)))
            {
                // A reply nobody waits for goes to the dispatcher, as on a live connection (EINVAL).
                var reply = _connection.Dispatch(message);
                Replies.Add((header, reply.Error, reply.Error == Errno.None ? reply.Length : VfioUserHeader.Size));
                if (reply.Pooled && reply.Buffer is not null)
                    ArrayPool<byte>.Shared.Return(reply.Buffer);
                if (reply.CloseAfter)
                    Closed = true;
            }
            data = data[consumed..];
            count++;
        }
        return count;
    }

    public void Dispose()
    {
        _connection.Dma.Dispose();
        _device.Dispose();
        _ours.Dispose();
        _peer.Dispose();
    }
}
