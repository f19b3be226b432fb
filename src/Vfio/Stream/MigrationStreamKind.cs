namespace Vfio.Stream;

/// <summary>Which of the two byte streams of a migration a header opens.</summary>
internal enum MigrationStreamKind
{
    /// <summary>Source → destination: setup, device data and markers (magic <c>VFMIGFWD</c>).</summary>
    Forward,

    /// <summary>Destination → source: readiness, acks, load results and the final status (magic <c>VFMIGRET</c>).</summary>
    Return,
}
