namespace Vfio.Sample;

/// <summary>Deliberate protocol violations the sample device can commit (for `vfio-mig check` tests).</summary>
[Flags]
public enum SampleDeviceFaults
{
    /// <summary>A conforming device.</summary>
    None = 0,
}
