using System.Buffers.Binary;

namespace Vfio.Sample;

/// <summary>
/// The sample device's migration stream (docs/sample-device.md): a sequence of records, each
/// <code>
///  0       2       4               8                               16
/// +-------+-------+---------------+-------------------------------+----------------+---------+
/// | type  | flags | length (u32)  | sequence number (u64)         | payload[length]| crc32c  |
/// +-------+-------+---------------+-------------------------------+----------------+---------+
/// </code>
/// little-endian; the CRC-32C covers header and payload. Sequence numbers start at 0 and rise by one.
/// HEADER (1) comes first, PAGE (2) records follow in any page order, END (3) closes the stream. Version 2: a PAGE
/// record carries a run of 1 to <see cref="MaxRunBytes"/> / page size consecutive pages under one CRC (version 1
/// had one record, and one CRC, per page).
/// </summary>
public static class SampleStreamFormat
{
    /// <summary>Bytes of the record header.</summary>
    public const int RecordHeaderSize = 16;

    /// <summary>Bytes of the CRC trailer.</summary>
    public const int RecordTrailerSize = 4;

    /// <summary>"VFSAMPLE" as a little-endian u64.</summary>
    public const ulong Magic = 0x454C504D41534656;

    /// <summary>Stream version (2: runs of pages per PAGE record).</summary>
    public const uint StreamVersion = 2;

    // The largest run of pages one PAGE record carries (at least one page): bounds what a reader accepts and how
    // much data one CRC covers, and is large enough that most of a stop-copy stream is page bytes sent in place.
    internal const int MaxRunBytes = 16 << 20;

    // Bytes a PAGE record adds to its pages: header, page index, CRC.
    internal const int RunOverhead = RecordHeaderSize + 8 + RecordTrailerSize;

    // Pages per PAGE record at most.
    internal static int MaxRunPages(int pageSize) => Math.Max(1, MaxRunBytes / pageSize);

    /// <summary>Profile feature bit: the stream may carry a second initial pass after a REINIT (the loader takes repeated pages).</summary>
    public const ulong FeatureReinit = 0x1;

    /// <summary>HEADER payload: magic u64, version u32, page size u32, page count u64.</summary>
    public const int HeaderPayloadSize = 24;

    /// <summary>END payload: pages sent u64, records before END u64.</summary>
    public const int EndPayloadSize = 16;

    /// <summary>The largest page size a stream may declare (bounds every record a peer can make us buffer).</summary>
    public const int MaxPageSize = 1 << 20;

    /// <summary>Record types.</summary>
    public enum RecordType : ushort
    {
        /// <summary>Stream header.</summary>
        Header = 1,
        /// <summary>A run of consecutive pages: the first page's index u64, then the pages' bytes.</summary>
        Page = 2,
        /// <summary>End of stream.</summary>
        End = 3,
    }

    /// <summary>Total bytes of a PAGE record of one page.</summary>
    public static int PageRecordSize(int pageSize) => RunOverhead + pageSize;

    // Bytes of the PAGE records that carry `pages` consecutive pages (cut into runs of MaxRunPages from the first).
    internal static long RunBytes(long pages, int pageSize)
    {
        long runs = (pages + MaxRunPages(pageSize) - 1) / MaxRunPages(pageSize);
        return (pages * pageSize) + (runs * RunOverhead);
    }

    /// <summary>Writes a record header at the start of <paramref name="destination"/>.</summary>
    public static void WriteHeader(Span<byte> destination, RecordType type, uint length, ulong sequence)
    {
        BinaryPrimitives.WriteUInt16LittleEndian(destination, (ushort)type);
        BinaryPrimitives.WriteUInt16LittleEndian(destination[2..], 0);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[4..], length);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[8..], sequence);
    }

    /// <summary>Appends the CRC of the first <paramref name="bodyLength"/> bytes after them.</summary>
    public static void Seal(Span<byte> record, int bodyLength)
        => BinaryPrimitives.WriteUInt32LittleEndian(record[bodyLength..], Crc32C.Compute(record[..bodyLength]));
}
