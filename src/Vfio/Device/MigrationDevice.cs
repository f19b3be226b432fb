using Vfio.Migration;
using Vfio.Uapi;

namespace Vfio.Device;

/// <summary>
/// The device side of migration protocol v2: what a kernel migration driver does, in user space.
/// Device authors subclass it and override one hook per legal arc plus the data hooks; the engine
/// walks the kernel's path one arc at a time, owns the data sessions and applies every core rule.
/// </summary>
/// <remarks>
/// Locking follows the kernel drivers: one state lock serialises SET, GET-with-side-effects, stream I/O
/// and precopy queries; a reset that finds the lock taken is deferred and applied by whoever releases it
/// (spec §3.4), so a SET racing a reset still returns, and the device is RUNNING afterwards.
/// </remarks>
public abstract partial class MigrationDevice : IDisposable
{
    private readonly SemaphoreSlim _stateLock = new(1, 1);
    private readonly Lock _resetLock = new();
    private bool _deferredReset;
    private VfioMigrationState _state = VfioMigrationState.Running;
    private DataSession? _session;
    private long _nextSessionId = 1;
    private bool _errorRequested;
    private bool _precopyInfoV2;
    private bool _disposed;
    private int _lockOwner;

    /// <summary>Creates a device with the given migration capabilities, in RUNNING.</summary>
    /// <exception cref="ArgumentException">The caps lack STOP_COPY or are not one of 0x1, 0x3, 0x5, 0x7.</exception>
    protected MigrationDevice(VfioMigrationFlags capabilities)
    {
        if (capabilities is not (VfioMigrationFlags.StopCopy
            or (VfioMigrationFlags.StopCopy | VfioMigrationFlags.P2P)
            or (VfioMigrationFlags.StopCopy | VfioMigrationFlags.PreCopy)
            or (VfioMigrationFlags.StopCopy | VfioMigrationFlags.P2P | VfioMigrationFlags.PreCopy)))
        {
            throw new ArgumentException($"capabilities {MigrationStateMachine.FormatCaps(capabilities)} are not one of 0x1, 0x3, 0x5, 0x7", nameof(capabilities));
        }
        Capabilities = capabilities;
    }

    /// <summary>VFIO_DEVICE_FEATURE_MIGRATION: the capability flags.</summary>
    public VfioMigrationFlags Capabilities { get; }

    /// <summary>
    /// The device's own description of its migration data (format name and version, feature bits, parameters,
    /// limits), compared before a migration (docs/compatibility.md). Null (the default): no description; the
    /// device checks the stream itself while loading.
    /// </summary>
    public virtual Compat.DeviceFormat? Format => null;

    /// <summary>GET MIG_DEVICE_STATE: the last committed state.</summary>
    /// <remarks>
    /// Waits for a SET in progress on another thread. Called on the thread that holds the state lock (from
    /// an arc hook or an <see cref="ArcCommitted"/> handler) it answers at once instead of deadlocking.
    /// </remarks>
    public VfioMigrationState State
    {
        get
        {
            if (Volatile.Read(ref _lockOwner) == Environment.CurrentManagedThreadId)
                return _state;
            Lock();
            try
            {
                return _state;
            }
            finally
            {
                Unlock();
            }
        }
    }

    /// <summary>The open data session, if any (saving or resuming).</summary>
    public DataSession? CurrentSession => Volatile.Read(ref _session);

    /// <summary>True once the user opted in to precopy-info v2 (feature 12, spec §4.7).</summary>
    public bool PrecopyInfoV2Enabled => Volatile.Read(ref _precopyInfoV2);

    /// <summary>Raised after each committed arc (for tests, tracing and switchover-ordering checks).</summary>
    public event EventHandler<MigrationArc>? ArcCommitted;

