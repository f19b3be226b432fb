using Vfio.Device;
using Vfio.Sample;

namespace Vfio.User.Server;

/// <summary>
/// What a vfio-user server exposes: a PCI-shaped device (9 regions, 5 IRQ indexes), its regions, IRQ vector
/// counts and the migration engine behind it.
/// </summary>
public sealed class VfioUserDeviceDefinition
{
    /// <summary>PCI region count (BAR0–5, ROM, CONFIG, VGA).</summary>
    public const uint PciRegionCount = 9;

    /// <summary>PCI IRQ index count (INTx, MSI, MSI-X, ERR, REQ).</summary>
    public const uint PciIrqCount = 5;

    /// <summary>Config space region index.</summary>
    public const uint ConfigRegionIndex = 7;

    private readonly VfioUserRegion?[] _regions = new VfioUserRegion?[PciRegionCount];
    private readonly uint[] _irqCounts = new uint[PciIrqCount];

    /// <summary>Creates a definition around a migration engine.</summary>
    public VfioUserDeviceDefinition(MigrationDevice migration, string description)
    {
        Migration = migration ?? throw new ArgumentNullException(nameof(migration));
        Description = description;
    }

    /// <summary>The device-side migration engine.</summary>
    public MigrationDevice Migration { get; }

    /// <summary>One-line description.</summary>
    public string Description { get; }

    /// <summary>Region count reported by DEVICE_GET_INFO.</summary>
    public uint RegionCount => (uint)_regions.Length;

    /// <summary>IRQ index count reported by DEVICE_GET_INFO.</summary>
    public uint IrqCount => (uint)_irqCounts.Length;

    /// <summary>Adds or replaces a region.</summary>
    public VfioUserDeviceDefinition WithRegion(VfioUserRegion region)
    {
        ArgumentNullException.ThrowIfNull(region);
        if (region.Index >= PciRegionCount)
            throw new ArgumentOutOfRangeException(nameof(region), $"region index {region.Index} is not below {PciRegionCount}");
        _regions[region.Index] = region;
        return this;
    }

    /// <summary>Sets the vector count of an IRQ index.</summary>
    public VfioUserDeviceDefinition WithIrqs(uint index, uint count)
    {
        if (index >= PciIrqCount)
            throw new ArgumentOutOfRangeException(nameof(index), $"IRQ index {index} is not below {PciIrqCount}");
        _irqCounts[index] = count;
        return this;
    }

    /// <summary>
    /// Lets device logic reach its client: <paramref name="attached"/> runs when a client connection starts (before
    /// VERSION), <paramref name="detached"/> when it has ended (before its DMA maps and IRQ eventfds are closed).
    /// Through the connection a device triggers IRQs (<see cref="VfioUserConnection.TriggerIrq"/>) and does DMA.
    /// </summary>
    public VfioUserDeviceDefinition WithConnectionHandlers(Action<VfioUserConnection> attached, Action<VfioUserConnection> detached)
    {
        ConnectionAttached = attached ?? throw new ArgumentNullException(nameof(attached));
        ConnectionDetached = detached ?? throw new ArgumentNullException(nameof(detached));
        return this;
    }

    internal Action<VfioUserConnection>? ConnectionAttached { get; private set; }

    internal Action<VfioUserConnection>? ConnectionDetached { get; private set; }

    /// <summary>The region at an index, or null for an absent (zero-size) region.</summary>
    public VfioUserRegion? GetRegion(uint index) => index < PciRegionCount ? _regions[index] : null;

    /// <summary>Vectors of an IRQ index.</summary>
    public uint GetIrqCount(uint index) => index < PciIrqCount ? _irqCounts[index] : 0;

    /// <summary>
    /// The sample device as a PCI device: BAR0 = its state bytes (ReadState/WriteState), CONFIG = 256 bytes of
    /// emulated config space (vendor 0xdead, device 0xbeef, subsystem 0xcafe/0xbabe as libvfio-user's sample),
    /// IRQs INTx 1, MSI 0, MSI-X 0, ERR 1, REQ 1.
    /// </summary>
    public static VfioUserDeviceDefinition ForSample(SampleDevice device)
    {
        ArgumentNullException.ThrowIfNull(device);
        var definition = new VfioUserDeviceDefinition(device, $"sample device ({device.SizeBytes} bytes, caps 0x{(ulong)device.Capabilities:x})");
        definition.WithRegion(new VfioUserRegion(0, "BAR0 (device state)", (ulong)device.SizeBytes,
            (offset, dst) => device.ReadState((long)offset, dst),
            (offset, src) => device.WriteState((long)offset, src)));
        return definition.WithSamplePciShape();
    }

    /// <summary>
    /// libvfio-user's <c>samples/server</c> as a device (spec §12): BAR0 = 8-byte time_t, BAR1 = 0x4000 bytes,
    /// CONFIG and IRQs as <see cref="ForSample"/>; the device triggers INTx and does DMA through the connection.
    /// </summary>
    public static VfioUserDeviceDefinition ForLibVfioUserSample(LibVfioUserSampleDevice device)
    {
        ArgumentNullException.ThrowIfNull(device);
        var definition = new VfioUserDeviceDefinition(device, $"libvfio-user sample device (BAR0 time_t, BAR1 {LibVfioUserSampleDevice.Bar1Size} bytes, caps 0x{(ulong)device.Capabilities:x})");
        definition.WithRegion(new VfioUserRegion(0, "BAR0 (time_t)", LibVfioUserSampleDevice.Bar0Size, device.ReadBar0, device.WriteBar0));
        definition.WithRegion(new VfioUserRegion(1, "BAR1", LibVfioUserSampleDevice.Bar1Size, device.ReadBar1, device.WriteBar1));
        definition.WithConnectionHandlers(device.Attach, device.Detach);
        return definition.WithSamplePciShape();
    }

    // CONFIG = 256 bytes of emulated config space with libvfio-user's sample identity (vendor 0xdead, device
    // 0xbeef, subsystem 0xcafe/0xbabe); IRQs INTx 1, MSI 0, MSI-X 0, ERR 1, REQ 1.
    private VfioUserDeviceDefinition WithSamplePciShape()
    {
        var config = new byte[256];
        config[0] = 0xad; config[1] = 0xde; // vendor 0xdead
        config[2] = 0xef; config[3] = 0xbe; // device 0xbeef
        config[0x0b] = 0xff; // class: unassigned
        config[0x2c] = 0xfe; config[0x2d] = 0xca; // subsystem vendor 0xcafe
        config[0x2e] = 0xbe; config[0x2f] = 0xba; // subsystem id 0xbabe
        var configLock = new Lock();
        WithRegion(new VfioUserRegion(ConfigRegionIndex, "CONFIG", (ulong)config.Length,
            (offset, dst) =>
            {
                lock (configLock)
                    config.AsSpan((int)offset, dst.Length).CopyTo(dst);
            },
            (offset, src) =>
            {
                lock (configLock)
                {
                    // The identity registers (0x00–0x0f, 0x2c–0x2f) are read-only.
                    for (int i = 0; i < src.Length; i++)
                    {
                        int at = (int)offset + i;
                        if (at >= 0x10 && at is not (>= 0x2c and < 0x30))
                            config[at] = src[i];
                    }
                }
            }));
        return WithIrqs(0, 1).WithIrqs(3, 1).WithIrqs(4, 1);
    }
}
