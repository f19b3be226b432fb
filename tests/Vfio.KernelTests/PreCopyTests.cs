using System.Buffers.Binary;
using Vfio.Device;
using Vfio.Kernel;
using Vfio.Migration;

namespace Vfio.KernelTests;

/// <summary>
/// PRE_COPY, VFIO_MIG_GET_PRECOPY_INFO and MIG_DATA_SIZE (spec §4.5, §4.6, §4.8) on Linux 6.2+, against
/// vfio_mig_test with caps 0x7 and 0x5. The driver's pre-copy data is the 24-byte stream header; the state,
/// CRC and end marker follow in STOP_COPY on the same fd. Skipped on 6.1, which has none of it.
/// </summary>
public sealed class PreCopyTests(Caps7Mdev caps7, Caps5Mdev caps5) : IClassFixture<Caps7Mdev>, IClassFixture<Caps5Mdev>
{
    private const int Header = 24;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Theory]
    [InlineData(0x7u)]
    [InlineData(0x5u)]
    public async Task PreCopy_DeliversTheHeader_ThenENOMSG_ThenTheSameFdContinuesInStopCopy(uint caps)
    {
        await using var device = KernelRig.Open(caps == 0x7 ? caps7.Name : caps5.Name);
        await device.ResetAsync(Ct);
        ulong size = device.Device.GetRegionInfo(0).Size;
        var pattern = MigrationHelpers.Pattern((int)size, seed: (int)caps);
        device.Device.WriteRegion(0, 0, pattern);
        Assert.Equal(size + 32, await device.GetStopCopySizeAsync(Ct)); // RUNNING: the whole stream

        await using var stream = (KernelMigrationDataStream?)await device.SetStateAsync(VfioMigrationState.PreCopy, Ct);
        Assert.NotNull(stream);
        Assert.Equal(new PrecopyEstimate(Header, 0), stream!.GetPrecopyInfo());
        Assert.Equal(size + 8, await device.GetStopCopySizeAsync(Ct)); // the header goes in pre-copy

        var head = new byte[64];
        Assert.Equal(Header, await stream.ReadAsync(head, Ct));
        Assert.Equal(MigrationHelpers.StreamMagic, BinaryPrimitives.ReadUInt64LittleEndian(head));
        Assert.Equal(new PrecopyEstimate(0, 0), stream.GetPrecopyInfo());
        var end = await Assert.ThrowsAsync<VfioException>(async () => await stream.ReadAsync(head, Ct));
        Assert.Equal(Errno.ENOMSG, end.Errno); // temporary end (spec §4.5); the stream stays usable
        Assert.False(stream.IsFaulted);

        // caps 0x7 walks PRE_COPY > PRE_COPY_P2P > STOP_COPY, caps 0x5 PRE_COPY > STOP_COPY: no new fd either way.
        Assert.Null(await device.SetStateAsync(VfioMigrationState.StopCopy, Ct));
        var info = Assert.Throws<VfioException>(() => stream.GetPrecopyInfo());
        Assert.Equal(Errno.EINVAL, info.Errno); // not in PRE_COPY any more (spec §4.6)
        var rest = await MigrationHelpers.ReadToEndAsync(stream, Ct);
        Assert.Equal((long)size + 8, rest.LongLength);
        var image = head.AsSpan(0, Header).ToArray().Concat(rest).ToArray();
        MigrationHelpers.CheckStreamFrame(image, size);
        Assert.Equal(pattern, image.AsSpan(Header, (int)size).ToArray());
        Assert.Equal(0, await stream.ReadAsync(head, Ct)); // permanent end in STOP_COPY
        Assert.Null(await device.SetStateAsync(VfioMigrationState.Stop, Ct));
        Assert.Equal(Errno.EINVAL, Assert.Throws<VfioException>(() => stream.GetPrecopyInfo()).Errno);
        await device.ResetAsync(Ct);
    }

    [Fact]
    public async Task PreCopyP2P_OpensFromRunningP2P_AndLeavingItForRunningP2P_EndsTheSession()
    {
        await using var device = KernelRig.Open(caps7.Name);
        await device.ResetAsync(Ct);
        Assert.Null(await device.SetStateAsync(VfioMigrationState.RunningP2P, Ct));
        await using var stream = (KernelMigrationDataStream?)await device.SetStateAsync(VfioMigrationState.PreCopyP2P, Ct);
        Assert.NotNull(stream);
        Assert.Equal(new PrecopyEstimate(Header, 0), stream!.GetPrecopyInfo());
        Assert.Null(await device.SetStateAsync(VfioMigrationState.PreCopy, Ct)); // the P2P pair: same session
        Assert.Equal(new PrecopyEstimate(Header, 0), stream.GetPrecopyInfo());
        Assert.Null(await device.SetStateAsync(VfioMigrationState.PreCopyP2P, Ct));
        Assert.Null(await device.SetStateAsync(VfioMigrationState.RunningP2P, Ct));
        var e = await Assert.ThrowsAsync<VfioException>(async () => await stream.ReadAsync(new byte[8], Ct));
        Assert.Equal(Errno.ENODEV, e.Errno);
        await device.ResetAsync(Ct);
    }

    [Fact]
    public async Task PreCopyThenStopCopyStream_ResumesIntoASecondDevice()
    {
        await using var a = KernelRig.Open(caps7.Name);
        await using var b = KernelRig.Open(KernelRig.Devices[1]);
        await a.ResetAsync(Ct);
        await b.ResetAsync(Ct);
        var pattern = MigrationHelpers.Pattern((int)a.Device.GetRegionInfo(0).Size, seed: 77);
        a.Device.WriteRegion(0, 0, pattern);

        await using var saving = await a.SetStateAsync(VfioMigrationState.PreCopy, Ct);
        var buffer = new byte[Header];
        Assert.Equal(Header, await saving!.ReadAsync(buffer, Ct));
        Assert.Null(await a.SetStateAsync(VfioMigrationState.StopCopy, Ct));
        var image = buffer.Concat(await MigrationHelpers.ReadToEndAsync(saving, Ct)).ToArray();

        await using var resuming = await b.SetStateAsync(VfioMigrationState.Resuming, Ct);
        await resuming!.WriteAsync(image, Ct);
        Assert.Null(await b.SetStateAsync(VfioMigrationState.Running, Ct));
        Assert.Equal(pattern, MigrationHelpers.ReadRegion(b));
        await a.ResetAsync(Ct);
        await b.ResetAsync(Ct);
    }

    [Fact]
    public async Task PrecopyInfo_OutsidePreCopy_IsEINVAL_AndOnAResumingFd_IsENOTTY()
    {
        await using var device = KernelRig.Open(caps7.Name);
        await device.ResetAsync(Ct);
        await using (var saving = (KernelMigrationDataStream?)await device.SetStateAsync(VfioMigrationState.StopCopy, Ct))
            Assert.Equal(Errno.EINVAL, Assert.Throws<VfioException>(() => saving!.GetPrecopyInfo()).Errno);
        Assert.Null(await device.SetStateAsync(VfioMigrationState.Stop, Ct));
        await using (var resuming = (KernelMigrationDataStream?)await device.SetStateAsync(VfioMigrationState.Resuming, Ct))
            Assert.Equal(Errno.ENOTTY, Assert.Throws<VfioException>(() => resuming!.GetPrecopyInfo()).Errno);
        await device.ResetAsync(Ct);
    }
}

