using Vfio.Engine;

namespace Vfio.Tests.Engine;

public class MigrationExceptionTests
{
    [Fact]
    public void MigrationException_IsTheOneErrnoCarryingType_WithWhereItFailed()
    {
        var inner = new VfioException(Errno.EIO, "arc STOP>STOP_COPY", "the device failed");
        var e = new MigrationException(MigrationSide.Source, MigrationPhase.StopCopy, 0, "sample:0", Errno.EIO, "entering STOP_COPY failed", inner);

        VfioException asVfio = e;
        Assert.Equal(Errno.EIO, asVfio.Errno);
        Assert.Equal("entering STOP_COPY failed", asVfio.Detail);
        Assert.Equal((int)Errno.EIO, e.HResult);
        Assert.Same(inner, e.InnerException);
        Assert.Equal("migration failed in stop-copy on the source device 0 (sample:0): EIO: entering STOP_COPY failed", e.Message);
    }
}
