using Vfio.Interop;
using Vfio.User.Client;

namespace Vfio.IntegrationTests;

/// <summary>
/// docs/security.md, "vfio-user client": the server survives any file a client maps. Only a memfd sealed against
/// shrinking is mmapped; any other file is read and written with pread/pwrite, so a client that truncates its file
/// after DMA_MAP gets EFAULT for the device's DMA, never a SIGBUS in the server.
/// </summary>
public sealed class DmaClientFileTests
{
    private const int Page = 4096;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static unsafe SafeFdHandle SealedMemFd(long size)
    {
        var name = "vfu-sealed\0"u8;
        int fd;
        fixed (byte* p = name)
            fd = (int)Interop.Interop.CheckIo(Interop.Interop.MemFdCreate(p, Interop.Interop.MFD_CLOEXEC | Interop.Interop.MFD_ALLOW_SEALING), "memfd_create");
        var handle = new SafeFdHandle(fd);
        Interop.Interop.CheckIo(Interop.Interop.FTruncate(fd, size), "ftruncate");
        Interop.Interop.CheckIo(Interop.Interop.Fcntl(handle, Interop.Interop.F_ADD_SEALS, Interop.Interop.F_SEAL_SHRINK), "F_ADD_SEALS");
        return handle;
    }

    [Fact]
    public async Task ShrunkFile_DeviceDmaIsEfault_ServerSurvivesAndStillAnswers()
    {
        await using var fx = new TestSupport.ServerFixture();
        await using var client = await VfioUserClient.ConnectAsync(fx.Path, null, Ct);
        using var memfd = TestSupport.MemFd(4 * Page);
        await client.DmaMapAsync(0x40000, 2 * Page, memfd, Page, cancellationToken: Ct);
        var connection = await fx.WaitForConnectionAsync();
        Assert.False(connection.Dma.Find(0x40000, 8)!.IsMapped); // unsealed: never mmapped
        await connection.DmaWriteAsync(0x40000, "before"u8.ToArray(), Ct);
        Assert.Equal("before"u8.ToArray(), TestSupport.ReadMemFd(memfd, Page, 6));

        Interop.Interop.CheckIo(Interop.Interop.FTruncate(memfd.Fd, 0), "ftruncate"); // the client shrinks its file
        var read = await Assert.ThrowsAsync<VfioException>(async () => await connection.DmaReadAsync(0x40000 + Page, new byte[64], Ct));
        Assert.Equal(Errno.EFAULT, read.Errno);
        Assert.Contains("truncated", read.Message, StringComparison.Ordinal);
        var write = await Assert.ThrowsAsync<VfioException>(async () => await connection.DmaWriteAsync(0x40000, new byte[64], Ct));
        Assert.Equal(Errno.EFAULT, write.Errno);

        // Still serving: the same connection answers the next requests.
        var info = await client.GetDeviceInfoAsync(Ct);
        Assert.True(info.NumRegions > 0);
        await client.DmaUnmapAsync(0x40000, 2 * Page, cancellationToken: Ct);
        Assert.Equal(0, connection.Dma.Count);
    }

    [Fact]
    public async Task SealedMemfd_IsMmapped_AndTooSmallSealedFileIsRefused()
    {
        await using var fx = new TestSupport.ServerFixture();
        await using var client = await VfioUserClient.ConnectAsync(fx.Path, null, Ct);
        using var sealedFd = SealedMemFd(2 * Page);
        await client.DmaMapAsync(0x50000, 2 * Page, sealedFd, 0, cancellationToken: Ct);
        var connection = await fx.WaitForConnectionAsync();
        Assert.True(connection.Dma.Find(0x50000, 8)!.IsMapped);
        await connection.DmaWriteAsync(0x50000 + 10, "sealed"u8.ToArray(), Ct);
        Assert.Equal("sealed"u8.ToArray(), TestSupport.ReadMemFd(sealedFd, 10, 6));
        // Shrinking is what the seal forbids: the kernel refuses it.
        Assert.True(Interop.Interop.FTruncate(sealedFd.Fd, 0) < 0);

        using var small = SealedMemFd(Page);
        var e = await Assert.ThrowsAsync<VfioException>(() => client.DmaMapAsync(0x60000, 2 * Page, small, 0, cancellationToken: Ct));
        Assert.Equal(Errno.EINVAL, e.Errno);
    }
}
