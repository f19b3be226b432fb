using System.Buffers.Binary;
using Vfio.Device;
using Vfio.Migration;
using Vfio.Uapi;
using Vfio.User.Protocol;

namespace Vfio.User.Client;

/// <summary>
/// A remote vfio-user device as <see cref="IVfioMigrationDevice"/>: DEVICE_FEATURE for the FSM and DMA logging,
/// MIG_DATA_READ/WRITE for the data stream (spec §7.1). No PRECOPY_INFO exists over vfio-user (ENOTTY).
/// </summary>
public sealed partial class VfioUserMigrationDevice : IVfioMigrationDevice, Conformance.ITransportConventions, Conformance.IRawMessageProbe
{
    private readonly bool _ownsClient;
    private VfioMigrationFlags? _caps;
    private volatile uint _lastState = (uint)VfioMigrationState.Running;
    private volatile bool _stateKnown; // _lastState is what our last successful GET, SET or reset left the device in
    private RemoteStream? _stream;
    private bool _dataSizeSupported = true;

    /// <summary>Over vfio-user, DMA_LOGGING_START with 0 ranges means "log everything" (libvfio-user's convention).</summary>
    public bool DmaLoggingZeroRangesMeansAll => true;

    /// <summary>Wraps a connected client.</summary>
    public VfioUserMigrationDevice(VfioUserClient client, bool ownsClient = true)
    {
        Client = client ?? throw new ArgumentNullException(nameof(client));
        _ownsClient = ownsClient;
    }

    /// <summary>Connects to a server and wraps the connection.</summary>
    public static async Task<VfioUserMigrationDevice> ConnectAsync(string path, VfioUserClientOptions? options = null, CancellationToken cancellationToken = default)
        => new(await VfioUserClient.ConnectAsync(path, options, cancellationToken).ConfigureAwait(false));

    /// <summary>The connection.</summary>
    public VfioUserClient Client { get; }

    /// <inheritdoc/>
    public string Name => Client.Name;

    internal VfioMigrationState LastState => (VfioMigrationState)_lastState;

    /// <inheritdoc/>
    public async ValueTask<VfioMigrationFlags> GetCapabilitiesAsync(CancellationToken cancellationToken = default)
    {
        if (_caps is { } c)
            return c;
        var reply = await Client.FeatureAsync(VfioFeatureCall.GetMigration(), cancellationToken).ConfigureAwait(false);
        if (reply.Length < 16)
            VfioException.Throw(Errno.EPROTO, "GET MIGRATION", $"reply of {reply.Length} bytes, 16 needed");
        var caps = (VfioMigrationFlags)BinaryPrimitives.ReadUInt64LittleEndian(reply.AsSpan(8));
        _caps = caps;
        return caps;
    }

    /// <inheritdoc/>
    public async ValueTask<VfioMigrationState> GetStateAsync(CancellationToken cancellationToken = default)
    {
        var reply = await Client.FeatureAsync(VfioFeatureCall.GetState(), cancellationToken).ConfigureAwait(false);
        if (reply.Length < 12)
            VfioException.Throw(Errno.EPROTO, "GET MIG_DEVICE_STATE", $"reply of {reply.Length} bytes, 12 needed");
        var state = (VfioMigrationState)BinaryPrimitives.ReadUInt32LittleEndian(reply.AsSpan(8));
        _lastState = (uint)state;
        _stateKnown = true;
        return state;
    }

