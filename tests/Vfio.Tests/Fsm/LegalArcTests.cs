using Vfio.Migration;
using Vfio.Tests.TestSupport;

namespace Vfio.Tests.Fsm;

// spec §2.6 (legal arcs), §2.7 (session effects), §2.8 (properties of the table), §2.2 (raw table).
public class LegalArcTests
{
    private const VfioMigrationFlags C1 = VfioMigrationFlags.StopCopy;
    private const VfioMigrationFlags C3 = VfioMigrationFlags.StopCopy | VfioMigrationFlags.P2P;
    private const VfioMigrationFlags C5 = VfioMigrationFlags.StopCopy | VfioMigrationFlags.PreCopy;
    private const VfioMigrationFlags C7 = C3 | VfioMigrationFlags.PreCopy;

    private static readonly string[] s_arcs1 = ["STOP>RUNNING", "RUNNING>STOP", "STOP>STOP_COPY", "STOP_COPY>STOP", "STOP>RESUMING", "RESUMING>STOP"];

    private static readonly string[] s_arcs3 =
        ["RUNNING>RUNNING_P2P", "RUNNING_P2P>RUNNING", "RUNNING_P2P>STOP", "STOP>RUNNING_P2P", "STOP>STOP_COPY", "STOP_COPY>STOP", "STOP>RESUMING", "RESUMING>STOP"];

    private static readonly string[] s_arcs5 = [.. s_arcs1, "RUNNING>PRE_COPY", "PRE_COPY>RUNNING", "PRE_COPY>STOP_COPY"];

    private static readonly string[] s_arcs7 =
    [
        .. s_arcs3, "RUNNING>PRE_COPY", "PRE_COPY>RUNNING", "PRE_COPY>PRE_COPY_P2P", "PRE_COPY_P2P>PRE_COPY",
        "PRE_COPY_P2P>RUNNING_P2P", "PRE_COPY_P2P>STOP_COPY", "RUNNING_P2P>PRE_COPY_P2P",
    ];

    public static TheoryData<ulong, int, string[]> Expected => new()
    {
        { (ulong)C1, 6, s_arcs1 },
        { (ulong)C3, 8, s_arcs3 },
        { (ulong)C5, 9, s_arcs5 },
        { (ulong)C7, 15, s_arcs7 },
    };

    [Theory]
    [MemberData(nameof(Expected))]
    public void LegalArcs_CountAndExactList_spec_2_6(ulong caps, int count, string[] arcs)
    {
        var legal = MigrationStateMachine.LegalArcs((VfioMigrationFlags)caps).Select(a => a.ToString()).ToList();
        Assert.Equal(count, legal.Count);
        Assert.Equal(arcs.Order(StringComparer.Ordinal), legal.Order(StringComparer.Ordinal));
        Assert.Equal(count, legal.Distinct().Count());
    }

    [Fact]
    public void Caps3_DoesNotUseRunningStopDirectly_spec_2_6()
    {
        Assert.False(MigrationStateMachine.IsLegalArc(new(VfioMigrationState.Running, VfioMigrationState.Stop), C3));
        Assert.False(MigrationStateMachine.IsLegalArc(new(VfioMigrationState.Stop, VfioMigrationState.Running), C3));
        Assert.True(MigrationStateMachine.IsLegalArc(new(VfioMigrationState.Running, VfioMigrationState.Stop), C1));
    }

    [Fact]
    public void RunningToStop_WithCaps1_IsOneArc_ByTheSkipRule_spec_2_3()
    {
        // The table says RUNNING_P2P, which is skipped because table[RUNNING_P2P][STOP] = STOP.
        Assert.Equal(Errno.None, MigrationStateMachine.TryGetNextState(VfioMigrationState.Running, VfioMigrationState.Stop, C1, out var next));
        Assert.Equal(VfioMigrationState.Stop, next);
        Assert.Equal("RUNNING>STOP", MigrationStateMachine.GetPath(VfioMigrationState.Running, VfioMigrationState.Stop, C1).ToString());
        Assert.Equal("RUNNING>RUNNING_P2P>STOP", MigrationStateMachine.GetPath(VfioMigrationState.Running, VfioMigrationState.Stop, C7).ToString());
    }

    [Fact]
    public void Caps7_Has25CombinationTransitions_And2NonTrivialBlockedPairs_spec_2_8()
    {
        int arcs = 0, combinations = 0, blocked = 0;
        foreach (var from in SpecFiles.AllStates.Where(s => s != VfioMigrationState.Error))
        {
            foreach (var to in SpecFiles.AllStates.Where(s => s != VfioMigrationState.Error && s != from))
            {
                var path = MigrationStateMachine.GetPath(from, to, C7);
                if (path.Kind == MigrationPathKind.Rejected)
                    blocked++;
                else if (path.States.Count == 2)
                    arcs++;
                else
                    combinations++;
            }
        }
        Assert.Equal(15, arcs);
        Assert.Equal(25, combinations);
        Assert.Equal(2, blocked);
    }

