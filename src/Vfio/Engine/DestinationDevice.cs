using Vfio.Migration;
using Vfio.Stream;

namespace Vfio.Engine;

/// <summary>
/// One destination device during a migration: the source's Setup (and profile) for it, its capabilities, its
/// resuming session, the bytes written per phase, whether its initial data was acknowledged and whether the
/// source ended its data (DeviceEnd, checked against what arrived).
/// </summary>
internal sealed class DestinationDevice(int index, MigrationRunContext run) : EngineDevice(index, run)
{
    /// <summary>The source's Setup frame for this device.</summary>
    public MigrationDeviceSetup Setup { get; set; }

    /// <summary>The source device's profile, when it sent one (its compatibility check is on).</summary>
    public Compat.MigrationProfile? Profile { get; set; }

    /// <summary>The source pre-copies this device.</summary>
    public bool PreCopied => (Setup.Plan & MigrationPlanFlags.PreCopy) != 0;

    /// <summary>The source's DeviceEnd arrived and matched the bytes received.</summary>
    public bool Ended { get; private set; }

    /// <summary>This side acknowledged the device's initial data (InitDataAck written).</summary>
    public bool Acked { get; set; }

    public override bool InitialDataAcknowledged => Acked;

    /// <summary>
    /// Setup's check of this device against the source's plan: it can migrate (STOP_COPY), takes pre-copy when
    /// the source pre-copies, and P2P when <paramref name="count"/> devices start together.
    /// </summary>
    public async Task CheckCapabilitiesAsync(int count, CancellationToken token)
    {
        var caps = await CallAsync("VFIO_DEVICE_FEATURE_MIGRATION", d => d.GetCapabilitiesAsync(token)).ConfigureAwait(false);
        Caps = caps;
        if ((caps & VfioMigrationFlags.StopCopy) == 0)
            throw Fail(Errno.EOPNOTSUPP, $"the device cannot migrate: its capabilities {MigrationStateMachine.FormatCaps(caps)} lack STOP_COPY");
        if (PreCopied && (caps & VfioMigrationFlags.PreCopy) == 0)
            throw Fail(Errno.EOPNOTSUPP, $"source device {Index} ({Setup.Name}, caps {MigrationStateMachine.FormatCaps(Setup.Capabilities)}) will be pre-copied, but this device lacks PRE_COPY (caps {MigrationStateMachine.FormatCaps(caps)})");
        if (count > 1 && (caps & VfioMigrationFlags.P2P) == 0)
            throw Fail(Errno.EOPNOTSUPP, $"{count} devices migrate together, but this device lacks P2P (caps {MigrationStateMachine.FormatCaps(caps)}); they could not be started together safely");
    }

    /// <summary>Writes a data frame's payload into the resuming session.</summary>
    public async Task WriteAsync(MigrationFrame frame, CancellationToken token)
    {
        var stream = Stream!;
        try
        {
            if (frame.Chunk is { } chunk)
            {
                await WriteChunkAsync(stream, chunk, token).ConfigureAwait(false);
                return;
            }
            foreach (var segment in frame.Payload)
                await stream.WriteAsync(segment, token).ConfigureAwait(false);
        }
        catch (VfioException ex)
        {
            throw Fail(ex.Errno, $"write migration data: {ex.Detail ?? ex.Message}", ex);
        }
    }

    // A chunk goes to the device's transport as it is when that transport takes it (the kernel relays the bytes);
    // otherwise its bytes are copied out once and written like any payload.
    private static async Task WriteChunkAsync(IMigrationDataStream stream, DataChunk chunk, CancellationToken token)
    {
        if (stream is IDataChunkSink sink && await sink.TryWriteChunkAsync(chunk, token).ConfigureAwait(false))
            return;
        var bytes = System.Buffers.ArrayPool<byte>.Shared.Rent(chunk.Length);
        try
        {
            await chunk.CopyToAsync(bytes.AsMemory(0, chunk.Length), token).ConfigureAwait(false);
            await stream.WriteAsync(bytes.AsMemory(0, chunk.Length), token).ConfigureAwait(false);
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(bytes);
        }
    }

    /// <summary>The source's DeviceEnd: it declares <paramref name="declared"/> bytes, which must be what arrived.</summary>
    public void End(ulong declared)
    {
        if (declared != BytesMoved)
            throw Fail(Errno.EBADMSG, $"the source sent {declared} bytes for this device, {BytesMoved} arrived");
        Ended = true;
    }
}