/// <summary>
/// The kernel's own mtty sample driver (samples/vfio-mdev/mtty.c, built from linux-source in the rig), type
/// mtty-2: caps 0x7, a 24-byte header in pre-copy and 36 bytes per port in STOP_COPY (96 bytes in all).
/// </summary>
public sealed class MttyTests
{
    private const int Header = 24;
    private const int Stream = 96;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Mtty_OffersCaps7_AndMigDataSize()
    {
        await using var device = await MigrationHelpers.OpenResetAsync(KernelRig.MttyDevices[0], Ct);
        Assert.True(device.ProbeMigration());
        Assert.Equal(VfioMigrationFlags.StopCopy | VfioMigrationFlags.P2P | VfioMigrationFlags.PreCopy, await device.GetCapabilitiesAsync(Ct));
        Assert.Equal(VfioMigrationState.Running, await device.GetStateAsync(Ct));
        Assert.Equal((ulong)Stream, await device.GetStopCopySizeAsync(Ct));
        Assert.True((device.Device.GetInfo().Flags & KernelDeviceInfo.FlagPci) != 0);
    }

    [Fact]
    public async Task Mtty_PreCopy_InfoCountsDown_TemporaryEndIsAZeroRead_StopCopyContinuesTheFd()
    {
        await using var device = await MigrationHelpers.OpenResetAsync(KernelRig.MttyDevices[0], Ct);
        await using var stream = (KernelMigrationDataStream?)await device.SetStateAsync(VfioMigrationState.PreCopy, Ct);
        Assert.NotNull(stream);
        Assert.Equal(new PrecopyEstimate(Header, 0), stream!.GetPrecopyInfo());
        var buffer = new byte[256];
        Assert.Equal(10, await stream.ReadAsync(buffer.AsMemory(0, 10), Ct));
        Assert.Equal(new PrecopyEstimate(Header - 10, 0), stream.GetPrecopyInfo()); // initial_bytes shrinks as it is read
        Assert.Equal(Header - 10, await stream.ReadAsync(buffer.AsMemory(10), Ct));
        Assert.Equal(new PrecopyEstimate(0, 0), stream.GetPrecopyInfo());
        // mtty's read returns 0 at the temporary end; the uAPI asks for ENOMSG (vfio_mig_test does that).
        Assert.Equal(0, await stream.ReadAsync(buffer.AsMemory(Header), Ct));

        Assert.Null(await device.SetStateAsync(VfioMigrationState.StopCopy, Ct)); // via PRE_COPY_P2P, same fd
        Assert.Equal(Errno.EINVAL, Assert.Throws<VfioException>(() => stream.GetPrecopyInfo()).Errno);
        var rest = await MigrationHelpers.ReadToEndAsync(stream, Ct);
        Assert.Equal(Stream - Header, rest.Length);
        Assert.Equal(0, await stream.ReadAsync(buffer, Ct));
        Assert.Null(await device.SetStateAsync(VfioMigrationState.Stop, Ct));
        Assert.Equal(Errno.ENODEV, (await Assert.ThrowsAsync<VfioException>(async () => await stream.ReadAsync(buffer, Ct))).Errno);
        await device.ResetAsync(Ct);
    }

