using CsCheck;
using Vfio.Device;
using Vfio.Migration;
using Vfio.Tests.TestSupport;

namespace Vfio.Tests.Fsm;

// spec §2.4, §2.7, §3.3, §3.4: random walks of the device-side engine checked against a model built only
// from MigrationStateMachine (GetPath + GetSessionEffect). Operations: SET any value 0..8, SET with an
// injected failure at arc k (optionally into ERROR), and reset.
public class MigrationDeviceModelTests
{
    public readonly record struct Op(int Kind, uint Target, int FailAt, bool ToError)
    {
        public override string ToString() => Kind switch
        {
            0 => "RESET",
            1 => $"SET {MigrationStateMachine.Name((VfioMigrationState)Target)} failing arc {FailAt}{(ToError ? " into ERROR" : "")}",
            _ => $"SET {MigrationStateMachine.Name((VfioMigrationState)Target)}",
        };
    }

    private static readonly Gen<Op> s_op = Gen.Select(Gen.Int[0, 9], Gen.UInt[0, 8], Gen.Int[0, 3], Gen.Bool)
        .Select((k, t, f, e) => new Op(k == 0 ? 0 : k == 1 ? 1 : 2, t, f, e));

    [Fact]
    public void RandomWalks_MatchTheModel_spec_2_4()
        => Gen.Select(Gen.OneOf(SpecFiles.DefinedCaps), s_op.Array[1, 40]).Sample((caps, ops) =>
        {
            using var device = new RecordingDevice(caps) { FailErrno = Errno.EIO };
            var modelState = VfioMigrationState.Running;
            DataSessionKind? modelSession = null;
            var handedOut = new List<DataSession>();

            foreach (var op in ops)
            {
                device.FailWhen = null;
                device.FailToError = false;
                device.ClearArcs();
                if (op.Kind == 0)
                {
                    device.Reset();
                    modelState = VfioMigrationState.Running;
                    modelSession = null;
                }
                else
                {
                    var target = (VfioMigrationState)op.Target;
                    var path = MigrationStateMachine.GetPath(modelState, target, caps);
                    var arcs = path.Arcs.ToList();
                    bool inject = op.Kind == 1 && op.FailAt < arcs.Count;
                    if (inject)
                    {
                        var failing = arcs[op.FailAt];
                        int seen = 0;
                        // Fail the FailAt-th arc of this SET (arcs may repeat only across SETs, so index by count).
                        device.FailWhen = a => seen++ == op.FailAt;
                        device.FailToError = op.ToError;
                        var e = Assert.Throws<VfioException>(() => device.SetState(target));
                        Assert.Equal(Errno.EIO, e.Errno);
                        foreach (var arc in arcs.Take(op.FailAt))
                            modelSession = Apply(arc, modelSession);
                        if (op.ToError)
                        {
                            modelState = VfioMigrationState.Error;
                            modelSession = null;
                        }
                        else
                        {
                            modelState = failing.From;
                        }
                        Assert.Equal(arcs.Take(op.FailAt), device.Arcs);
                    }
                    else if (!path.Succeeds)
                    {
                        Assert.Equal(Errno.EINVAL, Assert.Throws<VfioException>(() => device.SetState(target)).Errno);
                        Assert.Empty(device.Arcs);
                    }
                    else
                    {
                        var returned = device.SetState(target);
                        Assert.Equal(arcs, device.Arcs);
                        bool opens = false;
                        foreach (var arc in arcs)
                        {
                            modelSession = Apply(arc, modelSession);
                            opens = MigrationStateMachine.GetSessionEffect(arc) is DataSessionEffect.OpensSaving or DataSessionEffect.OpensResuming;
                        }
                        modelState = target;
                        if (opens)
                        {
                            Assert.NotNull(returned);
                            handedOut.Add(returned);
                        }
                        else
                        {
                            Assert.Null(returned);
                        }
                    }
                }

                Assert.Equal(modelState, device.State);
                Assert.Equal(modelSession, device.CurrentSession?.Kind);
                // Only the current session is alive; every earlier one is terminated for good.
                foreach (var s in handedOut)
                    Assert.Equal(ReferenceEquals(s, device.CurrentSession), s.IsActive);
                if (device.CurrentSession is { } current)
                    Assert.Contains(current, handedOut);
            }
            Assert.False(device.OverlapSeen);
        }, iter: 400, threads: 1, seed: CsCheckSeeds.Device);

    private static DataSessionKind? Apply(MigrationArc arc, DataSessionKind? session) => MigrationStateMachine.GetSessionEffect(arc) switch
    {
        DataSessionEffect.OpensSaving => DataSessionKind.Saving,
        DataSessionEffect.OpensResuming => DataSessionKind.Resuming,
        DataSessionEffect.EndsSession => null,
        _ => session,
    };
}
