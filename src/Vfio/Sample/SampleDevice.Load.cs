using System.Buffers.Binary;
using static Vfio.Sample.SampleStreamFormat;

namespace Vfio.Sample;

// The resuming side: records are parsed incrementally from any chunking, checked (CRC, sequence,
// bounds) and applied as each completes; RESUMING→STOP accepts only a complete stream.
public sealed partial class SampleDevice
{
    private const string WriteOperation = "write migration data";
    private readonly PageBitmap _received;
    private readonly byte[] _loadBuffer;
    private int _loadLength;
    private ulong _expectedSequence;
    private bool _loadHeaderSeen;
    private bool _loadEndSeen;
    private ulong _pagesLoaded;
    private long _bytesLoaded;
    private string? _loadFailure;
    private bool _loadCorruptIgnored;

    private void BeginLoad()
    {
        lock (_memLock)
        {
            _loadLength = 0;
            _expectedSequence = 0;
            _loadHeaderSeen = false;
            _loadEndSeen = false;
            _pagesLoaded = 0;
            _bytesLoaded = 0;
            _loadFailure = null;
            _loadCorruptIgnored = false;
            _received.ClearAll();
        }
    }

    /// <inheritdoc/>
    protected override void WriteResumingData(ReadOnlySpan<byte> source)
    {
        if (!Has(SampleDeviceFaults.AcceptCorrupt))
        {
            WriteResumingDataChecked(source);
            return;
        }
        lock (_memLock)
        {
            if (_loadCorruptIgnored)
                return;
            try
            {
                WriteResumingDataChecked(source);
            }
            catch (VfioException)
            {
                // Fault accept-corrupt: swallow the rejection and drop the rest of the stream.
                _loadCorruptIgnored = true;
            }
        }
    }

    private void WriteResumingDataChecked(ReadOnlySpan<byte> source)
    {
        lock (_memLock)
        {
            if (_loadFailure is not null)
                throw new VfioException(Errno.EINVAL, WriteOperation, $"the stream was already rejected: {_loadFailure}");
            _bytesLoaded += source.Length;
            while (!source.IsEmpty)
            {
                if (_loadEndSeen)
                    Fail($"{source.Length} bytes follow the END record");

                // Fast path: a whole record at the start of the input is processed in place.
                if (_loadLength == 0 && source.Length >= RecordHeaderSize)
                {
                    int size = RecordSize(source);
                    if (source.Length >= size)
                    {
                        ProcessRecord(source[..size]);
                        source = source[size..];
                        continue;
                    }
                }

                int need = _loadLength < RecordHeaderSize ? RecordHeaderSize : RecordSize(_loadBuffer);
                int n = Math.Min(need - _loadLength, source.Length);
                source[..n].CopyTo(_loadBuffer.AsSpan(_loadLength));
                _loadLength += n;
                source = source[n..];
                if (_loadLength >= RecordHeaderSize && _loadLength == RecordSize(_loadBuffer))
                {
                    _loadLength = 0;
                    ProcessRecord(_loadBuffer.AsSpan(0, RecordSize(_loadBuffer)));
                }
            }
        }
    }

    // Total size of the record whose header starts the span; the declared length is bounded first.
    private int RecordSize(ReadOnlySpan<byte> header)
    {
        uint length = BinaryPrimitives.ReadUInt32LittleEndian(header[4..]);
        if (length > (uint)(8 + _memory.PageSize))
            Fail($"record {BinaryPrimitives.ReadUInt64LittleEndian(header[8..])} declares {length} payload bytes, more than the largest record ({8 + _memory.PageSize})");
        return RecordHeaderSize + (int)length + RecordTrailerSize;
    }

