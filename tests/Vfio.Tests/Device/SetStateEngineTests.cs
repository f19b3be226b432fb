using Vfio.Device;
using Vfio.Migration;
using Vfio.Tests.TestSupport;

namespace Vfio.Tests.Device;

// spec §2.4, §2.5, §3.1–§3.3: how the device-side engine executes SET MIG_DEVICE_STATE.
public class SetStateEngineTests
{
    /// <summary>Drives a fresh RUNNING device to <paramref name="state"/> (RESUMING via STOP).</summary>
    internal static RecordingDevice DeviceIn(VfioMigrationFlags caps, VfioMigrationState state)
    {
        var d = new RecordingDevice(caps);
        if (state != VfioMigrationState.Running)
            d.SetState(state);
        Assert.Equal(state, d.State);
        d.ClearArcs();
        return d;
    }

    public static TheoryData<ulong> Caps => new() { 0x1ul, 0x3ul, 0x5ul, 0x7ul };

    [Theory]
    [MemberData(nameof(Caps))]
    public void Set_WalksTheKernelPath_ArcByArc_AndOpensASessionOnlyOnTheLastOpeningArc_spec_2_4(ulong rawCaps)
    {
        var caps = (VfioMigrationFlags)rawCaps;
        foreach (var from in SpecFiles.AllStates.Where(s => MigrationStateMachine.IsSupported(s, caps)))
        {
            foreach (var to in SpecFiles.AllStates)
            {
                using var d = DeviceIn(caps, from);
                var path = MigrationStateMachine.GetPath(from, to, caps);
                if (path.Succeeds)
                {
                    var session = d.SetState(to);
                    Assert.Equal(path.Arcs, d.Arcs);
                    Assert.Equal(to, d.State);
                    var last = path.Arcs.LastOrDefault();
                    var effect = path.Kind == MigrationPathKind.Arcs ? MigrationStateMachine.GetSessionEffect(last) : DataSessionEffect.None;
                    switch (effect)
                    {
                        case DataSessionEffect.OpensSaving:
                            Assert.NotNull(session);
                            Assert.Equal(DataSessionKind.Saving, session.Kind);
                            Assert.True(session.IsActive);
                            Assert.Same(session, d.CurrentSession);
                            break;
                        case DataSessionEffect.OpensResuming:
                            Assert.NotNull(session);
                            Assert.Equal(DataSessionKind.Resuming, session.Kind);
                            Assert.True(session.IsActive);
                            break;
                        default:
                            Assert.Null(session);
                            break;
                    }
                }
                else
                {
                    // spec §2.5: every rejection is EINVAL with the state unchanged and no arc run.
                    var e = Assert.Throws<VfioException>(() => d.SetState(to));
                    Assert.Equal(Errno.EINVAL, e.Errno);
                    Assert.Equal(from, d.State);
                    Assert.Empty(d.Arcs);
                }
            }
        }
    }

    [Theory]
    [MemberData(nameof(Caps))]
    public void FailingArcK_LeavesTheStateAfterArcKMinus1_AndGetReportsIt_spec_2_4(ulong rawCaps)
    {
        var caps = (VfioMigrationFlags)rawCaps;
        int multiArcPaths = 0;
        foreach (var from in SpecFiles.AllStates.Where(s => MigrationStateMachine.IsSupported(s, caps)))
        {
            foreach (var to in SpecFiles.AllStates)
            {
                var path = MigrationStateMachine.GetPath(from, to, caps);
                var arcs = path.Arcs.ToList();
                if (arcs.Count < 2)
                    continue;
                multiArcPaths++;
                for (int k = 0; k < arcs.Count; k++)
                {
                    using var d = DeviceIn(caps, from);
                    var failing = arcs[k];
                    d.FailWhen = a => a == failing;
                    d.FailErrno = Errno.EIO;
                    var e = Assert.Throws<VfioException>(() => d.SetState(to));
                    Assert.Equal(Errno.EIO, e.Errno); // spec §3.1: the driver's errno comes back unchanged
                    Assert.Equal(failing.From, d.State);
                    Assert.Equal(arcs.Take(k), d.Arcs);
                }
            }
        }
        Assert.True(multiArcPaths > 0);
    }

