using System.Buffers.Binary;
using CsCheck;
using Vfio.Migration;
using Vfio.Sample;
using Vfio.Tests.TestSupport;
using static Vfio.Sample.SampleStreamFormat;

namespace Vfio.Tests.Sample;

// spec §4.2/§4.3 applied to the sample device's own stream format (docs/sample-device.md): the resuming
// side accepts exactly one intact stream of a compatible device, in order, in any chunking.
public class SampleStreamTests
{
    private const long Size = 256 << 10; // 64 pages of 4 KiB
    private const int HeaderRecord = RecordHeaderSize + HeaderPayloadSize + RecordTrailerSize;
    private const int EndRecord = RecordHeaderSize + EndPayloadSize + RecordTrailerSize;
    private const int RunOverhead = RecordHeaderSize + 8 + RecordTrailerSize; // a PAGE record beside its pages
    private const int AllPagesRecord = RunOverhead + (64 * 4096);               // the initial pass: one run of 64 pages
    private static readonly int s_pageRecord = PageRecordSize(4096);

    private static SampleDevice Device(int seed, long size = Size, int pageSize = 4096, ulong caps = 0x7)
        => new(new SampleDeviceOptions { SizeBytes = size, PageSize = pageSize, Seed = seed, Capabilities = (VfioMigrationFlags)caps });

    /// <summary>The whole STOP_COPY stream of a device with the given seed (pages 0..3 rewritten so it differs from seed-only content).</summary>
    private static (byte[] Stream, byte[] Sha) Save(int seed = 1, long size = Size, int pageSize = 4096)
    {
        using var d = Device(seed, size, pageSize);
        d.DirtyPages(5, seed: 3);
        var ms = new MemoryStream();
        ReadToEnd(d.SetState(VfioMigrationState.StopCopy)!, ms);
        d.SetState(VfioMigrationState.Stop);
        return (ms.ToArray(), d.ComputeSha256());
    }

    // Reads a STOP_COPY stream to its end into ms.
    private static void ReadToEnd(Vfio.Device.DataSession s, MemoryStream ms)
    {
        var buf = new byte[8192];
        int n;
        while ((n = s.Read(buf)) > 0)
            ms.Write(buf, 0, n);
    }

    private static readonly (byte[] Stream, byte[] Sha) s_saved = Save();

    /// <summary>A stream with re-sent pages: the initial pass in PRE_COPY, then pages 3 and 9 (two one-page runs) in STOP_COPY.</summary>
    private static (byte[] Stream, byte[] Sha) SaveWithResends()
    {
        using var d = Device(seed: 1);
        var s = d.SetState(VfioMigrationState.PreCopy)!;
        var ms = new MemoryStream();
        var buf = new byte[8192];
        try
        {
            while (true)
                ms.Write(buf, 0, s.Read(buf));
        }
        catch (VfioException e) when (e.Errno == Errno.ENOMSG)
        {
        }
        d.WriteState(3 * 4096, [7]);
        d.WriteState(9 * 4096, [9]);
        d.SetState(VfioMigrationState.StopCopy);
        ReadToEnd(s, ms);
        d.SetState(VfioMigrationState.Stop);
        return (ms.ToArray(), d.ComputeSha256());
    }

    private static readonly (byte[] Stream, byte[] Sha) s_resent = SaveWithResends();

    private static Vfio.Device.DataSession Resuming(SampleDevice d)
    {
        d.SetState(VfioMigrationState.Resuming);
        return d.CurrentSession!;
    }

