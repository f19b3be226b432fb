using CsCheck;
using Vfio.Migration;
using Vfio.Tests.TestSupport;

namespace Vfio.Tests.Fsm;

// spec §9 (what the FSM checking script verifies) and §2.3/§2.5/§2.8, as CsCheck properties. The domain
// for the defined caps is small, so most properties are also checked exhaustively alongside the samples.
public class StateMachinePropertyTests
{
    private static readonly Gen<VfioMigrationFlags> s_definedCaps = Gen.OneOf(SpecFiles.DefinedCaps);
    private static readonly Gen<VfioMigrationState> s_state = Gen.Enum<VfioMigrationState>();
    private static readonly Gen<VfioMigrationState> s_anyStateValue = Gen.UInt[0, 12].Select(v => (VfioMigrationState)v);
    private static readonly Gen<VfioMigrationFlags> s_anyCaps = Gen.Frequency(
        (3, (IGen<VfioMigrationFlags>)Gen.ULong[0, 15].Select(v => (VfioMigrationFlags)v)),
        (1, Gen.ULong.Select(v => (VfioMigrationFlags)v)));

    [Fact]
    public void EveryPath_UsesOnlyLegalSingleArcsOfItsCaps_spec_9_5()
        => Gen.Select(s_definedCaps, s_state, s_state).Sample((caps, from, to) =>
        {
            var path = MigrationStateMachine.GetPath(from, to, caps);
            var legal = MigrationStateMachine.LegalArcs(caps).ToHashSet();
            foreach (var arc in path.Arcs)
                Assert.Contains(arc, legal);
            if (path.Kind == MigrationPathKind.Arcs)
            {
                Assert.Equal(from, path.States[0]);
                Assert.Equal(to, path.States[^1]);
            }
        }, iter: 2000, threads: 1, seed: CsCheckSeeds.Fsm);

    [Fact]
    public void SavingGroupStatesOrResuming_AreNeverInterior_UnlessThePathStaysInTheSavingGroup_spec_2_8()
    {
        void Check(VfioMigrationFlags caps, VfioMigrationState from, VfioMigrationState to)
        {
            var path = MigrationStateMachine.GetPath(from, to, caps);
            Assert.True(IsSelectable(path.States), $"{path} (caps {MigrationStateMachine.FormatCaps(caps)}) has a saving-group or RESUMING state inside");
        }
        ForAllDefined(Check);
        Gen.Select(s_definedCaps, s_state, s_state).Sample(Check, iter: 2000, threads: 1, seed: CsCheckSeeds.Fsm);
        // The only interior saving-group state in the whole table is PRE_COPY_P2P on PRE_COPY→STOP_COPY (caps 0x7).
        Assert.Equal("PRE_COPY>PRE_COPY_P2P>STOP_COPY", MigrationStateMachine.GetPath(VfioMigrationState.PreCopy, VfioMigrationState.StopCopy, (VfioMigrationFlags)0x7).ToString());
    }

    // The selection rule: interior states are never RESUMING, and never in the saving group unless the
    // path starts and ends in the saving group (a move within one continuous saving stream).
    private static bool IsSelectable(IReadOnlyList<VfioMigrationState> states)
    {
        if (states.Count < 3)
            return true;
        bool withinSaving = MigrationStateMachine.IsSaving(states[0]) && MigrationStateMachine.IsSaving(states[^1]);
        for (int i = 1; i < states.Count - 1; i++)
        {
            if (states[i] == VfioMigrationState.Resuming)
                return false;
            if (MigrationStateMachine.IsSaving(states[i]) != withinSaving)
                return false;
        }
        return true;
    }

    [Fact]
    public void EveryPath_IsAShortestPathInTheArcGraph_AndTheUniqueSelectableOne_spec_9_5()
    {
        int pairsWithSeveralShortest = 0;
        ForAllDefined((caps, from, to) =>
        {
            var path = MigrationStateMachine.GetPath(from, to, caps);
            if (path.Kind != MigrationPathKind.Arcs)
                return;
            var shortest = AllShortestPaths(caps, from, to);
            Assert.NotEmpty(shortest);
            Assert.Equal(shortest[0].Count, path.States.Count);
            var clean = shortest.Where(IsSelectable).ToList();
            Assert.Single(clean);
            Assert.Equal(clean[0], path.States);
            if (caps == (VfioMigrationFlags)0x7 && shortest.Count > 1)
                pairsWithSeveralShortest++;
        });
        // spec §2.8: with caps 0x7, 12 pairs have several equally short paths (e.g. PRE_COPY→STOP).
        Assert.Equal(12, pairsWithSeveralShortest);
        Assert.Equal(3, AllShortestPaths((VfioMigrationFlags)0x7, VfioMigrationState.PreCopy, VfioMigrationState.Stop).Count);
    }

