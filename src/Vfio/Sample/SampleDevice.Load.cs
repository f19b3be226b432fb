using System.Buffers.Binary;
using static Vfio.Sample.SampleStreamFormat;

namespace Vfio.Sample;

// The resuming side: records are parsed incrementally from any chunking. A record's head is checked (bounds,
// sequence, type, page range) before anything is applied; a PAGE record's pages are copied straight into the state
// and checked by their CRC at the record's end; RESUMING→STOP accepts only a complete stream. A rejected record
// poisons the load, so pages written before their CRC failed are never trusted.
public sealed partial class SampleDevice
{
    private const string WriteOperation = "write migration data";
    private readonly PageBitmap _received;
    private readonly byte[] _loadHead = new byte[RecordHeaderSize + HeaderPayloadSize];
    private readonly byte[] _loadTrailer = new byte[RecordTrailerSize];
    private int _loadHeadLength;   // head bytes collected so far
    private int _loadHeadNeed;     // head bytes of the current record (16 until its header is read)
    private long _loadDataLeft;    // page bytes of the current PAGE record still to come
    private long _loadDataAt;      // where they go in the state
    private int _loadTrailerLength;
    private uint _loadCrc;
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
            ResetRecordParser();
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

    private void ResetRecordParser()
    {
        _loadHeadLength = 0;
        _loadHeadNeed = RecordHeaderSize;
        _loadDataLeft = 0;
        _loadTrailerLength = 0;
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
                int n;
                if (_loadHeadLength < _loadHeadNeed)
                {
                    n = Math.Min(_loadHeadNeed - _loadHeadLength, source.Length);
                    source[..n].CopyTo(_loadHead.AsSpan(_loadHeadLength));
                    _loadHeadLength += n;
                    if (_loadHeadLength == RecordHeaderSize && _loadHeadNeed == RecordHeaderSize)
                        _loadHeadNeed = HeadSize(_loadHead);
                    if (_loadHeadLength == _loadHeadNeed)
                        BeginRecord();
                }
                else if (_loadDataLeft > 0)
                {
                    n = (int)Math.Min(Math.Min(_loadDataLeft, source.Length), CopyStep);
                    var into = _memory.Slice(_loadDataAt, n);
                    source[..n].CopyTo(into);
                    _loadCrc = Crc32C.Append(_loadCrc, into);
                    _loadDataAt += n;
                    _loadDataLeft -= n;
                }
                else
                {
                    n = Math.Min(RecordTrailerSize - _loadTrailerLength, source.Length);
                    source[..n].CopyTo(_loadTrailer.AsSpan(_loadTrailerLength));
                    _loadTrailerLength += n;
                    if (_loadTrailerLength == RecordTrailerSize)
                        EndRecord();
                }
                source = source[n..];
            }
        }
    }

    // The head size of the record whose 16-byte header is given; the declared length is bounded first.
    private int HeadSize(ReadOnlySpan<byte> header)
    {
        var type = (RecordType)BinaryPrimitives.ReadUInt16LittleEndian(header);
        uint length = BinaryPrimitives.ReadUInt32LittleEndian(header[4..]);
        ulong sequence = BinaryPrimitives.ReadUInt64LittleEndian(header[8..]);
        long largest = 8 + ((long)_maxRunPages * _memory.PageSize);
        if (length > largest)
            Fail($"record {sequence} declares {length} payload bytes, more than the largest record ({largest})");
        return type switch
        {
            RecordType.Header when length == HeaderPayloadSize => RecordHeaderSize + HeaderPayloadSize,
            RecordType.End when length == EndPayloadSize => RecordHeaderSize + EndPayloadSize,
            RecordType.Page when length > 8 && (length - 8) % (uint)_memory.PageSize == 0 => RecordHeaderSize + 8,
            RecordType.Header or RecordType.End or RecordType.Page => Reject($"record {sequence} of type {(ushort)type} declares {length} payload bytes, not a whole record of its type"),
            _ => Reject($"record {sequence} has unknown type {(ushort)type}"),
        };
    }

    // The head is complete: check what can be checked before the payload is applied.
    private void BeginRecord()
    {
        var head = _loadHead.AsSpan(0, _loadHeadLength);
        var type = (RecordType)BinaryPrimitives.ReadUInt16LittleEndian(head);
        uint length = BinaryPrimitives.ReadUInt32LittleEndian(head[4..]);
        ulong sequence = BinaryPrimitives.ReadUInt64LittleEndian(head[8..]);
        if (sequence != _expectedSequence)
            Fail($"records out of order: expected sequence {_expectedSequence}, got {sequence}");
        _loadCrc = Crc32C.Append(0xFFFFFFFFu, head);
        if (type == RecordType.Header && _loadHeaderSeen)
            Fail("unexpected HEADER record");
        if (type != RecordType.Header && !_loadHeaderSeen)
            Fail($"{(type == RecordType.Page ? "PAGE" : "END")} record before the HEADER");
        if (type == RecordType.Page)
        {
            ulong first = BinaryPrimitives.ReadUInt64LittleEndian(head[RecordHeaderSize..]);
            ulong pages = (length - 8) / (ulong)_memory.PageSize;
            if (first >= (ulong)_memory.PageCount || pages > (ulong)_memory.PageCount - first)
                Fail($"PAGE record {sequence} names pages {first} to {first + pages - 1}, beyond the last page {_memory.PageCount - 1}");
            _loadDataAt = (long)first * _memory.PageSize;
            _loadDataLeft = length - 8;
        }
    }

    // The trailer is complete: check the CRC, then apply the record.
    private void EndRecord()
    {
        var head = _loadHead.AsSpan(0, _loadHeadLength);
        var type = (RecordType)BinaryPrimitives.ReadUInt16LittleEndian(head);
        uint length = BinaryPrimitives.ReadUInt32LittleEndian(head[4..]);
        ulong sequence = BinaryPrimitives.ReadUInt64LittleEndian(head[8..]);
        var payload = head[RecordHeaderSize..];
        if (~_loadCrc != BinaryPrimitives.ReadUInt32LittleEndian(_loadTrailer))
            Fail($"record {sequence} is corrupt (CRC-32C mismatch)");
        _expectedSequence++;
        switch (type)
        {
            case RecordType.Header:
                if (BinaryPrimitives.ReadUInt64LittleEndian(payload) != Magic)
                    Fail("the stream is not a sample-device stream (bad magic)");
                if (BinaryPrimitives.ReadUInt32LittleEndian(payload[8..]) != StreamVersion)
                    Fail($"unsupported stream version {BinaryPrimitives.ReadUInt32LittleEndian(payload[8..])} (this device reads version {StreamVersion})");
                uint pageSize = BinaryPrimitives.ReadUInt32LittleEndian(payload[12..]);
                ulong pageCount = BinaryPrimitives.ReadUInt64LittleEndian(payload[16..]);
                if (pageSize != (uint)_memory.PageSize || pageCount != (ulong)_memory.PageCount)
                    Fail($"incompatible device: stream has {pageCount} pages of {pageSize} bytes, this device {_memory.PageCount} of {_memory.PageSize}");
                _loadHeaderSeen = true;
                break;
            case RecordType.Page:
                long first = (long)BinaryPrimitives.ReadUInt64LittleEndian(payload);
                long pages = (length - 8) / _memory.PageSize;
                if (first == 0 && Has(SampleDeviceFaults.CorruptLoad))
                    _memory.Page(0)[0] ^= 0xFF;
                for (long p = first; p < first + pages; p++)
                    _received.Set(p);
                _pagesLoaded += (ulong)pages;
                break;
            default: // End
                ulong pagesSent = BinaryPrimitives.ReadUInt64LittleEndian(payload);
                if (pagesSent != _pagesLoaded)
                    Fail($"END says {pagesSent} pages were sent, {_pagesLoaded} arrived");
                _loadEndSeen = true;
                break;
        }
        ResetRecordParser();
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

    private int Reject(string why)
    {
        Fail(why);
        return 0;
    }

    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    private void Fail(string why)
    {
        // Like mlx5, a rejected stream poisons the session: later writes and RESUMING→STOP fail too.
        _loadFailure = why;
        throw new VfioException(Errno.EINVAL, WriteOperation, why);
    }
}
