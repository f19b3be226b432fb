using System.Buffers.Binary;
using Vfio.Device;
using Vfio.Migration;
using Vfio.Uapi;
using Vfio.User.Server;

namespace Vfio.Sample;

/// <summary>
/// The device of libvfio-user's <c>samples/server</c> in its power-of-two variant (spec §1 item 10, §7.5, §12), so
/// that libvfio-user's <c>samples/client</c> can drive and migrate <c>vfio-mig serve --device libvfio-user-sample</c>
/// and the sample server can be the other end of a migration.
/// </summary>
/// <remarks>
/// <para>BAR0 is an 8-byte time_t t. Writing it schedules an INTx at t while the device runs (RUNNING, PRE_COPY);
/// reading it returns now − t, as the sample does. When the INTx fires the device writes 1 to the INTx eventfd, then
/// writes the second-lowest mapped page directly through its mmap, which DMA logging reports dirty, then sends 4
/// DMA_WRITE and 4 DMA_READ messages of 1024 bytes into the lowest mapped page and checks they read back (spec §12
/// steps 12–14, 25). An INTx that falls due while no INTx eventfd is set waits until one is.</para>
/// <para>BAR1 is 0x4000 bytes of guest-visible memory. The stream is the sample's: PRE_COPY = BAR1, STOP_COPY =
/// BAR1 ‖ BAR0 (little-endian), the byte counter restarting on entering PRE_COPY, STOP_COPY and RESUMING; the
/// destination takes exactly BAR1 + 8 bytes. Unlike the sample, a destination whose migrated time has passed fires
/// at once instead of failing SET RUNNING. MIG_DATA_SIZE is refused with EINVAL, as libvfio-user does.</para>
/// </remarks>
public sealed class LibVfioUserSampleDevice : MigrationDevice
{
    /// <summary>BAR0 size: one time_t.</summary>
    public const int Bar0Size = 8;

    /// <summary>BAR1 size (0x4000, the power-of-two variant of the sample).</summary>
    public const int Bar1Size = 0x4000;

    /// <summary>Bytes of the STOP_COPY stream, and exactly what a destination takes: BAR1 ‖ BAR0.</summary>
    public const int StreamSize = Bar1Size + Bar0Size;

    /// <summary>Bytes per DMA_READ/DMA_WRITE message (samples/client's max_data_xfer_size).</summary>
    public const int DmaChunk = 1024;

    /// <summary>DMA messages of each kind per interrupt.</summary>
    public const int DmaMessages = 4;

    private static readonly TimeSpan IrqRetry = TimeSpan.FromMilliseconds(200);
    private readonly Lock _lock = new();
    private readonly byte[] _bar1 = new byte[Bar1Size];
    private readonly byte[] _incoming = new byte[StreamSize];
    private readonly TimeProvider _time;
    private readonly ITimer _timer;
    private readonly HashSet<ulong> _dirtyPages = [];
    private long _bar0;
    private long? _irqDue;
    private bool _running = true;
    private int _transferred;
    private VfioUserConnection? _connection;
    private ulong _loggingPageSize;
    private int _interrupts;
    private int _dmaRounds;
    private string? _lastDmaError;

