using Vfio.Interop;
using Vfio.User.Protocol;

namespace Vfio.User.Server;

/// <summary>
/// One DMA mapping: fd-backed or message mode (DMA_READ/DMA_WRITE to the client). An fd-backed mapping is mmapped
/// only when the client's file cannot shrink under it: a memfd sealed with F_SEAL_SHRINK (checked with
/// fcntl F_GET_SEALS) and at least as large as the mapping. Any other file is accessed with pread/pwrite, so a
/// client that truncates its file later makes the device's DMA fail with EFAULT instead of killing the server
/// with SIGBUS.
/// </summary>
internal sealed class DmaMapping : IDisposable
{
    private readonly Lock _useLock = new();
    private nint _mapBase;
    private nuint _mapLength;
    private bool _closed;

    internal DmaMapping(ulong address, ulong size, ulong offset, uint flags, SafeFdHandle? fd)
    {
        Address = address;
        Size = size;
        Offset = offset;
        Flags = flags;
        Fd = fd;
    }

    /// <summary>IOVA.</summary>
    public ulong Address { get; }

    /// <summary>Length.</summary>
    public ulong Size { get; }

    /// <summary>File offset of the backing fd.</summary>
    public ulong Offset { get; }

    /// <summary>DMA_MAP flags.</summary>
    public uint Flags { get; }

    /// <summary>The backing fd, or null in message mode.</summary>
    public SafeFdHandle? Fd { get; }

    /// <summary>True when DMA to this range goes through the client's fd (an mmap of it, or pread/pwrite).</summary>
    public bool IsFdBacked => Fd is not null;

    /// <summary>True when the fd is mmapped here (a memfd sealed against shrinking); false means pread/pwrite.</summary>
    public bool IsMapped => _mapBase != 0;

    /// <summary>Start of the mapping in our address space (mmapped only, else 0).</summary>
    public nint BaseAddress { get; private set; }

    internal unsafe void Map()
    {
        int seals = Interop.Interop.Fcntl(Fd!, Interop.Interop.F_GET_SEALS, 0);
        if (seals < 0 || (seals & Interop.Interop.F_SEAL_SHRINK) == 0)
            return; // not a memfd, or one that may shrink: pread/pwrite only
        byte* stat = stackalloc byte[Interop.Interop.StatSize];
        Interop.Interop.CheckIo(Interop.Interop.FStat(Fd!.Fd, stat), "fstat DMA region fd");
        long fileSize = *(long*)(stat + Interop.Interop.StatSizeOffset);
        if ((ulong)fileSize < Offset + Size)
            VfioException.Throw(Errno.EINVAL, "DMA_MAP", $"the file is {fileSize} bytes, smaller than the mapping's end 0x{Offset + Size:x}");
        const ulong page = 4096;
        ulong aligned = Offset & ~(page - 1);
        ulong delta = Offset - aligned;
        _mapLength = (nuint)(Size + delta);
        int prot = ((Flags & DmaMapPayload.FlagRead) != 0 ? Interop.Interop.PROT_READ : 0) | ((Flags & DmaMapPayload.FlagWrite) != 0 ? Interop.Interop.PROT_WRITE : 0);
        nint at = Interop.Interop.MMap(0, _mapLength, prot, Interop.Interop.MAP_SHARED, Fd.Fd, (long)aligned);
        if (at == Interop.Interop.MAP_FAILED)
            Interop.Interop.ThrowLastError($"mmap DMA region 0x{Address:x}+0x{Size:x} (fd offset 0x{Offset:x})");
        _mapBase = at;
        BaseAddress = at + (nint)delta;
    }

