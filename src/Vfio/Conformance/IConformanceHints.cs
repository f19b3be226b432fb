namespace Vfio.Conformance;

/// <summary>
/// An optional capability of a device under <c>vfio-mig check</c>: what the checker cannot learn by asking the
/// device. The sample device offers it (through the in-process transport); other devices check without it.
/// </summary>
internal interface IConformanceHints
{
    /// <summary>True when the device's stream is a pure function of its state, so a re-save must be byte-identical.</summary>
    bool DeterministicStreams { get; }

    /// <summary>True when <see cref="GenerateDeviceWritesAsync"/> works for this device.</summary>
    bool CanGenerateDeviceWrites { get; }

    /// <summary>Writes to the device's memory as a guest would, inside the first MiB, so DMA logging has pages to report.</summary>
    ValueTask GenerateDeviceWritesAsync(CancellationToken cancellationToken);
}