    private void ProcessRecord(ReadOnlySpan<byte> record)
    {
        var type = (RecordType)BinaryPrimitives.ReadUInt16LittleEndian(record);
        int length = (int)BinaryPrimitives.ReadUInt32LittleEndian(record[4..]);
        ulong sequence = BinaryPrimitives.ReadUInt64LittleEndian(record[8..]);
        int body = RecordHeaderSize + length;
        if (Crc32C.Compute(record[..body]) != BinaryPrimitives.ReadUInt32LittleEndian(record[body..]))
            Fail($"record {sequence} is corrupt (CRC-32C mismatch)");
        if (sequence != _expectedSequence)
            Fail($"records out of order: expected sequence {_expectedSequence}, got {sequence}");
        _expectedSequence++;
        var payload = record.Slice(RecordHeaderSize, length);
        switch (type)
        {
            case RecordType.Header:
                if (_loadHeaderSeen || length != HeaderPayloadSize)
                    Fail("unexpected HEADER record");
                if (BinaryPrimitives.ReadUInt64LittleEndian(payload) != Magic)
                    Fail("the stream is not a sample-device stream (bad magic)");
                if (BinaryPrimitives.ReadUInt32LittleEndian(payload[8..]) != StreamVersion)
                    Fail($"unsupported stream version {BinaryPrimitives.ReadUInt32LittleEndian(payload[8..])}");
                uint pageSize = BinaryPrimitives.ReadUInt32LittleEndian(payload[12..]);
                ulong pageCount = BinaryPrimitives.ReadUInt64LittleEndian(payload[16..]);
                if (pageSize != (uint)_memory.PageSize || pageCount != (ulong)_memory.PageCount)
                    Fail($"incompatible device: stream has {pageCount} pages of {pageSize} bytes, this device {_memory.PageCount} of {_memory.PageSize}");
                _loadHeaderSeen = true;
                break;
            case RecordType.Page:
                if (!_loadHeaderSeen)
                    Fail("PAGE record before the HEADER");
                if (length != 8 + _memory.PageSize)
                    Fail($"PAGE record {sequence} has {length} payload bytes, expected {8 + _memory.PageSize}");
                ulong page = BinaryPrimitives.ReadUInt64LittleEndian(payload);
                if (page >= (ulong)_memory.PageCount)
                    Fail($"PAGE record {sequence} names page {page}, beyond the last page {_memory.PageCount - 1}");
                payload[8..].CopyTo(_memory.Page((long)page));
                if (page == 0 && Has(SampleDeviceFaults.CorruptLoad))
                    _memory.Page(0)[0] ^= 0xFF;
                _received.Set((long)page);
                _pagesLoaded++;
                break;
            case RecordType.End:
                if (!_loadHeaderSeen || length != EndPayloadSize)
                    Fail("unexpected END record");
                ulong pagesSent = BinaryPrimitives.ReadUInt64LittleEndian(payload);
                if (pagesSent != _pagesLoaded)
                    Fail($"END says {pagesSent} pages were sent, {_pagesLoaded} arrived");
                _loadEndSeen = true;
                break;
            default:
                Fail($"record {sequence} has unknown type {(ushort)type}");
                break;
        }
    }

    private void FinishLoad()
    {
        const string op = "arc RESUMING>STOP";
        lock (_memLock)
        {
            if (_loadCorruptIgnored)
                return;
            if (_loadFailure is not null)
                throw new VfioException(Errno.EINVAL, op, $"the stream was rejected: {_loadFailure}");
            if (Has(SampleDeviceFaults.AcceptTruncated))
                return;
            if (!_loadEndSeen)
                throw new VfioException(Errno.EINVAL, op, $"incomplete stream: no END record after {_bytesLoaded} bytes");
            if (_received.Count != _memory.PageCount)
                throw new VfioException(Errno.EINVAL, op, $"incomplete stream: {_memory.PageCount - _received.Count} of {_memory.PageCount} pages never arrived");
        }
    }

    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    private void Fail(string why)
    {
        // Like mlx5, a rejected stream poisons the session: later writes and RESUMING→STOP fail too.
        _loadFailure = why;
        throw new VfioException(Errno.EINVAL, WriteOperation, why);
    }
}
