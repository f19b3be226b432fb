using System.Buffers.Binary;
using Vfio.Device;
using Vfio.Migration;
using static Vfio.Sample.SampleStreamFormat;

namespace Vfio.Sample;

// The saving side: HEADER, the initial pass over every page, dirty pages, then END in STOP_COPY.
public sealed partial class SampleDevice
{
    private readonly PageBitmap _saveDirty;
    private readonly byte[] _pending;
    private bool _saveActive;
    private bool _headerSent;
    private bool _endSent;
    private long _initialNext;
    private ulong _sequence;
    private ulong _pagesSent;
    private int _pendingOffset;
    private int _pendingLength;
    private bool _pendingIsInitial;
    private bool _producedInitial;
    private long _preCopyRead;
    private bool _reinitDone;
    private bool _initialReportedDone;

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
            _pendingLength = 0;
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
            while (!destination.IsEmpty)
            {
                if (_pendingLength > 0)
                {
                    int n = Math.Min(_pendingLength, destination.Length);
                    _pending.AsSpan(_pendingOffset, n).CopyTo(destination);
                    _pendingOffset += n;
                    _pendingLength -= n;
                    destination = destination[n..];
                    total += n;
                    continue;
                }
                // Produce straight into the caller's buffer when a whole record fits; else stage it.
                bool direct = destination.Length >= _pageRecordSize;
                int produced = ProduceRecord(direct ? destination : _pending, final);
                if (produced == 0)
                    break;
                if (direct)
                {
                    destination = destination[produced..];
                    total += produced;
                }
                else
                {
                    _pendingOffset = 0;
                    _pendingLength = produced;
                    _pendingIsInitial = _producedInitial;
                }
            }
            if (!final)
                _preCopyRead += total;
        }
        return total;
    }



    // Must hold _memLock. Writes the next record into target; returns its size, 0 when nothing is due.
    private int ProduceRecord(Span<byte> target, bool final)
    {
        // HEADER and the initial pass are "initial" data (spec §4.6); dirty re-sends and END are not.
        _producedInitial = !_headerSent || _initialNext < _memory.PageCount;
        if (!_headerSent)
        {
            _headerSent = true;
            WriteHeader(target, RecordType.Header, HeaderPayloadSize, _sequence++);
            var p = target[RecordHeaderSize..];
            BinaryPrimitives.WriteUInt64LittleEndian(p, Magic);
            BinaryPrimitives.WriteUInt32LittleEndian(p[8..], StreamVersion);
            BinaryPrimitives.WriteUInt32LittleEndian(p[12..], (uint)_memory.PageSize);
            BinaryPrimitives.WriteUInt64LittleEndian(p[16..], (ulong)_memory.PageCount);
            Seal(target, RecordHeaderSize + HeaderPayloadSize);
            return RecordHeaderSize + HeaderPayloadSize + RecordTrailerSize;
        }

        long page = _initialNext < _memory.PageCount ? _initialNext++ : _saveDirty.TakeAny();
        if (page >= 0)
        {
            WriteHeader(target, RecordType.Page, (uint)(8 + _memory.PageSize), _sequence++);
            BinaryPrimitives.WriteUInt64LittleEndian(target[RecordHeaderSize..], (ulong)page);
            _memory.Page(page).CopyTo(target[(RecordHeaderSize + 8)..]);
            Seal(target, RecordHeaderSize + 8 + _memory.PageSize);
            _pagesSent++;
            return _pageRecordSize;
        }

        if (final && !_endSent)
        {
            _endSent = true;
            WriteHeader(target, RecordType.End, EndPayloadSize, _sequence);
            BinaryPrimitives.WriteUInt64LittleEndian(target[RecordHeaderSize..], _pagesSent);
            BinaryPrimitives.WriteUInt64LittleEndian(target[(RecordHeaderSize + 8)..], _sequence);
            _sequence++;
            Seal(target, RecordHeaderSize + EndPayloadSize);
            return RecordHeaderSize + EndPayloadSize + RecordTrailerSize;
        }
        return 0;
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

    // Must hold _memLock.
    private PrecopyEstimate Estimate()
    {
        // A partly read staged record counts where it came from: the initial pass or a dirty re-send.
        ulong staged = (ulong)_pendingLength;
        ulong initial = (_pendingIsInitial ? staged : 0)
            + (_headerSent ? 0UL : RecordHeaderSize + HeaderPayloadSize + RecordTrailerSize)
            + (ulong)(_memory.PageCount - _initialNext) * (ulong)_pageRecordSize;
        ulong dirty = (_pendingIsInitial ? 0 : staged) + ((ulong)_saveDirty.Count * (ulong)_pageRecordSize);
        return new PrecopyEstimate(initial, dirty);
    }

    /// <inheritdoc/>
    protected override ulong EstimateStopCopySize()
    {
        const ulong headerBytes = RecordHeaderSize + HeaderPayloadSize + RecordTrailerSize;
        const ulong endBytes = RecordHeaderSize + EndPayloadSize + RecordTrailerSize;
        if (Has(SampleDeviceFaults.BadEstimate))
            return 0;
        lock (_memLock)
        {
            if (!_saveActive)
                return headerBytes + ((ulong)_memory.PageCount * (ulong)_pageRecordSize) + endBytes;
            var pre = Estimate();
            return pre.InitialBytes + pre.DirtyBytes + (_endSent ? 0 : endBytes);
        }
    }
}
