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
/// HEADER (1) comes first, PAGE (2) records follow in any page order, END (3) closes the stream.
/// </summary>
public static class SampleStreamFormat
{
    /// <summary>Bytes of the record header.</summary>
    public const int RecordHeaderSize = 16;

    /// <summary>Bytes of the CRC trailer.</summary>
    public const int RecordTrailerSize = 4;

    /// <summary>"VFSAMPLE" as a little-endian u64.</summary>
    public const ulong Magic = 0x454C504D41534656;

    /// <summary>Stream version.</summary>
    public const uint StreamVersion = 1;

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
        /// <summary>One page: page index u64 then the page bytes.</summary>
        Page = 2,
        /// <summary>End of stream.</summary>
        End = 3,
    }

    /// <summary>Total bytes of a PAGE record.</summary>
    public static int PageRecordSize(int pageSize) => RecordHeaderSize + 8 + pageSize + RecordTrailerSize;

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