    /// <summary>
    /// SET MIG_DEVICE_STATE: walks the kernel's path to <paramref name="target"/> one arc at a time
    /// (spec §2.4). Returns the new data session when the last arc opens one, else null.
    /// </summary>
    /// <exception cref="VfioException">
    /// EINVAL for a rejected request (spec §2.5), or the error of the failing arc; the device then stays in
    /// the last committed state (or ERROR if the hook asked for it), which <see cref="State"/> reports.
    /// </exception>
    public DataSession? SetState(VfioMigrationState target)
    {
        Lock();
        try
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_faults != EngineFaults.None && TryApplySetStateFault(target, out var faulty))
                return faulty;
            DataSession? opened = null;
            while (_state != target)
            {
                var current = _state;
                if (MigrationStateMachine.TryGetNextState(current, target, Capabilities, out var next) != Errno.None)
                {
                    if ((_faults & EngineFaults.IgnoreRejectedRequests) != 0 && current != VfioMigrationState.Error)
                        return null;
                    string why = current == VfioMigrationState.Error
                        ? "the device is in ERROR; only a reset leaves it"
                        : $"no path from {MigrationStateMachine.Name(current)} to {MigrationStateMachine.Name(target)} with caps {MigrationStateMachine.FormatCaps(Capabilities)}";
                    throw new VfioException(Errno.EINVAL, $"SET device_state {MigrationStateMachine.Name(target)}", why);
                }

                if ((_faults & EngineFaults.WrongPath) != 0)
                    next = WrongNextState(current, target, next);
                var arc = new MigrationArc(current, next);
                opened = Step(arc);
                _state = next;
                ArcCommitted?.Invoke(this, arc);
                if (opened is not null && next != target)
                {
                    // Only the last arc of a path may open a stream; the upstream table never gets here.
                    EndSession();
                    throw new VfioException(Errno.EINVAL, $"SET device_state {MigrationStateMachine.Name(target)}", $"arc {arc} opened a stream in the middle of the path");
                }
            }
            return opened;
        }
        finally
        {
            Unlock();
        }
    }

    /// <summary>
    /// VFIO_DEVICE_RESET: state := RUNNING and every data session is terminated. If a SET or stream
    /// operation is in progress, the reset is applied as soon as it finishes (spec §3.4).
    /// </summary>
    public void Reset()
    {
        lock (_resetLock)
        {
            _deferredReset = true;
            if (!_stateLock.Wait(0))
                return;
            Volatile.Write(ref _lockOwner, Environment.CurrentManagedThreadId);
        }
        Unlock();
    }

    /// <summary>VFIO_DEVICE_FEATURE_MIG_DATA_SIZE: the device's estimate of the STOP_COPY size (spec §4.8).</summary>
    public ulong GetStopCopySize()
    {
        Lock();
        try
        {
            return EstimateStopCopySize();
        }
        finally
        {
            Unlock();
        }
    }

    /// <summary>SET MIG_PRECOPY_INFOv2: opt in to REINIT reporting (spec §4.7).</summary>
    /// <exception cref="VfioException">EINVAL when the device lacks PRE_COPY.</exception>
    public void EnablePrecopyInfoV2()
    {
        if ((Capabilities & VfioMigrationFlags.PreCopy) == 0)
            VfioException.Throw(Errno.EINVAL, "SET MIG_PRECOPY_INFOv2", "the device has no PRE_COPY capability");
        Volatile.Write(ref _precopyInfoV2, true);
    }

    /// <summary>Terminates sessions; the device can no longer be used.</summary>
    public void Dispose()
    {
        Dispose(disposing: true);
        GC.SuppressFinalize(this);
    }

    /// <summary>Releases resources; overrides must call the base.</summary>
    protected virtual void Dispose(bool disposing)
    {
        if (!disposing || _disposed)
            return;
        Lock();
        try
        {
            EndSession();
            _disposed = true;
        }
        finally
        {
            Unlock();
        }
    }

    /// <summary>
    /// Asks the engine to put the device into ERROR when the current arc hook fails (call it, then throw).
    /// Only a reset leaves ERROR.
    /// </summary>
    protected void RequestErrorState() => _errorRequested = true;

    private DataSession? Step(MigrationArc arc)
    {
        var effect = MigrationStateMachine.GetSessionEffect(arc);
        _errorRequested = false;
        try
        {
            InvokeArcHook(arc);
        }
        catch (Exception ex)
        {
            bool toError = _errorRequested;
            _errorRequested = false;
            if (toError)
            {
                EndSession();
                _state = VfioMigrationState.Error;
            }
            if (ex is VfioException)
                throw;
            throw new VfioException(Errno.EIO, $"arc {arc}", $"the device failed: {ex.Message}", ex);
        }

        switch (effect)
        {
            case DataSessionEffect.OpensSaving:
                EndSession();
                return _session = new DataSession(this, DataSessionKind.Saving, _nextSessionId++);
            case DataSessionEffect.OpensResuming:
                EndSession();
                return _session = new DataSession(this, DataSessionKind.Resuming, _nextSessionId++);
            case DataSessionEffect.EndsSession:
                EndSession();
                return null;
            default:
                return null;
        }
    }

    private void EndSession()
    {
        var s = _session;
        if (s is null)
            return;
        s.Terminate();
        _session = null;
        OnSessionEnded(s.Kind);
    }

    private void Lock()
    {
        _stateLock.Wait();
        Volatile.Write(ref _lockOwner, Environment.CurrentManagedThreadId);
    }

    // Releases the state lock, first applying any reset deferred while it was held (spec §3.4).
    private void Unlock()
    {
        while (true)
        {
            lock (_resetLock)
            {
                if (!_deferredReset)
                {
                    Volatile.Write(ref _lockOwner, 0);
                    _stateLock.Release();
                    return;
                }
                _deferredReset = false;
            }
            try
            {
                ApplyReset();
            }
            catch
            {
                // A device hook that throws during a reset must not leave the state lock held for ever.
                lock (_resetLock)
                {
                    Volatile.Write(ref _lockOwner, 0);
                    _stateLock.Release();
                }
                throw;
            }
        }
    }

    private void ApplyReset()
    {
        EndSession();
        _state = VfioMigrationState.Running;
        OnReset();
    }

    // Takes the device lock for a read of a saving session; the caller unlocks. EBADF/ENODEV as the data fd gives.
    private void EnterSavingRead(DataSession session)
    {
        const string op = "read migration data";
        if (session.Kind != DataSessionKind.Saving)
            VfioException.Throw(Errno.EBADF, op, "the stream is a resuming stream (write only)");
        Lock();
        if (!session.IsActive && (_faults & EngineFaults.StaleSessionsStayUsable) == 0)
        {
            Unlock();
            VfioException.Throw(Errno.ENODEV, op, $"stream {session.Id} was terminated; a new session needs a new stream");
        }
    }

    internal int ReadSession(DataSession session, Span<byte> destination)
    {
        const string op = "read migration data";
        EnterSavingRead(session);
        try
        {
            if (destination.IsEmpty)
                return 0;
            int n = ReadSavingData(destination, _state);
            if (n == 0 && MigrationStateMachine.IsPreCopy(_state) && (_faults & EngineFaults.PreCopyEndReturnsZero) == 0)
                VfioException.Throw(Errno.ENOMSG, op, "no pre-copy data for now (temporary end of stream)");
            if (n == 0 && _state == VfioMigrationState.StopCopy && (_faults & EngineFaults.StopCopyEndIsEnomsg) != 0)
                VfioException.Throw(Errno.ENOMSG, op, "no data for now");
            return n;
        }
        finally
        {
            Unlock();
        }
    }

    internal ReadOnlyMemory<byte>? TakeSession(DataSession session, int maxLength)
    {
        EnterSavingRead(session);
        try
        {
            if (_state != VfioMigrationState.StopCopy || maxLength <= 0 || (_faults & EngineFaults.StopCopyEndIsEnomsg) != 0)
                return null;
            // Typed null: a bare null would convert through byte[] to an empty memory, which means "end of stream".
            return TakeStopCopyData(maxLength) is { } data && data.Length <= maxLength ? data : (ReadOnlyMemory<byte>?)null;
        }
        finally
        {
            Unlock();
        }
    }

    internal void WriteSession(DataSession session, ReadOnlySpan<byte> source)
    {
        const string op = "write migration data";
        if (session.Kind != DataSessionKind.Resuming)
            VfioException.Throw(Errno.EBADF, op, "the stream is a saving stream (read only)");
        Lock();
        try
        {
            if (!session.IsActive && (_faults & EngineFaults.StaleSessionsStayUsable) == 0)
                VfioException.Throw(Errno.ENODEV, op, $"stream {session.Id} was terminated; a new session needs a new stream");
            if (!source.IsEmpty)
                WriteResumingData(source);
        }
        finally
        {
            Unlock();
        }
    }

    internal PrecopyEstimate GetPrecopyInfo(DataSession session)
    {
        const string op = "VFIO_MIG_GET_PRECOPY_INFO";
        if (session.Kind != DataSessionKind.Saving)
            VfioException.Throw(Errno.ENOTTY, op, "a resuming stream has no ioctls");
        Lock();
        try
        {
            // The kernel checks the state before the file (spec §4.4).
            if (!MigrationStateMachine.IsPreCopy(_state) && (_faults & EngineFaults.PrecopyInfoInAnyState) == 0)
                VfioException.Throw(Errno.EINVAL, op, $"the device is in {MigrationStateMachine.Name(_state)}, not PRE_COPY or PRE_COPY_P2P");
            if (!session.IsActive && (_faults & EngineFaults.StaleSessionsStayUsable) == 0)
                VfioException.Throw(Errno.ENODEV, op, $"stream {session.Id} was terminated");
            var estimate = GetPrecopyEstimate();
            if ((_faults & EngineFaults.InitialBytesGrow) != 0)
                estimate = estimate with { InitialBytes = estimate.InitialBytes + (2 * (ulong)session.BytesTransferred) };
            return _precopyInfoV2 ? estimate : estimate with { Reinit = false };
        }
        finally
        {
            Unlock();
        }
    }
}