    [Fact]
    public void Stream_HasTheDocumentedLayout_HeaderPagesEnd()
    {
        var s = s_saved.Stream;
        Assert.Equal(HeaderRecord + AllPagesRecord + EndRecord, s.Length);
        Assert.Equal((ushort)RecordType.Header, BinaryPrimitives.ReadUInt16LittleEndian(s));
        Assert.Equal((uint)HeaderPayloadSize, BinaryPrimitives.ReadUInt32LittleEndian(s.AsSpan(4)));
        Assert.Equal(0ul, BinaryPrimitives.ReadUInt64LittleEndian(s.AsSpan(8)));
        Assert.Equal(Magic, BinaryPrimitives.ReadUInt64LittleEndian(s.AsSpan(16)));
        Assert.Equal("VFSAMPLE", System.Text.Encoding.ASCII.GetString(s, 16, 8));
        Assert.Equal(StreamVersion, BinaryPrimitives.ReadUInt32LittleEndian(s.AsSpan(24)));
        Assert.Equal(4096u, BinaryPrimitives.ReadUInt32LittleEndian(s.AsSpan(28)));
        Assert.Equal(64ul, BinaryPrimitives.ReadUInt64LittleEndian(s.AsSpan(32)));
        Assert.Equal(Crc32C.Compute(s.AsSpan(0, 40)), BinaryPrimitives.ReadUInt32LittleEndian(s.AsSpan(40)));

        // Version 2: the initial pass is one PAGE record of pages 0..63 under one CRC.
        var run = s.AsSpan(HeaderRecord, AllPagesRecord);
        Assert.Equal((ushort)RecordType.Page, BinaryPrimitives.ReadUInt16LittleEndian(run));
        Assert.Equal(1ul, BinaryPrimitives.ReadUInt64LittleEndian(run[8..]));
        Assert.Equal(8u + (64 * 4096), BinaryPrimitives.ReadUInt32LittleEndian(run[4..]));
        Assert.Equal(0ul, BinaryPrimitives.ReadUInt64LittleEndian(run[16..]));          // first page
        Assert.Equal(Crc32C.Compute(run[..^4]), BinaryPrimitives.ReadUInt32LittleEndian(run[^4..]));

        var end = s.AsSpan(s.Length - EndRecord);
        Assert.Equal((ushort)RecordType.End, BinaryPrimitives.ReadUInt16LittleEndian(end));
        Assert.Equal(2ul, BinaryPrimitives.ReadUInt64LittleEndian(end[8..]));           // sequence
        Assert.Equal(64ul, BinaryPrimitives.ReadUInt64LittleEndian(end[16..]));         // pages sent
        Assert.Equal(2ul, BinaryPrimitives.ReadUInt64LittleEndian(end[24..]));          // records before END
        Assert.Equal(Crc32C.Compute(end[..32]), BinaryPrimitives.ReadUInt32LittleEndian(end[32..]));
    }

    [Fact]
    public void IntactStream_Loads_AndReproducesTheState() => AssertLoads(s_saved);

    private static void AssertLoads((byte[] Stream, byte[] Sha) saved)
    {
        using var d = Device(seed: 2);
        Resuming(d).Write(saved.Stream);
        d.SetState(VfioMigrationState.Stop);
        Assert.Equal(saved.Sha, d.ComputeSha256());
    }

    [Theory]
    [InlineData(1)]            // only the END record's last byte missing
    [InlineData(EndRecord)]    // END record missing entirely
    [InlineData(EndRecord + 100)] // cut in the middle of the last page record
    public void TruncatedStream_ResumingToStopIsEinval_DeviceStaysResuming_RestCanFollow_spec_4_3(int cut)
    {
        using var d = Device(seed: 2);
        var session = Resuming(d);
        session.Write(s_saved.Stream.AsSpan(0, s_saved.Stream.Length - cut));
        var e = Assert.Throws<VfioException>(() => d.SetState(VfioMigrationState.Stop));
        Assert.Equal(Errno.EINVAL, e.Errno);
        Assert.Equal(VfioMigrationState.Resuming, d.State);
        Assert.True(session.IsActive);
        // The stream stays usable: write the rest and retry (spec §4.3).
        session.Write(s_saved.Stream.AsSpan(s_saved.Stream.Length - cut));
        d.SetState(VfioMigrationState.Stop);
        Assert.Equal(s_saved.Sha, d.ComputeSha256());
    }