    [Fact]
    public void ErrorTarget_IsEinval_FromEveryState_spec_2_5()
    {
        foreach (var from in SpecFiles.AllStates.Where(s => s != VfioMigrationState.Error))
        {
            using var d = DeviceIn((VfioMigrationFlags)0x7, from);
            Assert.Equal(Errno.EINVAL, Assert.Throws<VfioException>(() => d.SetState(VfioMigrationState.Error)).Errno);
            Assert.Equal(from, d.State);
        }
    }

    [Theory]
    [InlineData(0x1ul, VfioMigrationState.RunningP2P)]
    [InlineData(0x1ul, VfioMigrationState.PreCopy)]
    [InlineData(0x1ul, VfioMigrationState.PreCopyP2P)]
    [InlineData(0x3ul, VfioMigrationState.PreCopy)]
    [InlineData(0x3ul, VfioMigrationState.PreCopyP2P)]
    [InlineData(0x5ul, VfioMigrationState.RunningP2P)]
    [InlineData(0x5ul, VfioMigrationState.PreCopyP2P)]
    [InlineData(0x7ul, (VfioMigrationState)8)]
    [InlineData(0x7ul, (VfioMigrationState)0xFFFFFFFF)]
    public void UnsupportedOrInvalidTarget_IsEinval_StateUnchanged_spec_2_5(ulong caps, VfioMigrationState target)
    {
        using var d = DeviceIn((VfioMigrationFlags)caps, VfioMigrationState.Running);
        Assert.Equal(Errno.EINVAL, Assert.Throws<VfioException>(() => d.SetState(target)).Errno);
        Assert.Equal(VfioMigrationState.Running, d.State);
        Assert.Empty(d.Arcs);
    }

    [Fact]
    public void BlockedArc_StopCopyToPreCopy_IsEinval_AndKeepsTheSession_spec_2_5()
    {
        using var d = DeviceIn((VfioMigrationFlags)0x7, VfioMigrationState.Stop);
        var s = d.SetState(VfioMigrationState.StopCopy)!;
        d.ClearArcs();
        Assert.Equal(Errno.EINVAL, Assert.Throws<VfioException>(() => d.SetState(VfioMigrationState.PreCopy)).Errno);
        Assert.Equal(Errno.EINVAL, Assert.Throws<VfioException>(() => d.SetState(VfioMigrationState.PreCopyP2P)).Errno);
        Assert.Equal(VfioMigrationState.StopCopy, d.State);
        Assert.True(s.IsActive);
        Assert.Empty(d.Arcs);
    }

    [Fact]
    public void AHook_CanPutTheDeviceIntoError_ThenOnlyErrorToErrorSucceeds_UntilReset_spec_3_3()
    {
        using var d = DeviceIn((VfioMigrationFlags)0x7, VfioMigrationState.Running);
        var saving = d.SetState(VfioMigrationState.PreCopy)!;
        d.FailWhen = a => a.From == VfioMigrationState.PreCopyP2P && a.To == VfioMigrationState.StopCopy;
        d.FailToError = true;
        d.FailErrno = Errno.EIO;
        Assert.Equal(Errno.EIO, Assert.Throws<VfioException>(() => d.SetState(VfioMigrationState.StopCopy)).Errno);
        Assert.Equal(VfioMigrationState.Error, d.State);
        Assert.False(saving.IsActive);
        Assert.Null(d.CurrentSession);
        d.FailWhen = null;

        foreach (var target in SpecFiles.AllStates.Where(s => s != VfioMigrationState.Error))
        {
            Assert.Equal(Errno.EINVAL, Assert.Throws<VfioException>(() => d.SetState(target)).Errno);
            Assert.Equal(VfioMigrationState.Error, d.State);
        }
        d.ClearArcs();
        Assert.Null(d.SetState(VfioMigrationState.Error)); // spec §2.4: ERROR→ERROR is a successful no-op
        Assert.Empty(d.Arcs);
        Assert.Equal(VfioMigrationState.Error, d.State);

        d.Reset();
        Assert.Equal(VfioMigrationState.Running, d.State);
        Assert.NotNull(d.SetState(VfioMigrationState.PreCopy));
    }

