namespace Vfio.Engine;

/// <summary>Which half of a migration something happened on.</summary>
public enum MigrationSide
{
    /// <summary>The source: the devices being saved.</summary>
    Source,

    /// <summary>The destination: the devices being loaded.</summary>
    Destination,
}
