using System.Diagnostics;
using Vfio.Device;
using Vfio.Migration;
using Vfio.Uapi;

namespace Vfio.Sample;

/// <summary>
/// The built-in sample device: N bytes of state (pages), a workload that dirties pages while the device
/// runs, its own dirty tracking, and DMA logging. Pre-copy sends the initial image then dirty pages;
/// stop-copy sends what remains plus an END record (see <see cref="SampleStreamFormat"/>).
/// </summary>
public sealed partial class SampleDevice : MigrationDevice, Conformance.IConformanceHints
{
    private readonly SampleMemory _memory;
    private readonly Lock _memLock = new();
    private readonly Thread? _workload;
    private readonly ManualResetEventSlim _workloadStop = new();
    private bool _running = true;
    private long _pagesDirtiedByWorkload;

    /// <summary>Creates a sample device in RUNNING.</summary>
    /// <exception cref="ArgumentException">Invalid size, page size or capabilities.</exception>
    public SampleDevice(SampleDeviceOptions? options = null)
        : base((options ?? SampleDeviceOptions.Default).Capabilities)
    {
        Options = options ?? SampleDeviceOptions.Default;
        Faults = ToEngineFaults(Options.Faults);
        _memory = new SampleMemory(Options.SizeBytes, Options.PageSize, Options.Seed);
        _maxRunPages = SampleStreamFormat.MaxRunPages(Options.PageSize);
        _saveDirty = new PageBitmap(_memory.PageCount);
        _received = new PageBitmap(_memory.PageCount);
        _dmaDirty = new PageBitmap(_memory.PageCount);
        if (Options.DirtyRateBytesPerSecond > 0)
        {
            _workload = new Thread(WorkloadLoop) { IsBackground = true, Name = "sample-device-workload" };
            _workload.Start();
        }
    }

    /// <summary>The options the device was made with.</summary>
    public SampleDeviceOptions Options { get; }

    /// <summary>
    /// The sample stream format: version <see cref="SampleStreamFormat.StreamVersion"/> only (a version-1 peer, one
    /// record per page, is refused before any data moves); feature bit 0 = a second initial pass (REINIT) may follow;
    /// page size and page count must be equal (the HEADER record checks them).
    /// </summary>
    public override Compat.DeviceFormat Format => new()
    {
        Name = "vfio-mig-sample",
        Version = SampleStreamFormat.StreamVersion,
        MinVersion = SampleStreamFormat.StreamVersion,
        Features = SampleStreamFormat.FeatureReinit,
        Parameters = new Dictionary<string, ulong>
        {
            ["page_size"] = (ulong)Options.PageSize,
            ["page_count"] = (ulong)_memory.PageCount,
        },
    };

    /// <summary>Size of the state in bytes.</summary>
    public long SizeBytes => _memory.Size;

    /// <summary>Number of pages of state.</summary>
    public long PageCount => _memory.PageCount;

    /// <summary>True while the device runs (its workload may change the state).</summary>
    public bool IsRunning
    {
        get
        {
            lock (_memLock)
                return _running;
        }
    }

    /// <summary>Pages the workload has written so far.</summary>
    public long PagesDirtiedByWorkload => Interlocked.Read(ref _pagesDirtiedByWorkload);

    /// <summary>SHA-256 of the whole state.</summary>
    public byte[] ComputeSha256()
    {
        lock (_memLock)
            return _memory.Sha256();
    }

    /// <summary>Reads state bytes (what a region read through the device would see).</summary>
    public void ReadState(long offset, Span<byte> destination)
    {
        CheckRange(offset, destination.Length);
        lock (_memLock)
            _memory.Read(offset, destination);
    }

    // The sample stream is a pure function of the state, so a re-save must be byte-identical.
    bool Conformance.IConformanceHints.DeterministicStreams => true;

    bool Conformance.IConformanceHints.CanGenerateDeviceWrites => true;

    // Guest-style writes to a few pages inside the logged range (IOVA 0..1 MiB), so read-and-clear has bits to clear.
    ValueTask Conformance.IConformanceHints.GenerateDeviceWritesAsync(CancellationToken cancellationToken)
    {
        Span<byte> bytes = stackalloc byte[8];
        foreach (long page in (ReadOnlySpan<long>)[0, 3, 17, 200])
        {
            long offset = page * Options.PageSize;
            if (offset + bytes.Length <= Math.Min(SizeBytes, 1 << 20))
            {
                System.Buffers.Binary.BinaryPrimitives.WriteInt64LittleEndian(bytes, page + 1);
                WriteState(offset, bytes);
            }
        }
        return ValueTask.CompletedTask;
    }

    /// <summary>Writes state bytes as the guest would, marking the touched pages dirty.</summary>
    public void WriteState(long offset, ReadOnlySpan<byte> source)
    {
        CheckRange(offset, source.Length);
        lock (_memLock)
        {
            _memory.Write(offset, source);
            if (source.Length > 0)
            {
                for (long p = offset / _memory.PageSize; p <= (offset + source.Length - 1) / _memory.PageSize; p++)
                    MarkWritten(p);
            }
        }
    }