    [Fact]
    public void Error_IsNeverRequestable_spec_2_5()
        => Gen.Select(s_anyCaps, s_state).Sample((caps, from) =>
        {
            Assert.Equal(Errno.EINVAL, MigrationStateMachine.TryGetNextState(from, VfioMigrationState.Error, caps, out _));
            if (from != VfioMigrationState.Error)
                Assert.False(MigrationStateMachine.GetPath(from, VfioMigrationState.Error, caps).Succeeds);
            foreach (var f in SpecFiles.AllStates)
            {
                foreach (var t in SpecFiles.AllStates)
                {
                    if (MigrationStateMachine.TryGetNextState(f, t, caps, out var next) == Errno.None)
                        Assert.NotEqual(VfioMigrationState.Error, next);
                }
            }
        }, iter: 500, threads: 1, seed: CsCheckSeeds.Fsm);

    [Fact]
    public void BlockedArcs_StopCopyToPreCopy_GiveEinvalAndTerminate_ForEveryCaps_spec_2_3_fix()
        => s_anyCaps.Sample(caps =>
        {
            // The 2026 fix: the skip rule stops at the ERROR sentinel, so these calls return instead of spinning.
            Assert.Equal(Errno.EINVAL, MigrationStateMachine.TryGetNextState(VfioMigrationState.StopCopy, VfioMigrationState.PreCopy, caps, out _));
            Assert.Equal(Errno.EINVAL, MigrationStateMachine.TryGetNextState(VfioMigrationState.StopCopy, VfioMigrationState.PreCopyP2P, caps, out _));
            var p1 = MigrationStateMachine.GetPath(VfioMigrationState.StopCopy, VfioMigrationState.PreCopy, caps);
            var p2 = MigrationStateMachine.GetPath(VfioMigrationState.StopCopy, VfioMigrationState.PreCopyP2P, caps);
            Assert.False(p1.Succeeds);
            Assert.False(p2.Succeeds);
            if (MigrationStateMachine.IsSupported(VfioMigrationState.StopCopy, caps))
            {
                Assert.Equal(MigrationPathKind.Rejected, p1.Kind);
                Assert.Equal(MigrationPathKind.Rejected, p2.Kind);
            }
        }, iter: 1000, threads: 1, seed: CsCheckSeeds.Fsm);

    [Fact]
    public void SkipRule_NeverYieldsAnUnsupportedState_spec_2_3()
        => Gen.Select(s_anyCaps, s_anyStateValue, s_anyStateValue).Sample((caps, from, to) =>
        {
            var rc = MigrationStateMachine.TryGetNextState(from, to, caps, out var next);
            if (rc == Errno.None)
            {
                Assert.True(MigrationStateMachine.IsSupported(next, caps));
                Assert.True(MigrationStateMachine.IsSupported(from, caps));
                Assert.True(MigrationStateMachine.IsSupported(to, caps));
            }
            else
            {
                Assert.Equal(Errno.EINVAL, rc);
            }
        }, iter: 5000, threads: 1, seed: CsCheckSeeds.Fsm);

    [Fact]
    public void TargetsAtOrAbove8_AreRejected_spec_2_5()
        => Gen.Select(s_definedCaps, s_state, Gen.UInt[8, uint.MaxValue]).Sample((caps, from, raw) =>
        {
            Assert.Equal(Errno.EINVAL, MigrationStateMachine.TryGetNextState(from, (VfioMigrationState)raw, caps, out _));
            Assert.False(MigrationStateMachine.GetPath(from, (VfioMigrationState)raw, caps).Succeeds);
        }, iter: 1000, threads: 1, seed: CsCheckSeeds.Fsm);

    [Fact]
    public void UnsupportedTargets_AreRejected_spec_2_5()
        => ForAllDefined((caps, from, to) =>
        {
            if (from == VfioMigrationState.Error || !MigrationStateMachine.IsSupported(from, caps))
                return;
            var path = MigrationStateMachine.GetPath(from, to, caps);
            if (!MigrationStateMachine.IsSupported(to, caps))
                Assert.Equal(MigrationPathKind.Rejected, path.Kind);
        });

    [Fact]
    public void RequestingTheCurrentState_IsSame_NoArcs_spec_2_4()
        => ForAllDefined((caps, from, _) =>
        {
            var path = MigrationStateMachine.GetPath(from, from, caps);
            if (!MigrationStateMachine.IsSupported(from, caps) && from != VfioMigrationState.Error)
                Assert.Equal(MigrationPathKind.NotApplicable, path.Kind);
            else
                Assert.Equal(MigrationPathKind.Same, path.Kind);
            Assert.Empty(path.Arcs);
        });

    [Fact]
    public void OnlyTheLastArc_OfAPath_MayOpenASession_spec_2_4()
        => ForAllDefined((caps, from, to) =>
        {
            var arcs = MigrationStateMachine.GetPath(from, to, caps).Arcs.ToList();
            for (int i = 0; i < arcs.Count - 1; i++)
                Assert.False(MigrationStateMachine.GetSessionEffect(arcs[i]) is DataSessionEffect.OpensSaving or DataSessionEffect.OpensResuming, $"{arcs[i]} opens a session mid-path");
        });