    [Fact]
    public void TruncatedStream_CanBeAbandonedByReset_spec_2_7()
    {
        using var d = Device(seed: 2);
        var session = Resuming(d);
        session.Write(s_saved.Stream.AsSpan(0, 1000));
        Assert.Throws<VfioException>(() => d.SetState(VfioMigrationState.Stop));
        d.Reset();
        Assert.Equal(VfioMigrationState.Running, d.State);
        Assert.False(session.IsActive);
        // A fresh load works afterwards.
        d.SetState(VfioMigrationState.Resuming);
        d.CurrentSession!.Write(s_saved.Stream);
        d.SetState(VfioMigrationState.Stop);
        Assert.Equal(s_saved.Sha, d.ComputeSha256());
    }

    [Fact]
    public void EmptyStream_IsRejectedAtResumingToStop()
    {
        using var d = Device(seed: 2);
        Resuming(d);
        Assert.Equal(Errno.EINVAL, Assert.Throws<VfioException>(() => d.SetState(VfioMigrationState.Stop)).Errno);
        Assert.Equal(VfioMigrationState.Resuming, d.State);
    }

    [Fact]
    public void ReorderedRecords_AreRejected_AndThePoisonedLoadCannotComplete()
    {
        var s = (byte[])s_resent.Stream.Clone();
        int a = HeaderRecord + AllPagesRecord, b = a + s_pageRecord; // the re-sent pages 3 and 9
        var tmp = s.AsSpan(a, s_pageRecord).ToArray();
        s.AsSpan(b, s_pageRecord).CopyTo(s.AsSpan(a));
        tmp.CopyTo(s.AsSpan(b));

        using var d = Device(seed: 2);
        var session = Resuming(d);
        Assert.Equal(Errno.EINVAL, Assert.Throws<VfioException>(() => session.Write(s)).Errno);
        Assert.Equal(Errno.EINVAL, Assert.Throws<VfioException>(() => session.Write(s.AsSpan(0, 1))).Errno);
        Assert.Equal(Errno.EINVAL, Assert.Throws<VfioException>(() => d.SetState(VfioMigrationState.Stop)).Errno);
        Assert.Equal(VfioMigrationState.Resuming, d.State);
        d.Reset();
        Assert.Equal(VfioMigrationState.Running, d.State);
    }

    [Fact]
    public void DuplicatedRecord_IsRejected()
    {
        var page = s_resent.Stream.AsSpan(HeaderRecord + AllPagesRecord, s_pageRecord).ToArray();
        using var d = Device(seed: 2);
        var session = Resuming(d);
        session.Write(s_resent.Stream.AsSpan(0, HeaderRecord + AllPagesRecord + s_pageRecord));
        Assert.Equal(Errno.EINVAL, Assert.Throws<VfioException>(() => session.Write(page)).Errno);
    }

    [Theory]
    [InlineData(0)]                          // header record: type
    [InlineData(5)]                          // header record: length
    [InlineData(20)]                         // magic
    [InlineData(28)]                         // page size
    [InlineData(41)]                         // header CRC
    [InlineData(HeaderRecord + 2)]           // page record flags (covered by the CRC)
    [InlineData(HeaderRecord + 9)]           // page record sequence
    [InlineData(HeaderRecord + 16)]          // page index
    [InlineData(HeaderRecord + 2000)]        // page payload
    [InlineData(-3)]                         // END CRC
    [InlineData(-20)]                        // END pages-sent
    public void FlippedBit_IsRejected_AtWriteOrAtResumingToStop(int at)
        => AssertRejected(FlipBit(s_saved.Stream, at < 0 ? s_saved.Stream.Length + at : at, 3));

    [Fact]
    public void AnySingleBitFlip_IsRejected_Property() => AssertAnyBitFlipRejected(s_saved.Stream);

    [Fact]
    public void AnySingleBitFlip_InAStreamWithReSentPages_IsRejected_Property() => AssertAnyBitFlipRejected(s_resent.Stream);

    private static void AssertAnyBitFlipRejected(byte[] stream)
        => Gen.Int[0, (stream.Length * 8) - 1].Sample(bit =>
            AssertRejected(FlipBit(stream, bit / 8, bit % 8)), iter: 150, threads: 1, seed: CsCheckSeeds.Stream);