    /// <summary>Creates the device in RUNNING with BAR0 = 0 and BAR1 zeroed; caps STOP_COPY | PRE_COPY (0x5).</summary>
    /// <param name="timeProvider">The clock BAR0 and the INTx timer use (default: the system clock).</param>
    public LibVfioUserSampleDevice(TimeProvider? timeProvider = null)
        : base(VfioMigrationFlags.StopCopy | VfioMigrationFlags.PreCopy)
    {
        _time = timeProvider ?? TimeProvider.System;
        _timer = _time.CreateTimer(_ => Fire(), null, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
    }

    /// <summary>The sample's stream: BAR1 ‖ BAR0, exactly <see cref="StreamSize"/> bytes on both sides.</summary>
    public override Compat.DeviceFormat Format => new()
    {
        Name = "libvfio-user-sample",
        Version = 1,
        MinVersion = 1,
        Parameters = new Dictionary<string, ulong>
        {
            ["bar1_bytes"] = Bar1Size,
            ["stream_bytes"] = StreamSize,
        },
    };

    /// <summary>The time_t last written to BAR0 (or migrated in).</summary>
    public long Bar0
    {
        get
        {
            lock (_lock)
                return _bar0;
        }
    }

    /// <summary>INTx interrupts delivered so far.</summary>
    public int InterruptCount => Volatile.Read(ref _interrupts);

    /// <summary>Interrupts whose DMA (4 writes, 4 reads, one direct write) completed and read back correctly.</summary>
    public int DmaRoundCount => Volatile.Read(ref _dmaRounds);

    /// <summary>Why the last DMA round failed, or null.</summary>
    public string? LastDmaError => Volatile.Read(ref _lastDmaError);

    /// <inheritdoc/>
    public override bool SupportsDmaLogging => true;

    /// <summary>A copy of BAR1.</summary>
    public byte[] CopyBar1()
    {
        lock (_lock)
            return [.. _bar1];
    }

    /// <summary>REGION_READ of BAR0: now − t, 8 bytes at offset 0 only (as the sample).</summary>
    public void ReadBar0(ulong offset, Span<byte> destination)
    {
        CheckBar0(offset, destination.Length, "REGION_READ BAR0");
        lock (_lock)
            BinaryPrimitives.WriteInt64LittleEndian(destination, _time.GetUtcNow().ToUnixTimeSeconds() - _bar0);
    }

    /// <summary>REGION_WRITE of BAR0: t := the value; the INTx is due at t.</summary>
    public void WriteBar0(ulong offset, ReadOnlySpan<byte> source)
    {
        CheckBar0(offset, source.Length, "REGION_WRITE BAR0");
        lock (_lock)
        {
            _bar0 = BinaryPrimitives.ReadInt64LittleEndian(source);
            _irqDue = _bar0;
            ScheduleLocked();
        }
    }

    /// <summary>REGION_READ of BAR1.</summary>
    public void ReadBar1(ulong offset, Span<byte> destination)
    {
        lock (_lock)
            _bar1.AsSpan((int)offset, destination.Length).CopyTo(destination);
    }

    /// <summary>REGION_WRITE of BAR1.</summary>
    public void WriteBar1(ulong offset, ReadOnlySpan<byte> source)
    {
        lock (_lock)
            source.CopyTo(_bar1.AsSpan((int)offset));
    }

    /// <summary>A client connected: interrupts and DMA go through it.</summary>
    public void Attach(VfioUserConnection connection)
    {
        lock (_lock)
        {
            _connection = connection;
            ScheduleLocked();
        }
    }

    /// <summary>A client left.</summary>
    public void Detach(VfioUserConnection connection)
    {
        lock (_lock)
        {
            if (ReferenceEquals(_connection, connection))
                _connection = null;
        }
    }

    private static void CheckBar0(ulong offset, int count, string op)
    {
        if (offset != 0 || count != Bar0Size)
            VfioException.Throw(Errno.EINVAL, op, $"BAR0 is accessed as one 8-byte time_t at offset 0 (got 0x{offset:x}+{count})");
    }

    // Must hold _lock. The timer runs while the device runs and an INTx is due.
    private void ScheduleLocked()
    {
        if (!_running || _irqDue is not { } due)
        {
            _timer.Change(Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
            return;
        }
        long wait = DueMilliseconds(due) - _time.GetUtcNow().ToUnixTimeMilliseconds();
        _timer.Change(TimeSpan.FromMilliseconds(Math.Clamp(wait, 0, int.MaxValue - 1)), Timeout.InfiniteTimeSpan);
    }

    // A time_t in Unix milliseconds, saturated (a guest may write any 64-bit value).
    private static long DueMilliseconds(long time) => Math.Clamp(time, long.MinValue / 1000, long.MaxValue / 1000) * 1000;

    private void SetRunning(bool running)
    {
        lock (_lock)
        {
            _running = running;
            ScheduleLocked();
        }
    }

    private void Fire()
    {
        VfioUserConnection connection;
        lock (_lock)
        {
            if (!_running || _irqDue is not { } due || _connection is null)
                return; // stopped, or waiting for a client (Attach schedules again)
            if (DueMilliseconds(due) > _time.GetUtcNow().ToUnixTimeMilliseconds())
            {
                ScheduleLocked(); // early or re-armed for later
                return;
            }
            connection = _connection;
            if (!connection.TriggerIrq(0, 0))
            {
                _timer.Change(IrqRetry, Timeout.InfiniteTimeSpan); // no INTx eventfd yet
                return;
            }
            _irqDue = null;
        }
        Interlocked.Increment(ref _interrupts);
        _ = DoDmaAsync(connection);
    }

    // samples/server's do_dma_io: a direct write of the second mapped page, 4 message writes + 4 message reads of the first.
    private async Task DoDmaAsync(VfioUserConnection connection)
    {
        try
        {
            var maps = connection.Dma.Snapshot().OrderBy(m => m.Address).ToArray();
            if (maps.Length == 0)
                VfioException.Throw(Errno.EFAULT, "DMA", "the client mapped no DMA memory");
            int length = (int)Math.Min((ulong)(DmaChunk * DmaMessages), maps[0].Size);
            var data = new byte[length];
            Array.Fill(data, (byte)('A' + (InterruptCount % 26)));
            var back = new byte[length];
            // The direct write first: it is silent on the wire, and done before the messages it is complete by the
            // time the client, having served them, asks for its dirty bitmap (step 14).
            if (maps.Length > 1 && maps[1].IsFdBacked)
                await connection.DmaWriteAsync(maps[1].Address, data.AsMemory(0, (int)Math.Min((ulong)length, maps[1].Size)), DmaAccessMode.Auto).ConfigureAwait(false);
            for (int at = 0; at < length; at += DmaChunk)
                await connection.DmaWriteAsync(maps[0].Address + (ulong)at, data.AsMemory(at, Math.Min(DmaChunk, length - at)), DmaAccessMode.Messages).ConfigureAwait(false);
            for (int at = 0; at < length; at += DmaChunk)
                await connection.DmaReadAsync(maps[0].Address + (ulong)at, back.AsMemory(at, Math.Min(DmaChunk, length - at)), DmaAccessMode.Messages).ConfigureAwait(false);
            if (!data.AsSpan().SequenceEqual(back))
                VfioException.Throw(Errno.EIO, "DMA", "what DMA_READ returned differs from what DMA_WRITE wrote");
            Interlocked.Increment(ref _dmaRounds);
        }
        catch (Exception ex) when (ex is VfioException or ObjectDisposedException or InvalidOperationException or IOException or System.Net.Sockets.SocketException)
        {
            Volatile.Write(ref _lastDmaError, ex.Message);
        }
    }

    /// <inheritdoc/>
    protected override void OnRunningToStop() => SetRunning(false);

    /// <inheritdoc/>
    protected override void OnStopToRunning() => SetRunning(true);

    /// <inheritdoc/>
    protected override void OnReset() => SetRunning(true);

    /// <inheritdoc/>
    protected override void OnRunningToPreCopy() => RestartStream();

    /// <inheritdoc/>
    protected override void OnPreCopyToStopCopy()
    {
        SetRunning(false);
        RestartStream();
    }

    /// <inheritdoc/>
    protected override void OnStopToStopCopy() => RestartStream();

    /// <inheritdoc/>
    protected override void OnStopToResuming() => RestartStream();

    /// <inheritdoc/>
    protected override void OnResumingToStop()
    {
        lock (_lock)
        {
            if (_transferred != StreamSize)
                VfioException.Throw(Errno.EINVAL, "arc RESUMING>STOP", $"received {_transferred} of the {StreamSize} bytes (BAR1 ‖ BAR0) the device needs");
            _incoming.AsSpan(0, Bar1Size).CopyTo(_bar1);
            _bar0 = BinaryPrimitives.ReadInt64LittleEndian(_incoming.AsSpan(Bar1Size));
            _irqDue = _bar0 == 0 ? null : _bar0; // SET RUNNING re-arms the migrated timer
        }
    }

    private void RestartStream()
    {
        lock (_lock)
            _transferred = 0;
    }

    /// <inheritdoc/>
    protected override int ReadSavingData(Span<byte> destination, VfioMigrationState state)
    {
        lock (_lock)
        {
            int end = state == VfioMigrationState.StopCopy ? StreamSize : Bar1Size;
            int n = Math.Min(destination.Length, end - Math.Min(_transferred, end));
            for (int i = 0; i < n; i++)
            {
                int at = _transferred + i;
                destination[i] = at < Bar1Size ? _bar1[at] : (byte)(_bar0 >> (8 * (at - Bar1Size)));
            }
            _transferred += n;
            return n;
        }
    }

    /// <inheritdoc/>
    protected override void WriteResumingData(ReadOnlySpan<byte> source)
    {
        lock (_lock)
        {
            if (source.Length > StreamSize - _transferred)
                VfioException.Throw(Errno.EINVAL, "MIG_DATA_WRITE", $"{_transferred} + {source.Length} bytes exceed the {StreamSize} the device takes (BAR1 ‖ BAR0)");
            source.CopyTo(_incoming.AsSpan(_transferred));
            _transferred += source.Length;
        }
    }

    /// <inheritdoc/>
    protected override ulong EstimateStopCopySize()
        => throw new VfioException(Errno.EINVAL, "MIG_DATA_SIZE", "the libvfio-user sample device has no MIG_DATA_SIZE (as libvfio-user)");

    /// <inheritdoc/>
    protected override void OnDmaLoggingStart(ref ulong pageSize, IReadOnlyList<VfioDmaLoggingRange> ranges)
    {
        lock (_lock)
        {
            _dirtyPages.Clear();
            _loggingPageSize = pageSize; // libvfio-user echoes the requested page size and ignores the ranges
        }
    }

    /// <inheritdoc/>
    protected override void OnDmaLoggingStop()
    {
        lock (_lock)
        {
            _dirtyPages.Clear();
            _loggingPageSize = 0;
        }
    }

    /// <inheritdoc/>
    protected override void OnDmaWritten(ulong iova, ulong length)
    {
        lock (_lock)
        {
            if (_loggingPageSize == 0)
                return;
            for (ulong page = iova / _loggingPageSize; page <= (iova + length - 1) / _loggingPageSize; page++)
                _dirtyPages.Add(page);
        }
    }

    /// <inheritdoc/>
    protected override void OnDmaLoggingReadAndClear(ulong iova, ulong length, ulong pageSize, Span<ulong> bitmap)
    {
        lock (_lock)
        {
            ulong logPage = _loggingPageSize;
            if (logPage == 0)
                VfioException.Throw(Errno.EINVAL, "DMA_LOGGING_REPORT", "logging is not started");
            foreach (ulong page in _dirtyPages.ToArray())
            {
                ulong from = Math.Max(page * logPage, iova), to = Math.Min((page + 1) * logPage, iova + length);
                if (from >= to)
                    continue;
                _dirtyPages.Remove(page); // read-and-clear
                for (ulong bit = (from - iova) / pageSize; bit <= (to - 1 - iova) / pageSize; bit++)
                    bitmap[(int)(bit / 64)] |= 1UL << (int)(bit % 64);
            }
        }
    }

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        if (disposing)
            _timer.Dispose();
        base.Dispose(disposing);
    }
}