    /// <inheritdoc/>
    public async ValueTask<IMigrationDataStream?> SetStateAsync(VfioMigrationState target, CancellationToken cancellationToken = default)
    {
        if (_stream is { Kind: DataSessionKind.Saving } saving && MigrationStateMachine.IsPreCopy(LastState))
            await saving.DrainPreCopyAsync(Client, cancellationToken).ConfigureAwait(false);
        if (_stream is { Kind: DataSessionKind.Resuming } resuming)
            await resuming.CompleteWritesAsync(Client, cancellationToken).ConfigureAwait(false);
        var caps = await GetCapabilitiesAsync(cancellationToken).ConfigureAwait(false);
        // The state is read only when this object does not know it: the device changes state only on a SET or a
        // reset, and a SET that failed (or was cancelled) leaves it unknown until the next GET. One round trip less
        // inside the switchover.
        var from = _stateKnown ? LastState : await GetStateAsync(cancellationToken).ConfigureAwait(false);
        _stateKnown = false;
        try
        {
            await Client.FeatureAsync(VfioFeatureCall.SetState(target), cancellationToken).ConfigureAwait(false);
        }
        catch (VfioException)
        {
            try
            {
                await GetStateAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (VfioException)
            {
            }
            throw;
        }
        _lastState = (uint)target;
        _stateKnown = true;
        var path = MigrationStateMachine.GetPath(from, target, caps);
        var effect = path.Arcs.Select(MigrationStateMachine.GetSessionEffect).LastOrDefault();
        switch (effect)
        {
            case DataSessionEffect.OpensSaving:
                _stream?.Terminate();
                return _stream = new RemoteStream(this, DataSessionKind.Saving);
            case DataSessionEffect.OpensResuming:
                _stream?.Terminate();
                return _stream = new RemoteStream(this, DataSessionKind.Resuming);
            case DataSessionEffect.EndsSession:
                _stream?.Terminate();
                _stream = null;
                return null;
            default:
                return null;
        }
    }

    /// <inheritdoc/>
    public async ValueTask<ulong> GetStopCopySizeAsync(CancellationToken cancellationToken = default)
    {
        var reply = await Client.FeatureAsync(VfioFeatureCall.GetMigDataSize(), cancellationToken).ConfigureAwait(false);
        if (reply.Length < 16)
            VfioException.Throw(Errno.EPROTO, "GET MIG_DATA_SIZE", $"reply of {reply.Length} bytes, 16 needed");
        ulong size = BinaryPrimitives.ReadUInt64LittleEndian(reply.AsSpan(8));
        if (_stream is { Kind: DataSessionKind.Saving } saving && MigrationStateMachine.IsPreCopy(LastState))
            saving.NoteUnread(size);
        return size;
    }

    /// <inheritdoc/>
    /// <remarks>
    /// What the server reports: its VERSION (minor and capabilities), its regions (REGION_INFO), and for a PCI device
    /// the ids in config space. The vfio-user protocol carries no device-defined format, so <c>Format</c> is null.
    /// </remarks>
    public async ValueTask<Compat.MigrationProfile> GetProfileAsync(CancellationToken cancellationToken = default)
    {
        var caps = Client.ServerCapabilities;
        string server = string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"vfio-user 0.{Client.ServerMinor}, max_data_xfer_size {Client.ServerMaxDataTransferBytes}, max_msg_fds {Client.ServerMaxMessageFds}{(caps.Migration?.PageSize is { } pg ? $", migration pgsize {pg}" : "")}");
        var identity = new Compat.DeviceIdentity { Transport = "vfio-user", Server = server };
        var regions = new List<Compat.RegionProfile>();
        try
        {
            var info = await Client.GetDeviceInfoAsync(cancellationToken).ConfigureAwait(false);
            for (uint i = 0; i < Math.Min(info.NumRegions, ProfileRegionLimit); i++)
            {
                var region = await Client.GetRegionInfoAsync(i, cancellationToken).ConfigureAwait(false);
                regions.Add(new Compat.RegionProfile(i, region.Size, region.Flags));
            }
            if ((info.Flags & DeviceInfoPayload.FlagPci) != 0 && regions.Count > PciConfigRegion && regions[(int)PciConfigRegion].Size >= 0x30)
            {
                var config = new byte[0x30];
                await Client.RegionReadAsync(PciConfigRegion, 0, config, cancellationToken).ConfigureAwait(false);
                identity = Compat.MigrationProfiles.WithPciIds(identity, config);
            }
        }
        catch (VfioException ex) when (ex.Errno == Errno.EINVAL)
        {
            // libvfio-user answers only REGION_READ/WRITE and DEVICE_FEATURE while the device is stopped (spec §7.4):
            // the profile then has no regions and no PCI ids, which the check notes instead of comparing.
            regions.Clear();
        }
        return await Compat.MigrationProfiles.ReadAsync(this, identity, regions, null, cancellationToken).ConfigureAwait(false);
    }