    [Theory] // spec §2.7: the fd effect of every arc
    [InlineData(VfioMigrationState.Stop, VfioMigrationState.StopCopy, DataSessionEffect.OpensSaving)]
    [InlineData(VfioMigrationState.Running, VfioMigrationState.PreCopy, DataSessionEffect.OpensSaving)]
    [InlineData(VfioMigrationState.RunningP2P, VfioMigrationState.PreCopyP2P, DataSessionEffect.OpensSaving)]
    [InlineData(VfioMigrationState.Stop, VfioMigrationState.Resuming, DataSessionEffect.OpensResuming)]
    [InlineData(VfioMigrationState.PreCopy, VfioMigrationState.PreCopyP2P, DataSessionEffect.ContinuesSaving)]
    [InlineData(VfioMigrationState.PreCopyP2P, VfioMigrationState.PreCopy, DataSessionEffect.ContinuesSaving)]
    [InlineData(VfioMigrationState.PreCopyP2P, VfioMigrationState.StopCopy, DataSessionEffect.ContinuesSaving)]
    [InlineData(VfioMigrationState.PreCopy, VfioMigrationState.StopCopy, DataSessionEffect.ContinuesSaving)]
    [InlineData(VfioMigrationState.StopCopy, VfioMigrationState.Stop, DataSessionEffect.EndsSession)]
    [InlineData(VfioMigrationState.PreCopy, VfioMigrationState.Running, DataSessionEffect.EndsSession)]
    [InlineData(VfioMigrationState.PreCopyP2P, VfioMigrationState.RunningP2P, DataSessionEffect.EndsSession)]
    [InlineData(VfioMigrationState.Resuming, VfioMigrationState.Stop, DataSessionEffect.EndsSession)]
    [InlineData(VfioMigrationState.Running, VfioMigrationState.RunningP2P, DataSessionEffect.None)]
    [InlineData(VfioMigrationState.RunningP2P, VfioMigrationState.Running, DataSessionEffect.None)]
    [InlineData(VfioMigrationState.RunningP2P, VfioMigrationState.Stop, DataSessionEffect.None)]
    [InlineData(VfioMigrationState.Stop, VfioMigrationState.RunningP2P, DataSessionEffect.None)]
    [InlineData(VfioMigrationState.Running, VfioMigrationState.Stop, DataSessionEffect.None)]
    [InlineData(VfioMigrationState.Stop, VfioMigrationState.Running, DataSessionEffect.None)]
    public void SessionEffect_OfEveryArc_spec_2_7(VfioMigrationState from, VfioMigrationState to, DataSessionEffect effect)
        => Assert.Equal(effect, MigrationStateMachine.GetSessionEffect(new MigrationArc(from, to)));

    [Fact]
    public void EveryLegalArc_HasASessionEffectRow_AndOnlyFourArcsOpenASession_spec_2_7()
    {
        var opening = MigrationStateMachine.LegalArcs(C7).Concat(MigrationStateMachine.LegalArcs(C5)).Distinct()
            .Where(a => MigrationStateMachine.GetSessionEffect(a) is DataSessionEffect.OpensSaving or DataSessionEffect.OpensResuming)
            .Select(a => a.ToString()).Order(StringComparer.Ordinal);
        Assert.Equal(new[] { "RUNNING>PRE_COPY", "RUNNING_P2P>PRE_COPY_P2P", "STOP>RESUMING", "STOP>STOP_COPY" }, opening);
    }

    [Fact]
    public void StateNamesAndValues_spec_1_1()
    {
        string[] names = ["ERROR", "STOP", "RUNNING", "STOP_COPY", "RESUMING", "RUNNING_P2P", "PRE_COPY", "PRE_COPY_P2P"];
        for (uint i = 0; i < names.Length; i++)
        {
            Assert.Equal(names[i], MigrationStateMachine.Name((VfioMigrationState)i));
            Assert.True(MigrationStateMachine.TryParse(names[i], out var s));
            Assert.Equal((VfioMigrationState)i, s);
        }
        Assert.Equal(8u, MigrationStateMachine.StateCount);
        Assert.False(MigrationStateMachine.IsValid((VfioMigrationState)8));
        Assert.False(MigrationStateMachine.TryParse("8", out _));
    }

    [Theory] // spec §2.1: need() per state
    [InlineData(VfioMigrationState.Stop, 0x1ul)]
    [InlineData(VfioMigrationState.Running, 0x1ul)]
    [InlineData(VfioMigrationState.StopCopy, 0x1ul)]
    [InlineData(VfioMigrationState.Resuming, 0x1ul)]
    [InlineData(VfioMigrationState.RunningP2P, 0x3ul)]
    [InlineData(VfioMigrationState.PreCopy, 0x5ul)]
    [InlineData(VfioMigrationState.PreCopyP2P, 0x7ul)]
    [InlineData(VfioMigrationState.Error, 0xFFFFFFFFul)]
    public void RequiredFlags_spec_2_1(VfioMigrationState state, ulong need)
        => Assert.Equal(need, MigrationStateMachine.RequiredFlags(state));

    [Fact]
    public void Error_IsNeverSupported_EvenWithAllBits_spec_2_1()
    {
        Assert.False(MigrationStateMachine.IsSupported(VfioMigrationState.Error, (VfioMigrationFlags)ulong.MaxValue));
        Assert.True(MigrationStateMachine.IsSupported(VfioMigrationState.PreCopyP2P, (VfioMigrationFlags)ulong.MaxValue));
        Assert.False(MigrationStateMachine.IsSupported((VfioMigrationState)8, (VfioMigrationFlags)ulong.MaxValue));
    }
}
