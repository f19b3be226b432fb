using Vfio.Migration;
using Vfio.Tests.TestSupport;

namespace Vfio.Tests.Device;

// spec §3.4 and §8.1 (locking): SETs serialise under the state lock; a reset racing a SET is deferred and
// applied before the SET returns. No test here asserts on time; gates make the interleavings explicit.
public class ConcurrencyTests
{
    private const VfioMigrationFlags All = (VfioMigrationFlags)0x7;

    [Fact]
    public void ConcurrentSets_Serialise_NoInterleavedArcs_spec_2_4()
    {
        using var d = new RecordingDevice(All);
        // Widen the window inside every hook so an unserialised engine would overlap hooks.
        d.InsideHook = _ =>
        {
            for (int i = 0; i < 20; i++)
                Thread.Yield();
        };
        VfioMigrationState[][] scripts =
        [
            [VfioMigrationState.StopCopy, VfioMigrationState.Running, VfioMigrationState.PreCopy, VfioMigrationState.Stop],
            [VfioMigrationState.Resuming, VfioMigrationState.RunningP2P, VfioMigrationState.PreCopyP2P, VfioMigrationState.Running],
            [VfioMigrationState.Stop, VfioMigrationState.PreCopy, VfioMigrationState.StopCopy, VfioMigrationState.Running],
        ];
        using var start = new Barrier(scripts.Length);
        var threads = scripts.Select(script => new Thread(() =>
        {
            start.SignalAndWait(TestContext.Current.CancellationToken);
            for (int round = 0; round < 10; round++)
            {
                foreach (var target in script)
                {
                    try
                    {
                        d.SetState(target);
                    }
                    catch (VfioException e) when (e.Errno == Errno.EINVAL)
                    {
                        // STOP_COPY→PRE_COPY(_P2P) is blocked: a legitimate answer when another thread left the device in STOP_COPY.
                    }
                }
            }
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());

        Assert.False(d.OverlapSeen, "two arc hooks ran at the same time");
        var arcs = d.Arcs;
        Assert.NotEmpty(arcs);
        Assert.Equal(VfioMigrationState.Running, arcs[0].From);
        // Serialised SETs produce one chain: every arc starts where the previous one ended.
        for (int i = 1; i < arcs.Count; i++)
            Assert.True(arcs[i - 1].To == arcs[i].From, $"arc {i - 1} {arcs[i - 1]} then {arcs[i]}");
        Assert.Equal(arcs[^1].To, d.State);
        Assert.All(arcs, a => Assert.True(MigrationStateMachine.IsLegalArc(a, All), $"{a} is not a legal arc"));
    }

    [Fact]
    public void SetRacingAReset_TheResetIsAppliedBeforeTheSetReturns_spec_3_4()
    {
        using var d = new RecordingDevice(All);
        d.SetState(VfioMigrationState.Stop);
        using var inHook = new ManualResetEventSlim();
        using var gate = new ManualResetEventSlim();
        d.InsideHook = arc =>
        {
            if (arc.From == VfioMigrationState.Stop && arc.To == VfioMigrationState.StopCopy)
            {
                inHook.Set();
                gate.Wait(TestContext.Current.CancellationToken);
            }
        };
        Vfio.Device.DataSession? returned = null;
        Exception? failure = null;
        var setter = new Thread(() =>
        {
            try
            {
                returned = d.SetState(VfioMigrationState.StopCopy);
            }
            catch (Exception e)
            {
                failure = e;
            }
        });
        setter.Start();
        inHook.Wait(TestContext.Current.CancellationToken);

        // The SET holds the state lock inside its hook: the reset is deferred and returns at once.
        d.Reset();
        Assert.Equal(0, d.ResetCount);
        gate.Set();
        setter.Join();

        Assert.Null(failure);
        Assert.NotNull(returned);                           // the SET "succeeded" and returned its stream...
        Assert.Equal(VfioMigrationState.Running, d.State);  // ...yet the device is RUNNING afterwards
        Assert.False(returned!.IsActive);                   // and the stream is dead
        Assert.Equal(Errno.ENODEV, Assert.Throws<VfioException>(() => returned.Read(new byte[4])).Errno);
        Assert.Equal(1, d.ResetCount);
        Assert.Null(d.CurrentSession);
    }

    [Fact]
    public void ResetCalledFromInsideAHook_IsDeferredUntilTheSetFinishes_spec_3_4()
    {
        using var d = new RecordingDevice(All);
        d.InsideHook = arc =>
        {
            if (arc.To == VfioMigrationState.PreCopy)
                d.Reset();
        };
        var s = d.SetState(VfioMigrationState.PreCopy);
        Assert.NotNull(s);
        Assert.False(s.IsActive);
        Assert.Equal(VfioMigrationState.Running, d.State);
        Assert.Equal(new[] { new MigrationArc(VfioMigrationState.Running, VfioMigrationState.PreCopy) }, d.Arcs);
    }

    [Fact]
    public void ReadsRacingASessionEndingSet_EitherReadDataOrGetEnodev_NeverEof_spec_4_4()
    {
        using var d = new RecordingDevice(All);
        for (int round = 0; round < 50; round++)
        {
            d.SetState(VfioMigrationState.PreCopy);
            var s = d.CurrentSession!;
            d.SavingAvailable = 4096;
            using var go = new Barrier(2);
            int eofs = 0, others = 0;
            var reader = new Thread(() =>
            {
                go.SignalAndWait(TestContext.Current.CancellationToken);
                var buf = new byte[64];
                while (true)
                {
                    try
                    {
                        if (s.Read(buf) == 0)
                            eofs++;
                    }
                    catch (VfioException e) when (e.Errno == Errno.ENOMSG)
                    {
                        // temporary end of the pre-copy stream: keep polling until the SET ends the session
                    }
                    catch (VfioException e) when (e.Errno == Errno.ENODEV)
                    {
                        return;
                    }
                    catch (VfioException)
                    {
                        others++;
                        return;
                    }
                }
            });
            reader.Start();
            go.SignalAndWait(TestContext.Current.CancellationToken);
            d.SetState(VfioMigrationState.Running);
            reader.Join();
            Assert.Equal(0, eofs);
            Assert.Equal(0, others);
        }
    }
}