    [Fact]
    public void EveryInteriorState_CanUnwindToThePathsOrigin_spec_9_6()
    {
        // The "error unwind study": a device left in an interior state by a failed arc can always be
        // requested back to where the SET started, so no multi-arc request strands it.
        int interiors = 0;
        ForAllDefined((caps, from, to) =>
        {
            var states = MigrationStateMachine.GetPath(from, to, caps).States;
            for (int i = 1; i < states.Count - 1; i++)
            {
                interiors++;
                var back = MigrationStateMachine.GetPath(states[i], from, caps);
                Assert.True(back.Kind == MigrationPathKind.Arcs, $"{states[i]} -> {from}: {back}");
            }
        });
        Assert.True(interiors > 0);
    }

    [Fact]
    public void EveryCombinationPath_FollowsTheTableWithoutHittingError_spec_9_3()
        => ForAllDefined((caps, from, to) =>
        {
            var path = MigrationStateMachine.GetPath(from, to, caps);
            if (path.Kind != MigrationPathKind.Arcs)
                return;
            for (int i = 0; i < path.States.Count - 1; i++)
            {
                Assert.Equal(Errno.None, MigrationStateMachine.TryGetNextState(path.States[i], to, caps, out var next));
                Assert.Equal(path.States[i + 1], next);
                Assert.NotEqual(VfioMigrationState.Error, next);
            }
            Assert.True(path.States.Distinct().Count() == path.States.Count, $"{path} repeats a state");
        });

    [Fact]
    public void RawTableRows_ForCaps7_MatchSpec_2_2()
    {
        // Row = from, columns in enum order; cell = first step (ERROR = sentinel / rejection).
        string[] rows =
        [
            "ERROR ERROR ERROR ERROR ERROR ERROR ERROR ERROR",
            "ERROR STOP RUNNING_P2P STOP_COPY RESUMING RUNNING_P2P RUNNING_P2P RUNNING_P2P",
            "ERROR RUNNING_P2P RUNNING RUNNING_P2P RUNNING_P2P RUNNING_P2P PRE_COPY RUNNING_P2P",
            "ERROR STOP STOP STOP_COPY STOP STOP ERROR ERROR",
            "ERROR STOP STOP STOP RESUMING STOP STOP STOP",
            "ERROR STOP RUNNING STOP STOP RUNNING_P2P RUNNING PRE_COPY_P2P",
            "ERROR RUNNING RUNNING PRE_COPY_P2P RUNNING RUNNING PRE_COPY PRE_COPY_P2P",
            "ERROR RUNNING_P2P RUNNING_P2P STOP_COPY RUNNING_P2P RUNNING_P2P PRE_COPY PRE_COPY_P2P",
        ];
        var caps = (VfioMigrationFlags)0x7;
        foreach (var from in SpecFiles.AllStates)
        {
            var cells = rows[(int)from].Split(' ');
            foreach (var to in SpecFiles.AllStates)
            {
                string got;
                if (from == to && from != VfioMigrationState.Error)
                    got = MigrationStateMachine.Name(from);
                else
                    got = MigrationStateMachine.TryGetNextState(from, to, caps, out var next) == Errno.None ? MigrationStateMachine.Name(next) : "ERROR";
                Assert.True(cells[(int)to] == got, $"table[{MigrationStateMachine.Name(from)}][{MigrationStateMachine.Name(to)}] = {got}, spec says {cells[(int)to]}");
            }
        }
    }

    private static void ForAllDefined(Action<VfioMigrationFlags, VfioMigrationState, VfioMigrationState> check)
    {
        foreach (var caps in SpecFiles.DefinedCaps)
        {
            foreach (var from in SpecFiles.AllStates)
            {
                foreach (var to in SpecFiles.AllStates)
                    check(caps, from, to);
            }
        }
    }

    // Every shortest path from → to in the graph of legal arcs (BFS layers, then enumeration).
    private static List<List<VfioMigrationState>> AllShortestPaths(VfioMigrationFlags caps, VfioMigrationState from, VfioMigrationState to)
    {
        var arcs = MigrationStateMachine.LegalArcs(caps);
        var dist = new Dictionary<VfioMigrationState, int> { [from] = 0 };
        var queue = new Queue<VfioMigrationState>([from]);
        while (queue.Count > 0)
        {
            var s = queue.Dequeue();
            foreach (var a in arcs.Where(a => a.From == s))
            {
                if (dist.TryAdd(a.To, dist[s] + 1))
                    queue.Enqueue(a.To);
            }
        }
        var result = new List<List<VfioMigrationState>>();
        if (!dist.TryGetValue(to, out int length))
            return result;

        void Walk(List<VfioMigrationState> prefix)
        {
            var last = prefix[^1];
            if (prefix.Count - 1 == length)
            {
                if (last == to)
                    result.Add([.. prefix]);
                return;
            }
            foreach (var a in arcs.Where(a => a.From == last && dist.TryGetValue(a.To, out int d) && d == prefix.Count))
            {
                prefix.Add(a.To);
                Walk(prefix);
                prefix.RemoveAt(prefix.Count - 1);
            }
        }
        Walk([from]);
        return result;
    }
}