    /// <summary>Runs the workload by hand: writes <paramref name="pages"/> pseudo-random pages now, running or not.</summary>
    public void DirtyPages(int pages, int seed)
    {
        var rng = new Random(seed);
        lock (_memLock)
        {
            for (int i = 0; i < pages; i++)
                TouchPage(rng);
        }
    }

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _workloadStop.Set();
            _workload?.Join();
            _workloadStop.Dispose();
        }
        base.Dispose(disposing);
        if (disposing)
        {
            lock (_memLock)
                _memory.Dispose();
        }
    }

    private void CheckRange(long offset, int length)
    {
        if (offset < 0 || length < 0 || offset > _memory.Size - length)
            throw new VfioException(Errno.EINVAL, "access device state", $"offset 0x{offset:x} + {length} is outside the {_memory.Size}-byte state");
    }

    // Arc hooks: the workload runs in RUNNING, RUNNING_P2P, PRE_COPY and PRE_COPY_P2P.
    /// <inheritdoc/>
    protected override void OnRunningToStop() => SetRunning(false);

    /// <inheritdoc/>
    protected override void OnRunningP2PToStop() => SetRunning(false);

    /// <inheritdoc/>
    protected override void OnStopToRunning()
    {
        if (Has(SampleDeviceFaults.RefuseArc))
            throw new VfioException(Errno.EIO, "arc STOP>RUNNING", "deliberate fault refuse-arc");
        SetRunning(true);
    }

    /// <inheritdoc/>
    protected override void OnRunningP2PToRunning()
    {
        if (Has(SampleDeviceFaults.RefuseArc))
            throw new VfioException(Errno.EIO, "arc RUNNING_P2P>RUNNING", "deliberate fault refuse-arc");
    }

    /// <inheritdoc/>
    protected override void OnStopToRunningP2P() => SetRunning(true);

    /// <inheritdoc/>
    protected override void OnStopToStopCopy() => BeginSave();

    /// <inheritdoc/>
    protected override void OnRunningToPreCopy() => BeginSave();

    /// <inheritdoc/>
    protected override void OnRunningP2PToPreCopyP2P() => BeginSave();

    /// <inheritdoc/>
    protected override void OnPreCopyToStopCopy() => SetRunning(false);

    /// <inheritdoc/>
    protected override void OnPreCopyP2PToStopCopy() => SetRunning(false);

    /// <inheritdoc/>
    protected override void OnStopToResuming() => BeginLoad();

    /// <inheritdoc/>
    protected override void OnResumingToStop() => FinishLoad();

    /// <inheritdoc/>
    protected override void OnReset() => SetRunning(true);

    /// <inheritdoc/>
    protected override void OnSessionEnded(DataSessionKind kind)
    {
        lock (_memLock)
        {
            if (kind == DataSessionKind.Saving)
            {
                _saveActive = false;
                _saveDirty.ClearAll();
                _recordSize = 0;
            }
            else
            {
                ResetRecordParser();
            }
        }
    }

    private bool Has(SampleDeviceFaults fault) => (Options.Faults & fault) != 0;

    private static Device.EngineFaults ToEngineFaults(SampleDeviceFaults faults)
    {
        var engine = Device.EngineFaults.None;
        if ((faults & SampleDeviceFaults.SkipEnomsg) != 0)
            engine |= Device.EngineFaults.PreCopyEndReturnsZero;
        if ((faults & SampleDeviceFaults.NoEof) != 0)
            engine |= Device.EngineFaults.StopCopyEndIsEnomsg;
        if ((faults & SampleDeviceFaults.ReuseStream) != 0)
            engine |= Device.EngineFaults.StaleSessionsStayUsable;
        if ((faults & SampleDeviceFaults.WrongPath) != 0)
            engine |= Device.EngineFaults.WrongPath;
        if ((faults & SampleDeviceFaults.IgnoreInvalid) != 0)
            engine |= Device.EngineFaults.IgnoreRejectedRequests;
        if ((faults & SampleDeviceFaults.ErrorSettable) != 0)
            engine |= Device.EngineFaults.ErrorSettable;
        if ((faults & SampleDeviceFaults.SameStateStream) != 0)
            engine |= Device.EngineFaults.SameStateOpensStream;
        if ((faults & SampleDeviceFaults.InfoAnyState) != 0)
            engine |= Device.EngineFaults.PrecopyInfoInAnyState;
        if ((faults & SampleDeviceFaults.InitialBytesGrow) != 0)
            engine |= Device.EngineFaults.InitialBytesGrow;
        if ((faults & SampleDeviceFaults.LoggingNoValidate) != 0)
            engine |= Device.EngineFaults.SkipDmaLoggingValidation;
        return engine;
    }

    private void SetRunning(bool running)
    {
        // Taking the memory lock also waits out a workload batch in flight: after this returns the state is still.
        lock (_memLock)
            _running = running;
    }

    private void WorkloadLoop()
    {
        var rng = new Random(Options.Seed ^ 0x5A5A5A5A);
        var clock = Stopwatch.StartNew();
        double due = 0;
        double pagesPerSecond = (double)Options.DirtyRateBytesPerSecond / _memory.PageSize;
        TimeSpan last = TimeSpan.Zero;
        while (!_workloadStop.Wait(2))
        {
            var now = clock.Elapsed;
            due += (now - last).TotalSeconds * pagesPerSecond;
            last = now;
            int pages = (int)Math.Min(due, 1 << 16);
            if (pages == 0)
                continue;
            due -= pages;
            lock (_memLock)
            {
                if (!_running)
                    continue;
                for (int i = 0; i < pages; i++)
                    TouchPage(rng);
            }
        }
    }

    // Must hold _memLock.
    private void TouchPage(Random rng)
    {
        long page = rng.NextInt64(_memory.PageCount);
        var bytes = _memory.Page(page);
        int at = rng.Next(_memory.PageSize / 8) * 8;
        System.Buffers.Binary.BinaryPrimitives.WriteInt64LittleEndian(bytes[at..], rng.NextInt64());
        MarkWritten(page);
        Interlocked.Increment(ref _pagesDirtiedByWorkload);
    }

    // Must hold _memLock: records a write for the saving stream and for DMA logging.
    private void MarkWritten(long page)
    {
        if (_saveActive && page < _initialNext)
            _saveDirty.Set(page);
        if (_loggingActive && IsLogged(page))
            _dmaDirty.Set(page);
    }
}