    // VFIO_PCI_CONFIG_REGION_INDEX; and a bound on the regions a server may claim to have.
    private const uint PciConfigRegion = 7;
    private const uint ProfileRegionLimit = 64;

    /// <inheritdoc/>
    public async ValueTask ResetAsync(CancellationToken cancellationToken = default)
    {
        // The kernel's reset means RUNNING, but libvfio-user keeps the migration state across a reset (spec §6.10):
        // the next SET reads the state first.
        _stateKnown = false;
        await Client.ResetAsync(cancellationToken).ConfigureAwait(false);
        _stream?.Terminate();
        _stream = null;
        _lastState = (uint)VfioMigrationState.Running;
    }

    /// <inheritdoc/>
    public async ValueTask<ulong> StartDmaLoggingAsync(ulong pageSize, IReadOnlyList<VfioDmaLoggingRange> ranges, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(ranges);
        if (ranges.Count > ProtocolLimits.MaxDmaLoggingRanges)
            VfioException.Throw(Errno.E2BIG, "DMA_LOGGING_START", $"{ranges.Count} ranges exceed {ProtocolLimits.MaxDmaLoggingRanges}");
        return await SendDmaLoggingStartAsync(pageSize, ranges, cancellationToken).ConfigureAwait(false);
    }

    private async ValueTask<ulong> SendDmaLoggingStartAsync(ulong pageSize, IReadOnlyList<VfioDmaLoggingRange> ranges, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(ranges);
        // vfio-user layout: {argsz, flags, u64 page_size, u32 num_ranges, u32 reserved, ranges inline}.
        var request = VfioFeatureCall.Create(VfioDeviceFeatureId.DmaLoggingStart, VfioDeviceFeatureFlags.Set, 16 + (ranges.Count * VfioDmaLoggingRange.Size));
        BinaryPrimitives.WriteUInt64LittleEndian(request.AsSpan(8), pageSize);
        BinaryPrimitives.WriteUInt32LittleEndian(request.AsSpan(16), (uint)ranges.Count);
        for (int i = 0; i < ranges.Count; i++)
            ranges[i].Encode(request.AsSpan(24 + (i * VfioDmaLoggingRange.Size)));
        var reply = await Client.FeatureAsync(request, cancellationToken).ConfigureAwait(false);
        return reply.Length >= 16 ? BinaryPrimitives.ReadUInt64LittleEndian(reply.AsSpan(8)) : pageSize;
    }