    /// <summary>
    /// Copies client memory at <paramref name="address"/> out of our mmap or with pread. Holds the mapping for the
    /// copy, so an unmap (the client's DMA_UNMAP, its disconnect) waits for it; after the unmap it is EFAULT. A file
    /// that ends before the range (the client truncated it) is EFAULT.
    /// </summary>
    internal unsafe void CopyOut(ulong address, Span<byte> destination)
    {
        lock (_useLock)
        {
            CheckUsable(address, destination.Length);
            if (_mapBase != 0)
            {
                new ReadOnlySpan<byte>((byte*)MappedAt(address), destination.Length).CopyTo(destination);
                return;
            }
            long at = FileOffset(address);
            int done = 0;
            fixed (byte* p = destination)
            {
                while (done < destination.Length)
                {
                    nint n = Interop.Interop.PRead(Fd!, p + done, (nuint)(destination.Length - done), at + done);
                    if (n < 0 && Interop.Interop.LastErrno == Errno.EINTR)
                        continue;
                    if (n < 0)
                        Interop.Interop.ThrowLastError($"pread DMA region 0x{Address:x}");
                    if (n == 0)
                        VfioException.Throw(Errno.EFAULT, "DMA read", $"the client's file ends before 0x{address + (ulong)done:x} (it was truncated after DMA_MAP)");
                    done += (int)n;
                }
            }
        }
    }

    /// <summary>Copies into client memory at <paramref name="address"/> through our mmap or with pwrite (see <see cref="CopyOut"/>).</summary>
    internal unsafe void CopyIn(ulong address, ReadOnlySpan<byte> source)
    {
        lock (_useLock)
        {
            CheckUsable(address, source.Length);
            if (_mapBase != 0)
            {
                source.CopyTo(new Span<byte>((byte*)MappedAt(address), source.Length));
                return;
            }
            long at = FileOffset(address);
            // Never grow a file the client truncated: the same EFAULT as a read.
            byte* stat = stackalloc byte[Interop.Interop.StatSize];
            Interop.Interop.CheckIo(Interop.Interop.FStat(Fd!.Fd, stat), "fstat DMA region fd");
            if (*(long*)(stat + Interop.Interop.StatSizeOffset) < at + source.Length)
                VfioException.Throw(Errno.EFAULT, "DMA write", $"the client's file ends before 0x{address + (ulong)source.Length:x} (it was truncated after DMA_MAP)");
            int done = 0;
            fixed (byte* p = source)
            {
                while (done < source.Length)
                {
                    nint n = Interop.Interop.PWrite(Fd!, p + done, (nuint)(source.Length - done), at + done);
                    if (n < 0 && Interop.Interop.LastErrno == Errno.EINTR)
                        continue;
                    if (n <= 0)
                        Interop.Interop.ThrowLastError($"pwrite DMA region 0x{Address:x}");
                    done += (int)n;
                }
            }
        }
    }

    // Must hold _useLock.
    private void CheckUsable(ulong address, int length)
    {
        if (_closed || !Contains(address, (ulong)length))
            VfioException.Throw(Errno.EFAULT, "DMA", $"0x{address:x}+{length} is no longer mapped");
    }

    private nint MappedAt(ulong address) => BaseAddress + (nint)(address - Address);

    private long FileOffset(ulong address) => checked((long)(Offset + (address - Address)));

    /// <summary>Whether [addr, addr+len) lies inside this mapping.</summary>
    public bool Contains(ulong address, ulong length) => address >= Address && length <= Size && address - Address <= Size - length;

    /// <inheritdoc/>
    public void Dispose()
    {
        lock (_useLock)
        {
            _closed = true;
            if (_mapBase != 0)
            {
                Interop.Interop.MUnmap(_mapBase, _mapLength);
                _mapBase = 0;
                BaseAddress = 0;
            }
        }
        Fd?.Dispose();
    }
}

/// <summary>The DMA mappings of one connection (spec §6.1, §6.2; libvfio-user's rules).</summary>
internal sealed class DmaMapTable : IDisposable
{
    private readonly List<DmaMapping> _maps = [];
    private readonly Lock _lock = new();

    /// <summary>Number of mappings.</summary>
    public int Count
    {
        get
        {
            lock (_lock)
                return _maps.Count;
        }
    }

