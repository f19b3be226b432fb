using Vfio.Kernel;
using Vfio.Migration;

namespace Vfio.KernelTests;

/// <summary>Save on device A, resume on device B, compare the region contents.</summary>
public sealed class SaveResumeTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Theory]
    [InlineData(4093)]
    [InlineData(65536)]
    [InlineData(1)]
    public async Task SaveA_ResumeB_CopiesTheRegion(int chunk)
    {
        await using var a = KernelRig.Open(KernelRig.Devices[0]);
        await using var b = KernelRig.Open(KernelRig.Devices[1]);
        await a.ResetAsync(Ct);
        await b.ResetAsync(Ct);
        ulong size = a.Device.GetRegionInfo(0).Size;
        var pattern = MigrationHelpers.Pattern((int)size, seed: chunk);
        a.Device.WriteRegion(0, 0, pattern);
        Assert.NotEqual(pattern, MigrationHelpers.ReadRegion(b));

        // Source: RUNNING > RUNNING_P2P > STOP > STOP_COPY, read to EOF.
        await using var saving = await a.SetStateAsync(VfioMigrationState.StopCopy, Ct);
        var image = chunk == 1
            ? await MigrationHelpers.ReadToEndAsync(saving!, Ct, chunk: 977)
            : await MigrationHelpers.ReadToEndAsync(saving!, Ct, chunk);
        MigrationHelpers.CheckStreamFrame(image, size);

        // Destination: RUNNING > RUNNING_P2P > STOP > RESUMING, write in chunks, then > STOP > RUNNING.
        await using var resuming = await b.SetStateAsync(VfioMigrationState.Resuming, Ct);
        for (int off = 0; off < image.Length; off += chunk)
            await resuming!.WriteAsync(image.AsMemory(off, Math.Min(chunk, image.Length - off)), Ct);
        Assert.Null(await b.SetStateAsync(VfioMigrationState.Running, Ct));
        Assert.Equal(VfioMigrationState.Running, await b.GetStateAsync(Ct));
        Assert.Equal(pattern, MigrationHelpers.ReadRegion(b));

        await a.SetStateAsync(VfioMigrationState.Running, Ct);
        Assert.Equal(pattern, MigrationHelpers.ReadRegion(a)); // saving does not change the source
    }

    [Fact]
    public async Task IncompleteStream_FailsResumingToStop_WithEINVAL_StateStaysResuming_ThenTheRestCompletesIt()
    {
        await using var a = KernelRig.Open(KernelRig.Devices[0]);
        await using var b = KernelRig.Open(KernelRig.Devices[1]);
        await a.ResetAsync(Ct);
        await b.ResetAsync(Ct);
        var pattern = MigrationHelpers.Pattern((int)a.Device.GetRegionInfo(0).Size, seed: 5);
        a.Device.WriteRegion(0, 0, pattern);
        var image = await MigrationHelpers.SaveAsync(a, Ct);

        await using var resuming = await b.SetStateAsync(VfioMigrationState.Resuming, Ct);
        await resuming!.WriteAsync(image.AsMemory(0, image.Length - 100), Ct);
        var e = await Assert.ThrowsAsync<VfioException>(async () => await b.SetStateAsync(VfioMigrationState.Stop, Ct));
        Assert.Equal(Errno.EINVAL, e.Errno);
        Assert.Contains("now in RESUMING", e.Message, StringComparison.Ordinal);
        Assert.Equal(VfioMigrationState.Resuming, await b.GetStateAsync(Ct));

        await resuming.WriteAsync(image.AsMemory(image.Length - 100), Ct); // the fd is still usable
        await b.SetStateAsync(VfioMigrationState.Stop, Ct);
        await b.SetStateAsync(VfioMigrationState.Running, Ct);
        Assert.Equal(pattern, MigrationHelpers.ReadRegion(b));
    }

    [Fact]
    public async Task CorruptedStream_IsRejectedAtResumingToStop()
    {
        await using var a = KernelRig.Open(KernelRig.Devices[0]);
        await using var b = KernelRig.Open(KernelRig.Devices[1]);
        await a.ResetAsync(Ct);
        await b.ResetAsync(Ct);
        a.Device.WriteRegion(0, 0, MigrationHelpers.Pattern((int)a.Device.GetRegionInfo(0).Size, seed: 6));
        byte[] image;
        KernelRig.WriteParam("corrupt_stream", "1");
        try
        {
            image = await MigrationHelpers.SaveAsync(a, Ct);
        }
        finally
        {
            KernelRig.WriteParam("corrupt_stream", "0");
        }
        await using var resuming = await b.SetStateAsync(VfioMigrationState.Resuming, Ct);
        await resuming!.WriteAsync(image, Ct);
        var e = await Assert.ThrowsAsync<VfioException>(async () => await b.SetStateAsync(VfioMigrationState.Running, Ct));
        Assert.Equal(Errno.EINVAL, e.Errno);
        Assert.Equal(VfioMigrationState.Resuming, await b.GetStateAsync(Ct));
        await b.ResetAsync(Ct);
        Assert.All(MigrationHelpers.ReadRegion(b), x => Assert.Equal(0, x));
    }
}