    /// <inheritdoc/>
    public async ValueTask StopDmaLoggingAsync(CancellationToken cancellationToken = default)
    {
        var request = VfioFeatureCall.Create(VfioDeviceFeatureId.DmaLoggingStop, VfioDeviceFeatureFlags.Set, 16);
        await Client.FeatureAsync(request, cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc/>
    public async ValueTask ReportDmaLoggingAsync(ulong iova, ulong length, ulong pageSize, Memory<ulong> bitmap, CancellationToken cancellationToken = default)
    {
        const string op = "DMA_LOGGING_REPORT";
        if (pageSize == 0 || (pageSize & (pageSize - 1)) != 0)
            VfioException.Throw(Errno.EINVAL, op, $"page size 0x{pageSize:x} is not a power of two");
        ulong need = VfioDmaLoggingReport.BitmapWords(length, pageSize);
        if ((ulong)bitmap.Length < need)
            VfioException.Throw(Errno.EFAULT, op, $"bitmap holds {bitmap.Length} words, {need} needed");
        // Report in windows whose bitmap fits comfortably in one reply (64-page aligned, so words line up).
        ulong maxWords = (ulong)(Client.ReadChunk / 2 / 8);
        ulong windowPages = maxWords * 64;
        ulong pages = length == 0 ? 0 : ((length - 1) / pageSize) + 1;
        for (ulong firstPage = 0; firstPage < pages; firstPage += windowPages)
        {
            ulong windowIova = iova + (firstPage * pageSize);
            ulong windowLength = Math.Min(windowPages * pageSize, length - (firstPage * pageSize));
            ulong words = VfioDmaLoggingReport.BitmapWords(windowLength, pageSize);
            var reply = await Client.FeatureAsync(ReportRequest(windowIova, windowLength, pageSize, words), cancellationToken).ConfigureAwait(false);
            if ((ulong)reply.Length < 32 + (words * 8))
                VfioException.Throw(Errno.EPROTO, op, $"reply of {reply.Length} bytes, {32 + (words * 8)} needed");
            int wordOffset = (int)(firstPage / 64);
            for (int i = 0; i < (int)words; i++)
                bitmap.Span[wordOffset + i] |= BinaryPrimitives.ReadUInt64LittleEndian(reply.AsSpan(32 + (i * 8)));
        }
    }

    // DMA_LOGGING_REPORT GET: {iova, length, page_size}; argsz leaves room for the reply's bitmap of that many words.
    private static byte[] ReportRequest(ulong iova, ulong length, ulong pageSize, ulong words)
    {
        var request = VfioFeatureCall.Create(VfioDeviceFeatureId.DmaLoggingReport, VfioDeviceFeatureFlags.Get, 24);
        new VfioDeviceFeature((uint)(8 + 24 + (words * 8)), (uint)VfioDeviceFeatureId.DmaLoggingReport | (uint)VfioDeviceFeatureFlags.Get).Encode(request);
        BinaryPrimitives.WriteUInt64LittleEndian(request.AsSpan(8), iova);
        BinaryPrimitives.WriteUInt64LittleEndian(request.AsSpan(16), length);
        BinaryPrimitives.WriteUInt64LittleEndian(request.AsSpan(24), pageSize);
        return request;
    }

    /// <inheritdoc/>
    public async ValueTask DisposeAsync()
    {
        _stream?.Terminate();
        if (_ownsClient)
            await Client.DisposeAsync().ConfigureAwait(false);
    }

    /// <summary>The data stream over MIG_DATA_READ/WRITE; STOP_COPY reads are pipelined.</summary>
    private sealed class RemoteStream(VfioUserMigrationDevice device, DataSessionKind kind) : IMigrationDataStream, IDataChunkSource, IDataChunkSink
    {
        private readonly Queue<(Task<Transport.VfioUserMessage> Reply, MigDataTarget Target)> _inflight = new();
        private readonly Queue<Task<Transport.VfioUserMessage>> _writes = new();
        private byte[] _leftover = [];
        private int _leftoverStart;
        private int _leftoverCount;
        private bool _eof;
        private bool _lastShort;
        private bool _terminated;
        private long? _unrequested; // pre-copy: bytes of the device's last estimate not asked for yet (null: no estimate)
        private bool _stopCopyFull; // a STOP_COPY read came back full: the rest is worth pipelining
        private Transport.SplicedChunk? _chunk; // a chunk read's result (ReadChunkAsync)

        public DataSessionKind Kind => kind;

        public void Terminate()
        {
            _terminated = true;
            AbandonInflight();
            AbandonWrites();
        }

        // Replies still in flight go to overflow buffers: no reader will hand them a buffer. (Through the client's
        // thread-safe table: a dispose may race with a read that is still queueing requests.)
        private void AbandonInflight() => device.Client.AbandonDataTargets();

        public ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
            => ReadCoreAsync(buffer, 0, cancellationToken);

        // A chunk: one reply's data held in a kernel pipe, spliced out of the socket (the engine relays it to another
        // connection the same way). Null whenever bytes wait in _leftover (ReadAsync returns those first) or this
        // connection cannot splice; the data of a reply that could not go to a pipe lands in _leftover, and null
        // sends the caller to ReadAsync for it.
        public async ValueTask<DataChunk?> ReadChunkAsync(int maxBytes, CancellationToken cancellationToken = default)
        {
            if (kind != DataSessionKind.Saving || _terminated || _leftoverCount > 0 || maxBytes <= 0 || !device.Client.SplicesData)
                return null;
            int got = await ReadCoreAsync(Memory<byte>.Empty, Math.Min(maxBytes, device.ReadRequestSize), cancellationToken).ConfigureAwait(false);
            var chunk = _chunk;
            _chunk = null;
            if (chunk is not null)
                return chunk;
            return got == 0 && _leftoverCount == 0 ? DataChunk.Empty : null;
        }

        // holdMax > 0: the data goes to a kernel pipe (_chunk), up to holdMax bytes per request, and buffer is empty.
        private async ValueTask<int> ReadCoreAsync(Memory<byte> buffer, int holdMax, CancellationToken cancellationToken)
        {
            const string op = "read migration data";
            if (kind != DataSessionKind.Saving)
                VfioException.Throw(Errno.EBADF, op, "the stream is a resuming stream (write only)");
            if (_terminated)
                VfioException.Throw(Errno.ENODEV, op, "the stream was terminated by a later state change");
            bool hold = holdMax > 0;
            if (buffer.IsEmpty && !hold)
                return 0;
            if (_leftoverCount > 0)
            {
                int n = Math.Min(buffer.Length, _leftoverCount);
                _leftover.AsSpan(_leftoverStart, n).CopyTo(buffer.Span);
                _leftoverStart += n;
                _leftoverCount -= n;
                return n;
            }
            if (_eof)
                return 0;
            var client = device.Client;
            bool stopCopy = device.LastState == VfioMigrationState.StopCopy;
            int chunk = hold ? holdMax : device.ReadRequestSize;
            // STOP_COPY, and PRE_COPY while the device fills whole reads: requests pipelined. In PRE_COPY only up to
            // the device's last estimate, and once a read came back short ("no more for now") one request at a time:
            // a round then ends with no request in flight, whose data would otherwise be missing from the pending
            // figure and move inside the downtime. In STOP_COPY the first read goes alone, pipelining once one came
            // back full: after pre-copy the stop-copy is often a few bytes, and three more requests would cost three
            // empty replies inside the downtime.
            if (stopCopy ? _stopCopyFull : !_lastShort && _unrequested is null or > 0)
            {
                while (_inflight.Count < client.Options.PipelineDepth && (stopCopy || _unrequested is null or > 0))
                    await SendReadAsync(client, chunk, cancellationToken).ConfigureAwait(false);
            }
            if (_inflight.Count == 0)
                await SendReadAsync(client, stopCopy ? FirstStopCopyRead(chunk) : hold ? chunk : Math.Min(buffer.Length, chunk), cancellationToken).ConfigureAwait(false);
            var (pending, target) = _inflight.Dequeue();
            int requested = target.Requested;
            int got;
            try
            {
                got = await CompleteIntoAsync(client, pending, target, buffer, hold, cancellationToken).ConfigureAwait(false);
            }
            catch (VfioException ex) when (ex.Errno == Errno.ENOMSG && !stopCopy)
            {
                // Pre-copy "no data now": collect the reads still in flight; their data, if any, is the stream's next.
                _lastShort = true;
                await DrainPreCopyAsync(client, cancellationToken).ConfigureAwait(false);
                if (_leftoverCount == 0)
                    throw;
                return hold ? 0 : await ReadCoreAsync(buffer, 0, cancellationToken).ConfigureAwait(false);
            }
            _lastShort = got + _leftoverCount < requested;
            _stopCopyFull |= stopCopy && !_lastShort;
            if (_lastShort && !stopCopy && _inflight.Count > 0)
                await DrainPreCopyAsync(client, cancellationToken).ConfigureAwait(false);
            if (_lastShort && stopCopy)
            {
                // STOP_COPY: a short reply is the end of the stream; drain the requests still in flight.
                _eof = true;
                AbandonInflight();
                while (_inflight.Count > 0)
                {
                    var (rest, _) = _inflight.Dequeue();
                    try
                    {
                        (await client.CompleteAsync(VfioUserCommand.MigDataRead, rest, cancellationToken).ConfigureAwait(false)).Dispose();
                    }
                    catch (VfioException)
                    {
                    }
                }
            }
            return got;
        }

        // STOP_COPY reads go one at a time until one comes back full, so this sizes the first: what the device's last
        // estimate left unread plus room for what it dirtied since, rounded up to whole pages, at most a chunk. A short
        // reply is padded to the size asked (spec §6.13); an estimate too small costs one round trip (the reply comes
        // back full, and the rest is pipelined in whole chunks).
        private int FirstStopCopyRead(int chunk)
        {
            if (_unrequested is not { } unread)
                return chunk;
            long ask = unread + (unread / 2) + VfioUserTuning.StopCopyReadSlackBytes;
            return (int)Math.Min(chunk, (ask + 4095) & ~4095L);
        }

        // The device's MIG_DATA_SIZE answer in pre-copy: the saving bytes it holds that no read asked for yet.
        internal void NoteUnread(ulong size) => _unrequested = (long)Math.Min(size, long.MaxValue);

        // Hands buffer to one in-flight read and completes it: the data lands in buffer, what does not fit in _leftover.
        // hold: the data goes to a kernel pipe instead (_chunk), and only what the read loop could not put there to _leftover.
        private async Task<int> CompleteIntoAsync(VfioUserClient client, Task<Transport.VfioUserMessage> pending, MigDataTarget target, Memory<byte> buffer, bool hold, CancellationToken cancellationToken)
        {
            int requested = target.Requested;
            if (hold)
                target.ProvideHold();
            else
                target.Provide(buffer);
            Transport.VfioUserMessage completed;
            try
            {
                completed = await client.CompleteAsync(VfioUserCommand.MigDataRead, pending, cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                await ReleaseBufferAsync(client, target).ConfigureAwait(false);
                throw;
            }
            using var reply = completed;
            int got;
            if (target.Held is { } held)
            {
                _chunk = held;
                got = held.Length;
                if (_leftover.Length < target.OverflowCount)
                    _leftover = new byte[target.OverflowCount];
                _leftoverStart = 0;
                _leftoverCount = target.OverflowCount;
                target.TakeOverflow(Span<byte>.Empty, _leftover);
            }
            else if (target.Placed)
            {
                // The data went straight into buffer; only what did not fit (or came after an abandon) is copied.
                int spill = target.OverflowCount - Math.Min(target.OverflowCount, buffer.Length - target.PlacedCount);
                if (_leftover.Length < spill)
                    _leftover = new byte[spill];
                int more = target.OverflowCount;
                int copied = target.TakeOverflow(buffer.Span[target.PlacedCount..], _leftover);
                got = target.PlacedCount + copied;
                _leftoverStart = 0;
                _leftoverCount = more - copied;
            }
            else if (requested <= buffer.Length)
            {
                got = VfioUserClient.TakeMigData(reply, requested, buffer.Span);
            }
            else
            {
                if (_leftover.Length < requested)
                    _leftover = new byte[requested];
                int all = VfioUserClient.TakeMigData(reply, requested, _leftover);
                got = Math.Min(all, buffer.Length);
                _leftover.AsSpan(0, got).CopyTo(buffer.Span);
                _leftoverStart = got;
                _leftoverCount = all - got;
            }
            return got;
        }

        // Pre-copy: collects the replies of the reads still in flight (answered in order, in PRE_COPY) into _leftover,
        // after what it holds. Called when a read came back short or empty, and before a state change: a read still in
        // flight then would be answered, and read, as if it were a read of the next state (a short one as the end).
        // The replies land in one array of the exact bound (what _leftover holds + every request's size), each in its
        // place: no per-reply arrays and no byte-wise joining (which cost 50 ms for 4 MiB inside the switchover).
        internal async Task DrainPreCopyAsync(VfioUserClient client, CancellationToken cancellationToken)
        {
            if (_inflight.Count == 0)
                return;
            long bound = _leftoverCount;
            foreach (var (_, target) in _inflight)
                bound += target.Requested;
            var joined = new byte[bound]; // ≤ leftover + PipelineDepth × chunk
            _leftover.AsSpan(_leftoverStart, _leftoverCount).CopyTo(joined);
            int filled = _leftoverCount;
            _leftoverCount = 0;
            while (_inflight.Count > 0)
            {
                var (pending, target) = _inflight.Dequeue();
                try
                {
                    // The slice holds the whole reply: nothing goes to _leftover.
                    filled += await CompleteIntoAsync(client, pending, target, joined.AsMemory(filled, target.Requested), hold: false, cancellationToken).ConfigureAwait(false);
                }
                catch (VfioException ex) when (ex.Errno == Errno.ENOMSG)
                {
                }
            }
            _leftover = joined;
            _leftoverStart = 0;
            _leftoverCount = filled;
        }

        // MIG_DATA_WRITEs stay in flight across calls, up to a window: the next frame goes out while the server still
        // loads this one, instead of one round trip per frame. A refused write surfaces on a later write, or at the
        // latest before the next state change (SetStateAsync collects the writes first), so no state change follows
        // data the server did not take; the kernel's write(2) reports it one call earlier.
        public ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
            => WritePiecesAsync(buffer.Length, (client, done, length, token) => client.SendCommandAsync(VfioUserCommand.MigDataWrite, VfioUserClient.MigDataWriteHead(length), null, token, data: buffer.Slice(done, length)), cancellationToken);

        // A chunk held in a kernel pipe goes behind each MIG_DATA_WRITE header by splice: the bytes move from the
        // source connection's socket to this one without entering the process. Only a chunk of our own kind, and only
        // when this connection splices (else the caller copies the bytes out and writes them).
        public async ValueTask<bool> TryWriteChunkAsync(DataChunk chunk, CancellationToken cancellationToken = default)
        {
            if (chunk is not Transport.SplicedChunk spliced || !device.Client.SplicesData)
                return false;
            var pipe = spliced.Pipe;
            await WritePiecesAsync(chunk.Length, (client, _, length, token) => client.SendCommandAsync(VfioUserCommand.MigDataWrite, VfioUserClient.MigDataWriteHead(length), null, token, pipeData: (pipe, length)), cancellationToken).ConfigureAwait(false);
            spliced.Dispose();
            return true;
        }

        // MIG_DATA_WRITEs of at most WriteChunk bytes each, in order; send(client, offset, length, token) sends one.
        private async ValueTask WritePiecesAsync(int total, Func<VfioUserClient, int, int, CancellationToken, Task<Task<Transport.VfioUserMessage>>> send, CancellationToken cancellationToken)
        {
            const string op = "write migration data";
            if (kind != DataSessionKind.Resuming)
                VfioException.Throw(Errno.EBADF, op, "the stream is a saving stream (read only)");
            if (_terminated)
                VfioException.Throw(Errno.ENODEV, op, "the stream was terminated by a later state change");
            var client = device.Client;
            int chunk = client.WriteChunk;
            // Messages in flight: PipelineDepth of them, or as many as make PipelineDepth × 256 KiB when they are small
            // (64 KiB pieces to libvfio-user); ≤ 4 MiB queued at our server.
            int window = (int)Math.Max(client.Options.PipelineDepth, (long)client.Options.PipelineDepth * (256 << 10) / chunk);
            for (int done = 0; done < total; done += chunk)
            {
                while (_writes.Count >= window)
                    await CompleteOldestWriteAsync(client, cancellationToken).ConfigureAwait(false);
                _writes.Enqueue(await send(client, done, Math.Min(chunk, total - done), cancellationToken).ConfigureAwait(false));
            }
        }

        // Waits for every write still in flight; throws the first refusal.
        internal async Task CompleteWritesAsync(VfioUserClient client, CancellationToken cancellationToken)
        {
            while (_writes.Count > 0)
                await CompleteOldestWriteAsync(client, cancellationToken).ConfigureAwait(false);
        }

        private async Task CompleteOldestWriteAsync(VfioUserClient client, CancellationToken cancellationToken)
        {
            try
            {
                (await client.CompleteAsync(VfioUserCommand.MigDataWrite, _writes.Peek(), cancellationToken).ConfigureAwait(false)).Dispose();
                _ = _writes.Dequeue();
            }
            catch (VfioException)
            {
                // The stream is refused from here on (the server rejects what follows a bad write): the writes behind it
                // are let go, so the refusal is reported once.
                AbandonWrites();
                throw;
            }
        }

        // Writes nobody will wait for: their replies are disposed as they come, and their errors observed.
        private void AbandonWrites()
        {
            while (_writes.TryDequeue(out var write))
            {
                _ = write.ContinueWith(static t =>
                {
                    if (t.IsCompletedSuccessfully)
                        t.Result.Dispose();
                    else
                        _ = t.Exception;
                }, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
            }
        }

        // vfio-user has no PRECOPY_INFO (spec §7.1). We emulate it so an engine can plan rounds: initial_bytes is
        // always 0 (vfio-user has no such notion); dirty_bytes is the MIG_DATA_SIZE estimate when the server
        // supports feature 9 (ours does; libvfio-user answers EINVAL), else one read chunk while the last read
        // came back full and 0 once a read came back short ("no more for now").
        public async ValueTask<PrecopyEstimate> GetPrecopyInfoAsync(CancellationToken cancellationToken = default)
        {
            const string op = "VFIO_MIG_GET_PRECOPY_INFO (emulated)";
            if (kind != DataSessionKind.Saving)
                VfioException.Throw(Errno.ENOTTY, op, "a resuming stream has no ioctls");
            if (!MigrationStateMachine.IsPreCopy(device.LastState))
                VfioException.Throw(Errno.EINVAL, op, $"the device is in {MigrationStateMachine.Name(device.LastState)}, not PRE_COPY");
            if (_terminated)
                VfioException.Throw(Errno.ENODEV, op, "the stream was terminated");
            // Reads still in flight hold data the device no longer counts: collect it first, so the estimate has it.
            await DrainPreCopyAsync(device.Client, cancellationToken).ConfigureAwait(false);
            if (device._dataSizeSupported)
            {
                try
                {
                    ulong size = await device.GetStopCopySizeAsync(cancellationToken).ConfigureAwait(false);
                    if (size > 0)
                        _lastShort = false;
                    return new PrecopyEstimate(0, size + (ulong)_leftoverCount);
                }
                catch (VfioException ex) when (ex.Errno is Errno.EINVAL or Errno.ENOTTY)
                {
                    device._dataSizeSupported = false;
                }
            }
            return new PrecopyEstimate(0, (ulong)_leftoverCount + (_lastShort ? 0UL : (ulong)device.Client.ReadChunk));
        }

        public ValueTask DisposeAsync()
        {
            AbandonInflight();
            return ValueTask.CompletedTask;
        }

        // A cancelled read returns its buffer to the caller, who may reuse it at once: the read loop must have
        // stopped writing into it. It finishes within one reply; a server that stalls mid-reply that long has
        // broken the connection, which is then cut so the write ends.
        private static async Task ReleaseBufferAsync(VfioUserClient client, MigDataTarget target)
        {
            var writing = target.RevokeAsync();
            if (await Task.WhenAny(writing, Task.Delay(TimeSpan.FromSeconds(10))).ConfigureAwait(false) != writing)
            {
                client.Sever();
                await writing.ConfigureAwait(false);
            }
        }

        private async Task SendReadAsync(VfioUserClient client, int size, CancellationToken cancellationToken)
        {
            if (_unrequested is { } unrequested)
                _unrequested = Math.Max(0, unrequested - size);
            var target = new MigDataTarget(size);
            _inflight.Enqueue((await client.SendCommandAsync(VfioUserCommand.MigDataRead, VfioUserClient.MigDataReadRequest(size), null, cancellationToken, target).ConfigureAwait(false), target));
        }
    }
}