    /// <summary>Adds a mapping (takes ownership of <paramref name="fd"/>, also on failure).</summary>
    /// <exception cref="VfioException">EINVAL for bad flags/overlap, ENOSPC for a size above 8 TiB, mmap errors.</exception>
    public void Map(DmaMapPayload request, SafeFdHandle? fd)
    {
        const string op = "DMA_MAP";
        try
        {
            if ((request.Flags & ~DmaMapPayload.KnownFlags) != 0)
                VfioException.Throw(Errno.EINVAL, op, $"unknown flag bits 0x{request.Flags & ~DmaMapPayload.KnownFlags:x}");
            if (fd is null && (request.Flags & (DmaMapPayload.FlagMmap | DmaMapPayload.FlagFileIo)) != 0)
                VfioException.Throw(Errno.EINVAL, op, "MMAP/FILE_IO need a file descriptor");
            if (request.Size == 0)
                VfioException.Throw(Errno.EINVAL, op, "size is 0");
            if (request.Size > ProtocolLimits.MaxDmaMappingBytes)
                VfioException.Throw(Errno.ENOSPC, op, $"size 0x{request.Size:x} exceeds 8 TiB");
            if (request.Address + request.Size < request.Address)
                VfioException.Throw(Errno.EINVAL, op, "addr + size overflows 64 bits");
            if (fd is not null && request.Offset + request.Size < request.Offset)
                VfioException.Throw(Errno.EINVAL, op, "offset + size overflows 64 bits");
            lock (_lock)
            {
                foreach (var m in _maps)
                {
                    if (request.Address < m.Address + m.Size && m.Address < request.Address + request.Size)
                    {
                        if (m.Address == request.Address && m.Size == request.Size && m.Offset == request.Offset && m.Flags == request.Flags && (m.Fd is null) == (fd is null))
                        {
                            fd?.Dispose();
                            return; // exact duplicate: success, no-op (libvfio-user)
                        }
                        VfioException.Throw(Errno.EINVAL, op, $"0x{request.Address:x}+0x{request.Size:x} overlaps the mapping 0x{m.Address:x}+0x{m.Size:x}");
                    }
                }
                if (_maps.Count >= ProtocolLimits.MaxDmaMappings)
                    VfioException.Throw(Errno.EINVAL, op, $"already {_maps.Count} mappings, the limit");
                var mapping = new DmaMapping(request.Address, request.Size, fd is null ? 0 : request.Offset, request.Flags, fd);
                fd = null;
                try
                {
                    if (mapping.IsFdBacked)
                        mapping.Map();
                }
                catch
                {
                    mapping.Dispose();
                    throw;
                }
                _maps.Add(mapping);
            }
        }
        finally
        {
            fd?.Dispose();
        }
    }

    /// <summary>Removes the mapping that exactly matches, or all (flags ALL, addr = size = 0).</summary>
    /// <exception cref="VfioException">ENOENT when no mapping matches; EINVAL for bad flags.</exception>
    public void Unmap(DmaUnmapPayload request)
    {
        const string op = "DMA_UNMAP";
        lock (_lock)
        {
            if (request.Flags == DmaUnmapPayload.FlagAll)
            {
                if (request.Address != 0 || request.Size != 0)
                    VfioException.Throw(Errno.EINVAL, op, "UNMAP_ALL needs addr = size = 0");
                foreach (var m in _maps)
                    m.Dispose();
                _maps.Clear();
                return;
            }
            if (request.Flags != 0)
                VfioException.Throw(Errno.EINVAL, op, $"flags 0x{request.Flags:x} are not supported (0 or ALL; GET_DIRTY_BITMAP is migration v1)");
            int index = _maps.FindIndex(m => m.Address == request.Address && m.Size == request.Size);
            if (index < 0)
                VfioException.Throw(Errno.ENOENT, op, $"no mapping is exactly 0x{request.Address:x}+0x{request.Size:x}");
            _maps[index].Dispose();
            _maps.RemoveAt(index);
        }
    }

    /// <summary>Finds the mapping containing the whole range.</summary>
    public DmaMapping? Find(ulong address, ulong length)
    {
        lock (_lock)
            return _maps.Find(m => m.Contains(address, length));
    }

    /// <summary>Snapshot of all mappings.</summary>
    public IReadOnlyList<DmaMapping> Snapshot()
    {
        lock (_lock)
            return [.. _maps];
    }

    /// <summary>Unmaps everything and closes the fds.</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            foreach (var m in _maps)
                m.Dispose();
            _maps.Clear();
        }
    }
}
