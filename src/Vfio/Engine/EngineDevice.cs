using Vfio.Migration;

namespace Vfio.Engine;

/// <summary>
/// One device as one half of the engine sees it during a migration: the traced device, its capabilities, its
/// open data session, whether the engine changed its state (so recovery must look at it), and the bytes moved
/// per phase. <see cref="SourceDevice"/> and <see cref="DestinationDevice"/> add what only their side knows.
/// </summary>
internal abstract class EngineDevice(int index, MigrationRunContext run)
{
    protected MigrationRunContext Run => run;

    /// <summary>Position in the device list and device index in the stream.</summary>
    public int Index => index;

    /// <summary>The device as the engine calls it (the trace's wrapper).</summary>
    public IVfioMigrationDevice Device => run.Devices[index];

    public string Name => Device.Name;

    public VfioMigrationFlags Caps { get; set; }

    public bool HasP2P => (Caps & VfioMigrationFlags.P2P) != 0;

    /// <summary>The open saving or resuming session, if any.</summary>
    public IMigrationDataStream? Stream { get; set; }

    /// <summary>The engine changed this device's state: recovery has to look at it.</summary>
    public bool Touched { get; set; }

    public long PreCopyBytes { get; set; }

    public long StopCopyBytes { get; set; }

    /// <summary>Device bytes moved so far (what the source declares in DeviceEnd).</summary>
    public ulong BytesMoved => (ulong)(PreCopyBytes + StopCopyBytes);

    /// <summary>Whether the destination acknowledged this device's initial data (as this side knows it).</summary>
    public abstract bool InitialDataAcknowledged { get; }

    public MigrationException Fail(Errno errno, string detail, Exception? inner = null) => run.Fail(index, errno, detail, inner);

    /// <summary>Calls the device; its failure becomes a <see cref="MigrationException"/> naming the operation and this device.</summary>
    public Task<T> CallAsync<T>(string operation, Func<IVfioMigrationDevice, ValueTask<T>> call) => run.DeviceAsync(index, operation, call);

    public virtual DeviceMigrationStatistics Statistics()
        => new(index, Name, Caps, PreCopyBytes, StopCopyBytes, InitialDataAcknowledged);

    /// <summary>Closes the data session, if open; a failing close changes nothing any more.</summary>
    public async Task DisposeStreamAsync()
    {
        if (Stream is not { } s)
            return;
        Stream = null;
        try
        {
            await s.DisposeAsync().ConfigureAwait(false);
        }
        catch (VfioException)
        {
        }
    }

    public static async Task DisposeStreamsAsync(IEnumerable<EngineDevice> devices)
    {
        foreach (var device in devices)
            await device.DisposeStreamAsync().ConfigureAwait(false);
    }
}