    [Fact]
    public void AFailingHook_WithoutErrorRequest_DoesNotEnterError_spec_3_3()
    {
        using var d = DeviceIn((VfioMigrationFlags)0x3, VfioMigrationState.Stop);
        d.SetState(VfioMigrationState.Resuming);
        d.FailWhen = a => a.From == VfioMigrationState.Resuming;
        d.FailErrno = Errno.EINVAL;
        Assert.Equal(Errno.EINVAL, Assert.Throws<VfioException>(() => d.SetState(VfioMigrationState.Running)).Errno);
        Assert.Equal(VfioMigrationState.Resuming, d.State);
        Assert.NotNull(d.CurrentSession);
        Assert.True(d.CurrentSession!.IsActive); // spec §4.3: the resuming stream stays usable after a failed RESUMING→STOP
    }

    [Fact]
    public void AHookFailingWithoutAnErrno_IsReportedAsEio_spec_3_1()
    {
        using var d = DeviceIn((VfioMigrationFlags)0x7, VfioMigrationState.Running);
        d.FailWhen = a => a.To == VfioMigrationState.Stop;
        d.FailWithPlainException = true;
        var e = Assert.Throws<VfioException>(() => d.SetState(VfioMigrationState.StopCopy));
        Assert.Equal(Errno.EIO, e.Errno);
        Assert.IsType<InvalidOperationException>(e.InnerException);
        Assert.Equal(VfioMigrationState.RunningP2P, d.State);
    }

    [Fact]
    public void ErrorRequest_FromAnEarlierFailedHook_DoesNotLeakIntoTheNextArc_spec_3_3()
    {
        using var d = DeviceIn((VfioMigrationFlags)0x1, VfioMigrationState.Running);
        d.FailWhen = a => a.To == VfioMigrationState.Stop;
        d.FailToError = false;
        Assert.Throws<VfioException>(() => d.SetState(VfioMigrationState.Stop));
        Assert.Equal(VfioMigrationState.Running, d.State);
        d.FailWhen = null;
        d.SetState(VfioMigrationState.StopCopy);
        Assert.Equal(VfioMigrationState.StopCopy, d.State);
    }

    [Fact]
    public void ReadingState_InsideAHookOrArcCommittedHandler_DoesNotDeadlock()
    {
        using var d = DeviceIn((VfioMigrationFlags)0x7, VfioMigrationState.Running);
        var seenInHooks = new List<VfioMigrationState>();
        var seenCommitted = new List<VfioMigrationState>();
        d.InsideHook = _ => seenInHooks.Add(d.State);
        d.ArcCommitted += (_, _) => seenCommitted.Add(d.State);
        d.SetState(VfioMigrationState.StopCopy);
        Assert.Equal(new[] { VfioMigrationState.Running, VfioMigrationState.RunningP2P, VfioMigrationState.Stop }, seenInHooks);
        Assert.Equal(new[] { VfioMigrationState.RunningP2P, VfioMigrationState.Stop, VfioMigrationState.StopCopy }, seenCommitted);
    }

    [Fact]
    public void ArcCommitted_IsRaisedOncePerCommittedArc_InOrder_spec_2_4()
    {
        using var d = DeviceIn((VfioMigrationFlags)0x7, VfioMigrationState.PreCopy);
        var committed = new List<MigrationArc>();
        d.ArcCommitted += (_, a) => committed.Add(a);
        d.SetState(VfioMigrationState.Resuming);
        Assert.Equal(MigrationStateMachine.GetPath(VfioMigrationState.PreCopy, VfioMigrationState.Resuming, (VfioMigrationFlags)0x7).Arcs, committed);
    }

    [Theory]
    [InlineData(0x0ul)]
    [InlineData(0x2ul)]
    [InlineData(0x4ul)]
    [InlineData(0x6ul)]
    [InlineData(0xFul)]
    public void Constructor_RejectsUndefinedCaps_spec_1_2(ulong caps)
        => Assert.Throws<ArgumentException>(() => new RecordingDevice((VfioMigrationFlags)caps));

    [Fact]
    public void NewDevice_IsRunning_WithNoSession_spec_3_4()
    {
        using var d = new RecordingDevice((VfioMigrationFlags)0x7);
        Assert.Equal(VfioMigrationState.Running, d.State);
        Assert.Null(d.CurrentSession);
        Assert.Equal((VfioMigrationFlags)0x7, d.Capabilities);
    }
}
