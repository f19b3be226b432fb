using System.Buffers.Binary;
using Vfio.Device;
using Vfio.Migration;
using static Vfio.Sample.SampleStreamFormat;

namespace Vfio.Sample;

// The saving side: HEADER, the initial pass over every page, dirty pages, then END in STOP_COPY. Records are
// made one at a time and handed out in any read sizes: the head (record header, plus HEADER's or END's payload or
// PAGE's page index) from a small buffer, a PAGE record's pages straight from the state, then the CRC, computed
// over the bytes as they go out. A read never changes where records begin, so any read sizes give one byte stream.
public sealed partial class SampleDevice
{
    // Bytes copied (and CRC'd right after, while they are in the cache) per step.
    private const int CopyStep = 64 << 10;

    private readonly PageBitmap _saveDirty;
    private readonly byte[] _recordHead = new byte[RecordHeaderSize + HeaderPayloadSize];
    private readonly byte[] _recordTrailer = new byte[RecordTrailerSize];
    private readonly int _maxRunPages;
    private bool _saveActive;
    private bool _headerSent;
    private bool _endSent;
    private long _initialNext;
    private ulong _sequence;
    private ulong _pagesSent;
    private long _recordSize; // 0: no record is being handed out
    private long _recordOffset;
    private int _recordHeadLength;
    private long _recordFirstPage;
    private long _recordDataLength;
    private uint _recordCrc;
    private bool _recordIsInitial;
    private long _preCopyRead;
    private bool _reinitDone;
    private bool _initialReportedDone;

    private static long HeaderRecordBytes => RecordHeaderSize + HeaderPayloadSize + RecordTrailerSize;

    private static long EndRecordBytes => RecordHeaderSize + EndPayloadSize + RecordTrailerSize;

    private void BeginSave()
    {
        lock (_memLock)
        {
            _saveActive = true;
            _headerSent = false;
            _endSent = false;
            _initialNext = 0;
            _sequence = 0;
            _pagesSent = 0;
            _recordSize = 0;
            _preCopyRead = 0;
            _reinitDone = false;
            _initialReportedDone = false;
            _saveDirty.ClearAll();
        }
    }

    /// <inheritdoc/>
    protected override int ReadSavingData(Span<byte> destination, VfioMigrationState state)
    {
        bool final = state == VfioMigrationState.StopCopy;
        int total = 0;
        lock (_memLock)
        {
            while (total < destination.Length && (_recordSize > 0 || StartRecord(final)))
                total += HandOut(destination[total..]);
            if (!final)
                _preCopyRead += total;
        }
        return total;
    }

    // STOP_COPY: the device is stopped, so page bytes of the current record are handed to the transport in place
    // (one CRC pass, no copy) when a whole read lies inside them; any other read goes through ReadSavingData.
    /// <inheritdoc/>
    protected override ReadOnlyMemory<byte>? TakeStopCopyData(int maxLength)
    {
        lock (_memLock)
        {
            long inData = _recordOffset - _recordHeadLength;
            if (_recordSize == 0 || _running || inData < 0 || _recordDataLength - inData < maxLength)
                return null;
            long at = (_recordFirstPage * _memory.PageSize) + inData;
            _recordCrc = Crc32C.Append(_recordCrc, _memory.Slice(at, maxLength));
            _recordOffset += maxLength;
            return _memory.Share(at, maxLength);
        }
    }

    // Must hold _memLock. Copies the next bytes of the current record into target; returns how many.
    private int HandOut(Span<byte> target)
    {
        int written = 0;
        while (written < target.Length && _recordOffset < _recordSize)
        {
            var to = target[written..];
            long dataEnd = _recordHeadLength + _recordDataLength;
            int n;
            if (_recordOffset < _recordHeadLength)
            {
                n = Math.Min(_recordHeadLength - (int)_recordOffset, to.Length);
                _recordHead.AsSpan((int)_recordOffset, n).CopyTo(to);
                _recordCrc = Crc32C.Append(_recordCrc, to[..n]);
            }
            else if (_recordOffset < dataEnd)
            {
                n = (int)Math.Min(Math.Min(dataEnd - _recordOffset, to.Length), CopyStep);
                _memory.Slice((_recordFirstPage * _memory.PageSize) + _recordOffset - _recordHeadLength, n).CopyTo(to);
                _recordCrc = Crc32C.Append(_recordCrc, to[..n]);
            }
            else
            {
                if (_recordOffset == dataEnd)
                    BinaryPrimitives.WriteUInt32LittleEndian(_recordTrailer, ~_recordCrc);
                int at = (int)(_recordOffset - dataEnd);
                n = Math.Min(RecordTrailerSize - at, to.Length);
                _recordTrailer.AsSpan(at, n).CopyTo(to);
            }
            _recordOffset += n;
            written += n;
        }
        if (_recordOffset == _recordSize)
            _recordSize = 0;
        return written;
    }

