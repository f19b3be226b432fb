namespace Vfio.User.Server;

/// <summary>Reads <paramref name="destination"/>.Length bytes of a region at <paramref name="offset"/>.</summary>
public delegate void RegionReader(ulong offset, Span<byte> destination);

/// <summary>Writes <paramref name="source"/> into a region at <paramref name="offset"/>.</summary>
public delegate void RegionWriter(ulong offset, ReadOnlySpan<byte> source);

/// <summary>One device region served through REGION_READ/REGION_WRITE (not mmappable; no fd).</summary>
public sealed class VfioUserRegion
{
    /// <summary>Creates a region.</summary>
    public VfioUserRegion(uint index, string name, ulong size, RegionReader? read, RegionWriter? write)
    {
        Index = index;
        Name = name;
        Size = size;
        Read = read;
        Write = write;
    }

    /// <summary>Region index (PCI: BAR0–5 = 0–5, ROM 6, CONFIG 7, VGA 8).</summary>
    public uint Index { get; }

    /// <summary>Human name (for info output).</summary>
    public string Name { get; }

    /// <summary>Size in bytes.</summary>
    public ulong Size { get; }

    /// <summary>Read handler, or null when not readable.</summary>
    public RegionReader? Read { get; }

    /// <summary>Write handler, or null when not writable.</summary>
    public RegionWriter? Write { get; }
}
