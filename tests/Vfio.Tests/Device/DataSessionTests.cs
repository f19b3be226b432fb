using Vfio.Device;
using Vfio.Migration;
using Vfio.Tests.TestSupport;

namespace Vfio.Tests.Device;

// spec §3.4, §4.1–§4.8: data sessions (the data fd), reset, stale streams, precopy info.
public class DataSessionTests
{
    private const VfioMigrationFlags All = (VfioMigrationFlags)0x7;

    [Theory]
    [InlineData(VfioMigrationState.StopCopy)]
    [InlineData(VfioMigrationState.PreCopy)]
    [InlineData(VfioMigrationState.PreCopyP2P)]
    [InlineData(VfioMigrationState.Resuming)]
    public void Reset_GoesToRunning_AndTerminatesTheSession_StaleIoIsEnodevNeverEof_spec_3_4_and_4_4(VfioMigrationState state)
    {
        using var d = SetStateEngineTests.DeviceIn(All, state == VfioMigrationState.Resuming || state == VfioMigrationState.StopCopy ? VfioMigrationState.Stop : VfioMigrationState.Running);
        var s = d.SetState(state)!;
        Assert.NotNull(s);
        d.SavingAvailable = 1000;
        d.Reset();
        Assert.Equal(VfioMigrationState.Running, d.State);
        Assert.False(s.IsActive);
        Assert.Null(d.CurrentSession);
        Assert.Equal(1, d.ResetCount);
        var buf = new byte[16];
        if (s.Kind == DataSessionKind.Saving)
        {
            // Data is still "available" in the device, but a stale stream never reads it, and never sees EOF.
            for (int i = 0; i < 3; i++)
                Assert.Equal(Errno.ENODEV, Assert.Throws<VfioException>(() => s.Read(buf)).Errno);
        }
        else
        {
            Assert.Equal(Errno.ENODEV, Assert.Throws<VfioException>(() => s.Write(buf)).Errno);
        }
        Assert.Equal(1000, d.SavingAvailable);
    }