    // Must hold _memLock. Makes the next record the current one; false when nothing is due.
    private bool StartRecord(bool final)
    {
        // HEADER and the initial pass are "initial" data (spec §4.6); dirty re-sends and END are not.
        bool initial = !_headerSent || _initialNext < _memory.PageCount;
        var head = _recordHead.AsSpan();
        long first = _initialNext;
        int pages = (int)Math.Min(_maxRunPages, _memory.PageCount - first);
        if (!_headerSent)
        {
            _headerSent = true;
            WriteHeader(head, RecordType.Header, HeaderPayloadSize, _sequence);
            var p = head[RecordHeaderSize..];
            BinaryPrimitives.WriteUInt64LittleEndian(p, Magic);
            BinaryPrimitives.WriteUInt32LittleEndian(p[8..], StreamVersion);
            BinaryPrimitives.WriteUInt32LittleEndian(p[12..], (uint)_memory.PageSize);
            BinaryPrimitives.WriteUInt64LittleEndian(p[16..], (ulong)_memory.PageCount);
            Begin(RecordHeaderSize + HeaderPayloadSize, 0, 0);
        }
        else if (pages > 0 || _saveDirty.TakeRun(_maxRunPages, out first, out pages))
        {
            if (initial)
                _initialNext += pages;
            long data = (long)pages * _memory.PageSize;
            WriteHeader(head, RecordType.Page, (uint)(8 + data), _sequence);
            BinaryPrimitives.WriteUInt64LittleEndian(head[RecordHeaderSize..], (ulong)first);
            _pagesSent += (ulong)pages;
            Begin(RecordHeaderSize + 8, first, data);
        }
        else if (final && !_endSent)
        {
            _endSent = true;
            WriteHeader(head, RecordType.End, EndPayloadSize, _sequence);
            BinaryPrimitives.WriteUInt64LittleEndian(head[RecordHeaderSize..], _pagesSent);
            BinaryPrimitives.WriteUInt64LittleEndian(head[(RecordHeaderSize + 8)..], _sequence);
            Begin(RecordHeaderSize + EndPayloadSize, 0, 0);
        }
        else
        {
            return false;
        }
        _recordIsInitial = initial;
        _sequence++;
        return true;
    }

    private void Begin(int headLength, long firstPage, long dataLength)
    {
        _recordHeadLength = headLength;
        _recordFirstPage = firstPage;
        _recordDataLength = dataLength;
        _recordSize = headLength + dataLength + RecordTrailerSize;
        _recordOffset = 0;
        _recordCrc = 0xFFFFFFFFu;
    }

    /// <inheritdoc/>
    protected override PrecopyEstimate GetPrecopyEstimate()
    {
        lock (_memLock)
        {
            var estimate = Estimate();
            // The REINIT option (spec §4.7): once the user was told all initial data was read and enough pre-copy
            // bytes went out, the device re-initialises: every page is initial data again (a new initial pass),
            // and this answer says so. The base class hides the flag from users that did not opt in.
            if (Options.ReinitAfterBytes > 0 && !_reinitDone && _initialReportedDone && _preCopyRead >= Options.ReinitAfterBytes)
            {
                _reinitDone = true;
                _initialNext = 0;
                return Estimate() with { Reinit = true };
            }
            if (estimate.InitialBytes == 0)
                _initialReportedDone = true;
            return estimate;
        }
    }

    // Must hold _memLock. The exact bytes still to come: the unread rest of the current record counts where it came
    // from (the initial pass or a dirty re-send); runs are cut as StartRecord will cut them.
    private PrecopyEstimate Estimate()
    {
        ulong current = _recordSize == 0 ? 0 : (ulong)(_recordSize - _recordOffset);
        ulong initial = (_recordIsInitial ? current : 0)
            + (_headerSent ? 0UL : (ulong)HeaderRecordBytes)
            + (ulong)RunBytes(_memory.PageCount - _initialNext, _memory.PageSize);
        ulong dirty = (_recordIsInitial ? 0 : current)
            + ((ulong)_saveDirty.Count * (ulong)_memory.PageSize) + ((ulong)_saveDirty.CountRuns(_maxRunPages) * RunOverhead);
        return new PrecopyEstimate(initial, dirty);
    }

    /// <inheritdoc/>
    protected override ulong EstimateStopCopySize()
    {
        if (Has(SampleDeviceFaults.BadEstimate))
            return 0;
        lock (_memLock)
        {
            if (!_saveActive)
                return (ulong)(HeaderRecordBytes + RunBytes(_memory.PageCount, _memory.PageSize) + EndRecordBytes);
            var pre = Estimate();
            return pre.InitialBytes + pre.DirtyBytes + (_endSent ? 0 : (ulong)EndRecordBytes);
        }
    }
}