    [Fact]
    public async Task Mtty_SaveA_ResumeB_ThroughP2P_BResavesTheSameStream()
    {
        await using var a = await MigrationHelpers.OpenResetAsync(KernelRig.MttyDevices[0], Ct);
        await using var b = await MigrationHelpers.OpenResetAsync(KernelRig.MttyDevices[1], Ct);

        // Source: RUNNING > RUNNING_P2P > STOP > STOP_COPY.
        Assert.Null(await a.SetStateAsync(VfioMigrationState.RunningP2P, Ct));
        await using var saving = await a.SetStateAsync(VfioMigrationState.StopCopy, Ct);
        var image = await MigrationHelpers.ReadToEndAsync(saving!, Ct, chunk: 7);
        Assert.Equal(Stream, image.Length);

        await using (var resuming = await b.SetStateAsync(VfioMigrationState.Resuming, Ct))
            await resuming!.WriteAsync(image, Ct);
        Assert.Null(await b.SetStateAsync(VfioMigrationState.RunningP2P, Ct));
        Assert.Null(await b.SetStateAsync(VfioMigrationState.Running, Ct));

        Assert.Null(await b.SetStateAsync(VfioMigrationState.Stop, Ct));
        await using var again = await b.SetStateAsync(VfioMigrationState.StopCopy, Ct);
        Assert.Equal(image, await MigrationHelpers.ReadToEndAsync(again!, Ct));
        await a.ResetAsync(Ct);
        await b.ResetAsync(Ct);
    }

    [Fact]
    public async Task Mtty_ResumeOfATruncatedStream_FailsResumingToStop()
    {
        await using var a = await MigrationHelpers.OpenResetAsync(KernelRig.MttyDevices[0], Ct);
        await using var b = await MigrationHelpers.OpenResetAsync(KernelRig.MttyDevices[1], Ct);
        var image = await MigrationHelpers.SaveAsync(a, Ct);
        await using var resuming = await b.SetStateAsync(VfioMigrationState.Resuming, Ct);
        await resuming!.WriteAsync(image.AsMemory(0, image.Length - 1), Ct);
        var e = await Assert.ThrowsAsync<VfioException>(async () => await b.SetStateAsync(VfioMigrationState.Stop, Ct));
        Assert.Equal(Errno.EINVAL, e.Errno);
        Assert.Contains("now in RESUMING", e.Message, StringComparison.Ordinal);
        await b.ResetAsync(Ct);
        Assert.Equal(VfioMigrationState.Running, await b.GetStateAsync(Ct));
    }
}