    [Fact]
    public void StreamWithReSentPages_Loads_TheLastCopyWins()
    {
        AssertLoads(s_resent);
        Assert.Equal(HeaderRecord + AllPagesRecord + (2 * s_pageRecord) + EndRecord, s_resent.Stream.Length);
    }

    [Fact]
    public void Version1Stream_OneRecordPerPage_IsRefusedAtItsHeader()
    {
        // The HEADER of a version-1 stream (the format before runs of pages): same layout, version 1.
        var header = new byte[HeaderRecord];
        WriteHeader(header, RecordType.Header, HeaderPayloadSize, 0);
        BinaryPrimitives.WriteUInt64LittleEndian(header.AsSpan(16), Magic);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(24), 1);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(28), 4096);
        BinaryPrimitives.WriteUInt64LittleEndian(header.AsSpan(32), 64);
        Seal(header, HeaderRecord - RecordTrailerSize);
        using var d = Device(seed: 2);
        var e = Assert.Throws<VfioException>(() => Resuming(d).Write(header));
        Assert.Equal(Errno.EINVAL, e.Errno);
        Assert.Contains("unsupported stream version 1", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Profile_ReadsOnlyVersion2_SoAVersion1PeerIsIncompatibleBeforeAnyDataMoves()
    {
        using var d = Device(seed: 1);
        var format = d.Format!;
        Assert.Equal((2u, 2u), (format.Version, format.MinVersion));
        var newer = new Vfio.Compat.MigrationProfile { Identity = new Vfio.Compat.DeviceIdentity { Transport = "in-process" }, Format = format };
        var older = newer with { Format = format with { Version = 1, MinVersion = 1 } };
        Assert.Contains(Vfio.Compat.CompatibilityCheck.Check(older, newer, preCopy: false).Reasons, r => r.Code == "format.version");
        Assert.Contains(Vfio.Compat.CompatibilityCheck.Check(newer, older, preCopy: false).Reasons, r => r.Code == "format.version");
    }

    [Fact]
    public void LongRuns_AreCutAtTheLargestRun_AndLoad()
    {
        // 1 MiB pages: a PAGE record carries at most 16 of them, so 20 pages make two records.
        const int big = 1 << 20;
        var (stream, sha) = Save(seed: 1, size: 20L * big, pageSize: big);
        Assert.Equal(HeaderRecord + (2 * RunOverhead) + (20L * big) + EndRecord, stream.Length);
        var second = stream.AsSpan(HeaderRecord + RunOverhead + (16 * big));
        Assert.Equal(8u + (4u * big), BinaryPrimitives.ReadUInt32LittleEndian(second[4..]));
        Assert.Equal(16ul, BinaryPrimitives.ReadUInt64LittleEndian(second[16..]));
        using var d = Device(seed: 2, size: 20L * big, pageSize: big);
        Resuming(d).Write(stream);
        d.SetState(VfioMigrationState.Stop);
        Assert.Equal(sha, d.ComputeSha256());
    }

    [Fact]
    public void StopCopyTakesInPlace_GiveTheSameBytesAsReads()
    {
        // STOP_COPY hands whole reads inside a run's pages out of the state without a copy; mixing them with reads
        // must give exactly the stream that reads alone give.
        using var d = Device(seed: 1);
        d.DirtyPages(5, seed: 3);
        var session = d.SetState(VfioMigrationState.StopCopy)!;
        var ms = new MemoryStream();
        var buf = new byte[5000];
        int taken = 0, n;
        do
        {
            if (session.TryTakeStopCopy(3 * 4096) is { } memory)
            {
                Assert.Equal(3 * 4096, memory.Length);
                ms.Write(memory.Span);
                taken++;
                n = memory.Length;
            }
            else
            {
                n = session.Read(buf);
                ms.Write(buf, 0, n);
            }
        }
        while (n > 0);
        Assert.True(taken > 10, $"only {taken} reads were taken in place");
        Assert.Equal(s_saved.Stream, ms.ToArray());
    }

    [Fact]
    public void DataAfterEnd_IsRejected()
    {
        using var d = Device(seed: 2);
        var session = Resuming(d);
        session.Write(s_saved.Stream);
        Assert.Equal(Errno.EINVAL, Assert.Throws<VfioException>(() => session.Write(new byte[1])).Errno);
        // Also in the same write as the stream itself.
        using var d2 = Device(seed: 2);
        Assert.Equal(Errno.EINVAL, Assert.Throws<VfioException>(() => Resuming(d2).Write([.. s_saved.Stream, 0])).Errno);
    }

    [Theory]
    [InlineData(128L << 10, 4096)]  // fewer pages
    [InlineData(512L << 10, 4096)]  // more pages
    [InlineData(256L << 10, 8192)]  // same size, other page size
    public void StreamOfADifferentlySizedDevice_IsRejected(long size, int pageSize)
    {
        using var d = Device(seed: 2, size: size, pageSize: pageSize);
        var session = Resuming(d);
        Assert.Equal(Errno.EINVAL, Assert.Throws<VfioException>(() => session.Write(s_saved.Stream)).Errno);
        Assert.Equal(Errno.EINVAL, Assert.Throws<VfioException>(() => d.SetState(VfioMigrationState.Stop)).Errno);
    }

    [Fact]
    public void RandomChunkingOfTheResumingWrites_AlwaysRoundTrips_Property()
        => Gen.Int[1, 9000].Array[1, 200].Sample(chunks =>
        {
            using var d = Device(seed: 2);
            var session = Resuming(d);
            var s = s_saved.Stream.AsSpan();
            int i = 0;
            while (!s.IsEmpty)
            {
                int n = Math.Min(chunks[i++ % chunks.Length], s.Length);
                session.Write(s[..n]);
                s = s[n..];
            }
            d.SetState(VfioMigrationState.Stop);
            Assert.Equal(s_saved.Sha, d.ComputeSha256());
        }, iter: 60, threads: 1, seed: CsCheckSeeds.Stream);

    [Fact]
    public void RandomReadSizes_OnTheSavingSide_GiveTheSameBytes_Property()
        => Gen.Int[1, 9000].Array[1, 50].Sample(sizes =>
        {
            using var d = Device(seed: 1);
            d.DirtyPages(5, seed: 3);
            var session = d.SetState(VfioMigrationState.StopCopy)!;
            var ms = new MemoryStream();
            int i = 0, n;
            do
            {
                var buf = new byte[sizes[i++ % sizes.Length]];
                n = session.Read(buf);
                ms.Write(buf, 0, n);
            }
            while (n > 0);
            Assert.Equal(s_saved.Stream, ms.ToArray());
        }, iter: 40, threads: 1, seed: CsCheckSeeds.Stream);

    [Fact]
    public void StopCopySizeEstimate_EqualsTheBytesStopCopyProduces_spec_4_8()
    {
        using var d = Device(seed: 1);
        d.DirtyPages(5, seed: 3);
        Assert.Equal((ulong)s_saved.Stream.Length, d.GetStopCopySize());

        // During pre-copy the estimate is what remains: unread initial data + dirty pages + END.
        using var p = Device(seed: 1);
        var s = p.SetState(VfioMigrationState.PreCopy)!;
        s.Read(new byte[10_000]);
        p.DirtyPages(20, seed: 5);
        ulong estimate = p.GetStopCopySize();
        p.SetState(VfioMigrationState.StopCopy);
        long rest = 0;
        int n;
        var buf = new byte[8192];
        while ((n = s.Read(buf)) > 0)
            rest += n;
        Assert.Equal(estimate, (ulong)rest);
    }

    [Fact]
    public void PrecopyInfo_InitialCountsDownToZero_DirtyGrowsWithWrites_spec_4_6()
    {
        using var d = Device(seed: 1);
        var s = d.SetState(VfioMigrationState.PreCopy)!;
        var first = s.GetPrecopyInfo();
        Assert.Equal((ulong)(HeaderRecord + AllPagesRecord), first.InitialBytes);
        Assert.Equal(0ul, first.DirtyBytes);
        Assert.Equal(first, s.GetPrecopyInfo()); // the query never consumes data
        s.Read(new byte[1000]);
        Assert.Equal(first.InitialBytes - 1000, s.GetPrecopyInfo().InitialBytes);
        var buf = new byte[1 << 16];
        try
        {
            while (true)
                s.Read(buf);
        }
        catch (VfioException e) when (e.Errno == Errno.ENOMSG)
        {
        }
        Assert.Equal(new Vfio.Device.PrecopyEstimate(0, 0), s.GetPrecopyInfo());
        d.WriteState(0, [1]);
        d.WriteState(4096 * 10, [1]);
        Assert.Equal((ulong)(2 * s_pageRecord), s.GetPrecopyInfo().DirtyBytes);
    }

    [Fact]
    public void PrecopyInfo_APartlyReadDirtyRecord_CountsAsDirtyNotInitial_spec_4_6()
    {
        using var d = Device(seed: 1);
        var s = d.SetState(VfioMigrationState.PreCopy)!;
        var buf = new byte[1 << 16];
        try
        {
            while (true)
                s.Read(buf);
        }
        catch (VfioException e) when (e.Errno == Errno.ENOMSG)
        {
        }
        d.WriteState(0, [1]);
        d.WriteState(4096 * 9, [1]);
        s.Read(new byte[100]); // starts one dirty record and hands out 100 bytes of it
        var info = s.GetPrecopyInfo();
        Assert.Equal(0ul, info.InitialBytes); // the initial data was all read; it stays 0 (spec §4.6)
        Assert.Equal((ulong)((2 * s_pageRecord) - 100), info.DirtyBytes);

        // And a partly read initial record still counts as initial.
        using var p = Device(seed: 1);
        var ps = p.SetState(VfioMigrationState.PreCopy)!;
        ps.Read(new byte[HeaderRecord + 10]);
        Assert.Equal((ulong)(AllPagesRecord - 10), ps.GetPrecopyInfo().InitialBytes);
        Assert.Equal(0ul, ps.GetPrecopyInfo().DirtyBytes);
    }

    [Fact]
    public void LargeDevice_SaveAndResume_DoNotAllocateASecondCopyOfTheState()
    {
        // 256 MiB of state: the saving and resuming paths must stream, allocating far less than the state size.
        const long big = 256L << 20;
        using var source = Device(seed: 1, size: big);
        using var destination = Device(seed: 2, size: big);
        var buf = new byte[1 << 20];
        long before = GC.GetAllocatedBytesForCurrentThread();
        var saving = source.SetState(VfioMigrationState.StopCopy)!;
        var resuming = destination.SetState(VfioMigrationState.Resuming)!;
        long total = 0;
        int n;
        while ((n = saving.Read(buf)) > 0)
        {
            resuming.Write(buf.AsSpan(0, n));
            total += n;
        }
        destination.SetState(VfioMigrationState.Stop);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(total > big);
        Assert.True(allocated < 4L << 20, $"{allocated} bytes allocated while streaming {total} bytes");
        var probe = new byte[4096];
        var expected = new byte[4096];
        foreach (long page in new long[] { 0, 12345, (big / 4096) - 1 })
        {
            source.ReadState(page * 4096, expected);
            destination.ReadState(page * 4096, probe);
            Assert.Equal(expected, probe);
        }
    }

    private static byte[] FlipBit(byte[] stream, int offset, int bit)
    {
        var copy = (byte[])stream.Clone();
        copy[offset] ^= (byte)(1 << bit);
        return copy;
    }

    private static void AssertRejected(byte[] stream)
    {
        using var d = Device(seed: 2);
        var session = Resuming(d);
        try
        {
            session.Write(stream);
        }
        catch (VfioException e)
        {
            Assert.Equal(Errno.EINVAL, e.Errno);
            return;
        }
        var ex = Assert.Throws<VfioException>(() => d.SetState(VfioMigrationState.Stop));
        Assert.Equal(Errno.EINVAL, ex.Errno);
        Assert.Equal(VfioMigrationState.Resuming, d.State);
    }
}
