using Vfio.Migration;

namespace Vfio.Conformance;

// Group fsm: every (from, to) request for the device's caps against MigrationStateMachine / fsm-paths.csv.
internal sealed partial class CheckRun
{
    private async Task RunFsmAsync(CancellationToken ct)
    {
        var legal = new Tally("fsm.legal-arcs");
        var paths = new Tally("fsm.paths");
        var trace = new Tally("fsm.arc-trace");
        var same = new Tally("fsm.same-state");
        var rejected = new Tally("fsm.rejections");
        var error = new Tally("fsm.error-unrequestable");

        // Leaving RESUMING needs a valid stream (RESUMING→STOP validates, §2.7). With --allow-destructive the
        // device's own saved stream is loaded first; otherwise the arc must fail on the empty stream.
        byte[]? resumeData = null;
        if (_options.AllowDestructive && MigrationStateMachine.IsSupported(Resuming, Caps))
        {
            var saved = await SaveAsync(_device, ct).ConfigureAwait(false);
            resumeData = saved.Error is null ? saved.Data : null;
        }

        for (uint f = 1; f < MigrationStateMachine.StateCount; f++)
        {
            var from = (VfioMigrationState)f;
            if (!MigrationStateMachine.IsSupported(from, Caps))
                continue;
            // Targets 0..7 plus one invalid value (VFIO_DEVICE_STATE_NR).
            for (uint t = 0; t <= MigrationStateMachine.StateCount; t++)
            {
                var to = (VfioMigrationState)t;
                var expected = MigrationStateMachine.GetPath(from, to, Caps);
                var tally = expected.Kind switch
                {
                    MigrationPathKind.Arcs => expected.States.Count == 2 ? legal : paths,
                    MigrationPathKind.Same => same,
                    _ => to == VfioMigrationState.Error ? error : rejected,
                };
                string label = $"{Name(from)}→{Name(to)}";
                tally.Checked++;
                Current(tally.RuleId);

                var setup = await DriveAsync(_device, from, ct).ConfigureAwait(false);
                if (setup.Error is not null)
                {
                    if (setup.BlockedBy is { } cause)
                    {
                        tally.Blocked++;
                        tally.BlockedBy ??= cause;
                        tally.BlockedWhy ??= $"{label}: {setup.Error} (see {cause})";
                    }
                    else
                    {
                        tally.Problems.Add($"{label}: {setup.Error}");
                    }
                    await LeaveAsync(_device, ct).ConfigureAwait(false);
                    continue;
                }
                var fromStream = setup.Stream;

                bool emptyResume = false;
                if (from == Resuming && expected.Kind == MigrationPathKind.Arcs)
                {
                    if (resumeData is not null && fromStream is not null)
                    {
                        var w = await WriteAsync(fromStream, resumeData, ct).ConfigureAwait(false);
                        if (!w.Ok)
                        {
                            tally.Problems.Add($"{label}: loading the device's own saved stream failed with {w.Describe()}");
                            await LeaveAsync(_device, ct).ConfigureAwait(false);
                            continue;
                        }
                    }
                    else
                    {
                        emptyResume = true;
                    }
                }

                var walked = new List<MigrationArc>();
                SetOutcome outcome;
                using (_trace?.SubscribeArcs(walked.Add))
                    outcome = await SetAsync(_device, to, ct).ConfigureAwait(false);
                var after = await GetAsync(_device, ct).ConfigureAwait(false);

                string? problem = emptyResume
                    ? CheckEmptyResume(outcome, after)
                    : CheckRequest(expected, from, to, outcome, after);
                if (problem is not null)
                    tally.Problems.Add($"{label}: {problem}");

                if (_trace is not null)
                {
                    trace.Checked++;
                    var want = expected.Kind == MigrationPathKind.Arcs && !emptyResume ? expected.Arcs.ToList() : [];
                    if (!walked.SequenceEqual(want))
                    {
                        string got = walked.Count == 0 ? "no arcs" : string.Join(", ", walked);
                        string exp = want.Count == 0 ? "no arcs" : expected.ToString();
                        trace.Problems.Add($"{label}: walked {got} instead of {exp}");
                    }
                }
                await LeaveAsync(_device, ct).ConfigureAwait(false);
            }
        }

        Conclude(legal, "single-arc requests");
        Conclude(paths, "multi-arc requests");
        if (_trace is null)
            Skip(trace.RuleId, "the transport does not report the arcs it walks (IMigrationArcTrace); only end states were checked");
        else
            Conclude(trace, "requests");
        Conclude(same, "same-state requests");
        Conclude(rejected, "rejected requests");
        Conclude(error, "ERROR requests");
    }

    // Leaving RESUMING with nothing loaded: the RESUMING→STOP arc must fail and the device stay in RESUMING (or ERROR).
    private static string? CheckEmptyResume(SetOutcome outcome, VfioMigrationState? after)
    {
        if (outcome.Ok)
            return $"succeeded although nothing was loaded (RESUMING→STOP must reject an empty stream); GET shows {Name(after)}";
        return after is Resuming or VfioMigrationState.Error
            ? null
            : $"failed with {outcome.Result.Describe()}, but GET shows {Name(after)} (expected RESUMING)";
    }

    // What is wrong with the answer to one request, or null.
    private static string? CheckRequest(MigrationPath expected, VfioMigrationState from, VfioMigrationState to, SetOutcome outcome, VfioMigrationState? after)
    {
        switch (expected.Kind)
        {
            case MigrationPathKind.Arcs:
                if (!outcome.Ok)
                    return $"expected {expected} to succeed, got {outcome.Result.Describe()}; GET shows {Name(after)}";
                if (after != to)
                    return $"succeeded but GET shows {Name(after)}";
                var effect = MigrationStateMachine.GetSessionEffect(expected.Arcs.Last());
                bool opens = effect is DataSessionEffect.OpensSaving or DataSessionEffect.OpensResuming;
                if (opens && outcome.Stream is null)
                    return $"no stream returned although the last arc {expected.Arcs.Last()} opens one";
                if (!opens && outcome.Stream is not null)
                    return "a stream was returned although no arc of the path opens one";
                return null;
            case MigrationPathKind.Same:
                if (!outcome.Ok)
                    return $"requesting the current state failed with {outcome.Result.Describe()}";
                if (after != from)
                    return $"GET shows {Name(after)} afterwards";
                return outcome.Stream is not null ? "a new stream was returned" : null;
            default:
                if (outcome.Ok)
                    return $"succeeded (expected EINVAL); GET shows {Name(after)}";
                if (outcome.Errno != Errno.EINVAL)
                    return $"failed with {outcome.Result.Describe()} instead of EINVAL";
                return after != from ? $"rejected, but the state changed to {Name(after)}" : null;
        }
    }
}