    [Fact]
    public async Task A_reset_hook_that_throws_does_not_leave_the_device_locked_spec_3_4()
    {
        using var d = SetStateEngineTests.DeviceIn(All, VfioMigrationState.Stop);
        d.ResetThrows = new InvalidOperationException("faulty device");
        Assert.Throws<InvalidOperationException>(d.Reset);
        d.ResetThrows = null;
        // The state lock was released: the next call does not block.
        var next = Task.Run(() => d.SetState(VfioMigrationState.Running), TestContext.Current.CancellationToken);
        await next.WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken);
        Assert.Equal(VfioMigrationState.Running, d.State);
    }

    [Fact]
    public void Reset_WithNoSession_StillGoesToRunning_spec_3_4()
    {
        using var d = SetStateEngineTests.DeviceIn(All, VfioMigrationState.Stop);
        d.Reset();
        Assert.Equal(VfioMigrationState.Running, d.State);
        d.Reset();
        Assert.Equal(VfioMigrationState.Running, d.State);
        Assert.Equal(2, d.ResetCount);
    }

    [Fact]
    public void RequestingTheCurrentState_ReturnsNoSession_AndKeepsTheExistingOneValid_spec_2_4()
    {
        foreach (var (start, state) in new[]
        {
            (VfioMigrationState.Stop, VfioMigrationState.StopCopy),
            (VfioMigrationState.Stop, VfioMigrationState.Resuming),
            (VfioMigrationState.Running, VfioMigrationState.PreCopy),
            (VfioMigrationState.RunningP2P, VfioMigrationState.PreCopyP2P),
        })
        {
            using var d = SetStateEngineTests.DeviceIn(All, start);
            var s = d.SetState(state)!;
            d.ClearArcs();
            Assert.Null(d.SetState(state));
            Assert.Empty(d.Arcs);
            Assert.True(s.IsActive);
            Assert.Same(s, d.CurrentSession);
        }
    }

    [Theory]
    [InlineData(0x5ul)]
    [InlineData(0x7ul)]
    public void PreCopyToStopCopy_KeepsTheSameSession_spec_2_7(ulong caps)
    {
        using var d = SetStateEngineTests.DeviceIn((VfioMigrationFlags)caps, VfioMigrationState.Running);
        var s = d.SetState(VfioMigrationState.PreCopy)!;
        Assert.Null(d.SetState(VfioMigrationState.StopCopy));
        Assert.True(s.IsActive);
        Assert.Same(s, d.CurrentSession);
        d.SavingAvailable = 10;
        Assert.Equal(10, s.Read(new byte[64]));
        Assert.Equal(0, s.Read(new byte[64]));
    }

    [Fact]
    public void PreCopyP2P_AndBack_KeepTheSameSession_spec_2_7()
    {
        using var d = SetStateEngineTests.DeviceIn(All, VfioMigrationState.Running);
        var s = d.SetState(VfioMigrationState.PreCopy)!;
        Assert.Null(d.SetState(VfioMigrationState.PreCopyP2P));
        Assert.Null(d.SetState(VfioMigrationState.PreCopy));
        Assert.Same(s, d.CurrentSession);
        Assert.True(s.IsActive);
    }

    [Theory]
    [InlineData(VfioMigrationState.PreCopy, VfioMigrationState.Running)]
    [InlineData(VfioMigrationState.PreCopyP2P, VfioMigrationState.RunningP2P)]
    [InlineData(VfioMigrationState.StopCopy, VfioMigrationState.Stop)]
    public void SessionEndingArcs_TerminateTheSavingSession_spec_2_7(VfioMigrationState saving, VfioMigrationState end)
    {
        using var d = SetStateEngineTests.DeviceIn(All, saving == VfioMigrationState.StopCopy ? VfioMigrationState.Stop : VfioMigrationState.Running);
        var s = d.SetState(saving)!;
        Assert.Null(d.SetState(end));
        Assert.False(s.IsActive);
        Assert.Null(d.CurrentSession);
        Assert.Equal(new[] { DataSessionKind.Saving }, d.EndedSessions);
        Assert.Equal(Errno.ENODEV, Assert.Throws<VfioException>(() => s.Read(new byte[8])).Errno);
    }

    [Fact]
    public void ResumingToStop_TerminatesTheResumingSession_spec_2_7()
    {
        using var d = SetStateEngineTests.DeviceIn(All, VfioMigrationState.Stop);
        var s = d.SetState(VfioMigrationState.Resuming)!;
        s.Write(new byte[5]);
        Assert.Equal(5, d.Resumed);
        Assert.Equal(5, s.BytesTransferred);
        d.SetState(VfioMigrationState.Stop);
        Assert.False(s.IsActive);
        Assert.Equal(Errno.ENODEV, Assert.Throws<VfioException>(() => s.Write(new byte[1])).Errno);
    }

    [Fact]
    public void PreCopyTemporaryEnd_IsEnomsg_StopCopyEnd_IsZero_spec_4_2_and_4_5()
    {
        using var d = SetStateEngineTests.DeviceIn(All, VfioMigrationState.Running);
        var s = d.SetState(VfioMigrationState.PreCopy)!;
        var buf = new byte[8];
        d.SavingAvailable = 3;
        Assert.Equal(3, s.Read(buf));
        Assert.Equal(Errno.ENOMSG, Assert.Throws<VfioException>(() => s.Read(buf)).Errno);
        d.SetState(VfioMigrationState.PreCopyP2P);
        Assert.Equal(Errno.ENOMSG, Assert.Throws<VfioException>(() => s.Read(buf)).Errno);
        d.SavingAvailable = 2;
        Assert.Equal(2, s.Read(buf));
        d.SetState(VfioMigrationState.StopCopy);
        Assert.Equal(0, s.Read(buf));
        Assert.Equal(0, s.Read(buf)); // and keeps returning 0
        Assert.Equal(5, s.BytesTransferred);
    }

    [Fact]
    public void StaleStream_AfterANewSession_IsEnodev_AndNeverReadsTheNewSessionsData_spec_4_4()
    {
        using var d = SetStateEngineTests.DeviceIn(All, VfioMigrationState.Stop);
        var first = d.SetState(VfioMigrationState.StopCopy)!;
        d.SetState(VfioMigrationState.Stop);
        var second = d.SetState(VfioMigrationState.StopCopy)!;
        Assert.NotSame(first, second);
        Assert.True(second.Id > first.Id);
        d.SavingAvailable = 100;
        Assert.Equal(Errno.ENODEV, Assert.Throws<VfioException>(() => first.Read(new byte[10])).Errno);
        Assert.Equal(100, d.SavingAvailable);
        Assert.Equal(10, second.Read(new byte[10]));
    }

    [Fact]
    public void WrongDirection_IsEbadf_AndResumingStreamHasNoIoctl_spec_4_1_and_4_6()
    {
        using var d = SetStateEngineTests.DeviceIn(All, VfioMigrationState.Stop);
        var saving = d.SetState(VfioMigrationState.StopCopy)!;
        Assert.Equal(Errno.EBADF, Assert.Throws<VfioException>(() => saving.Write(new byte[1])).Errno);
        d.SetState(VfioMigrationState.Stop);
        var resuming = d.SetState(VfioMigrationState.Resuming)!;
        Assert.Equal(Errno.EBADF, Assert.Throws<VfioException>(() => resuming.Read(new byte[1])).Errno);
        Assert.Equal(Errno.ENOTTY, Assert.Throws<VfioException>(() => resuming.GetPrecopyInfo()).Errno);
        // Direction is checked before staleness (the VFS refuses before the driver sees the call).
        Assert.Equal(Errno.EBADF, Assert.Throws<VfioException>(() => saving.Write(new byte[1])).Errno);
    }

    [Fact]
    public void PrecopyInfo_IsEinvalOutsidePreCopyStates_CheckedBeforeEnodev_spec_4_4_and_4_6()
    {
        using var d = SetStateEngineTests.DeviceIn(All, VfioMigrationState.Running);
        var s = d.SetState(VfioMigrationState.PreCopy)!;
        d.Estimate = new PrecopyEstimate(7, 3);
        Assert.Equal(new PrecopyEstimate(7, 3), s.GetPrecopyInfo());
        d.SetState(VfioMigrationState.PreCopyP2P);
        Assert.Equal(new PrecopyEstimate(7, 3), s.GetPrecopyInfo());
        d.SetState(VfioMigrationState.StopCopy);
        Assert.Equal(Errno.EINVAL, Assert.Throws<VfioException>(() => s.GetPrecopyInfo()).Errno);
        d.SetState(VfioMigrationState.Stop);
        // Stale and outside PRE_COPY: the state check comes first → EINVAL, not ENODEV.
        Assert.False(s.IsActive);
        Assert.Equal(Errno.EINVAL, Assert.Throws<VfioException>(() => s.GetPrecopyInfo()).Errno);
        d.SetState(VfioMigrationState.PreCopy);
        // Stale but the device is in PRE_COPY again (with a new stream) → ENODEV.
        Assert.Equal(Errno.ENODEV, Assert.Throws<VfioException>(() => s.GetPrecopyInfo()).Errno);
    }

    [Fact]
    public void PrecopyInfo_ReinitIsOnlyReportedAfterTheV2OptIn_spec_4_7()
    {
        using var d = SetStateEngineTests.DeviceIn(All, VfioMigrationState.Running);
        var s = d.SetState(VfioMigrationState.PreCopy)!;
        d.Estimate = new PrecopyEstimate(50, 0, Reinit: true);
        Assert.False(d.PrecopyInfoV2Enabled);
        Assert.Equal(new PrecopyEstimate(50, 0, Reinit: false), s.GetPrecopyInfo());
        d.EnablePrecopyInfoV2();
        Assert.True(d.PrecopyInfoV2Enabled);
        Assert.Equal(new PrecopyEstimate(50, 0, Reinit: true), s.GetPrecopyInfo());
        // The opt-in is per device and survives reset and later migrations.
        d.Reset();
        var s2 = d.SetState(VfioMigrationState.PreCopy)!;
        Assert.True(s2.GetPrecopyInfo().Reinit);
    }

    [Theory]
    [InlineData(0x1ul)]
    [InlineData(0x3ul)]
    public void PrecopyInfoV2OptIn_IsEinvalWithoutPreCopy_spec_4_7(ulong caps)
    {
        using var d = new RecordingDevice((VfioMigrationFlags)caps);
        Assert.Equal(Errno.EINVAL, Assert.Throws<VfioException>(d.EnablePrecopyInfoV2).Errno);
        Assert.False(d.PrecopyInfoV2Enabled);
    }

    [Fact]
    public void StopCopySizeEstimate_ComesFromTheDevice_InAnyState_spec_4_8()
    {
        using var d = SetStateEngineTests.DeviceIn(All, VfioMigrationState.Running);
        d.StopCopySize = 123456;
        Assert.Equal(123456ul, d.GetStopCopySize());
        d.SetState(VfioMigrationState.Resuming);
        Assert.Equal(123456ul, d.GetStopCopySize());
    }

    [Fact]
    public async Task ClosingTheStream_ThroughTheInProcessTransport_DoesNotChangeTheDevice_spec_4_1()
    {
        using var d = SetStateEngineTests.DeviceIn(All, VfioMigrationState.Stop);
        await using var user = new InProcessMigrationDevice(d, "test");
        var stream = await user.SetStateAsync(VfioMigrationState.StopCopy, TestContext.Current.CancellationToken);
        Assert.NotNull(stream);
        await stream.DisposeAsync();
        Assert.Equal(VfioMigrationState.StopCopy, d.State);
        Assert.True(d.CurrentSession!.IsActive);
    }

    [Fact]
    public void Dispose_TerminatesTheSession_AndLaterSetsFail()
    {
        var d = SetStateEngineTests.DeviceIn(All, VfioMigrationState.Stop);
        var s = d.SetState(VfioMigrationState.StopCopy)!;
        d.Dispose();
        Assert.False(s.IsActive);
        Assert.Throws<ObjectDisposedException>(() => d.SetState(VfioMigrationState.Stop));
    }
}
