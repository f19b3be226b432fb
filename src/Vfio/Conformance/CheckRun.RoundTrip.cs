namespace Vfio.Conformance;

// Group round-trip: save, resume into the peer (or the device after reset), re-save, compare or resume again.
internal sealed partial class CheckRun
{
    private async Task RunRoundTripAsync(CancellationToken ct)
    {
        const string rule = "round-trip.resume";
        Current(rule);
        var (target, reason) = ResumeTarget();
        if (target is null)
        {
            Skip(rule, reason!);
            return;
        }
        string where = ReferenceEquals(target, _device) ? "the device itself (after reset)" : $"peer {target.Name}";
        var original = await SaveAsync(_device, ct).ConfigureAwait(false);
        if (original.Error is not null)
        {
            if (original.BlockedBy is { } cause)
                Block(rule, cause, $"saving from the device: {original.Error} (see {cause})");
            else
                Fail(rule, $"saving from the device: {original.Error}");
            return;
        }
        if (original.Data is null)
        {
            Skip(rule, $"the saved stream ({original.Length} B) is too large to keep in memory");
            return;
        }

        var (stop, after, note, setup) = await ResumeAsync(target, original.Data, ct).ConfigureAwait(false);
        if (setup.Error is not null)
        {
            Unmet(rule, setup with { Error = $"resuming {original.Length} B into {where}: {setup.Error}" });
            await LeaveAsync(target, ct).ConfigureAwait(false);
            return;
        }
        if (note is not null || !stop.Ok || after != Stop)
        {
            Fail(rule, $"resuming {original.Length} B into {where}: {note ?? (stop.Ok ? $"GET shows {Name(after)}" : "RESUMING→STOP failed with " + stop.Describe())}");
            await LeaveAsync(target, ct).ConfigureAwait(false);
            return;
        }

        // Re-save straight from STOP, so a running workload cannot change the state in between.
        var resave = await SetAsync(target, StopCopy, ct).ConfigureAwait(false);
        if (!resave.Ok || resave.Stream is null)
        {
            Fail(rule, $"re-saving from {where}: STOP→STOP_COPY {(resave.Ok ? "returned no stream" : "failed with " + resave.Result.Describe())}");
            await LeaveAsync(target, ct).ConfigureAwait(false);
            return;
        }
        var second = await ReadToEndAsync(resave.Stream, ReadLimit((ulong)original.Length), ct).ConfigureAwait(false);
        await LeaveAsync(target, ct).ConfigureAwait(false);
        if (second.Error is not null || second.Data is null)
        {
            Fail(rule, $"re-saving from {where}: {second.Error ?? "the stream is too large to keep"}");
            return;
        }

        string digests = $"saved sha256 {original.Sha256[..16]}…, re-saved {second.Sha256[..16]}…";
        if (_options.DeterministicStreams)
        {
            if (second.Sha256 == original.Sha256)
            {
                Pass(rule, $"resumed {original.Length} B into {where}; the re-saved stream is identical ({digests})");
            }
            else
            {
                int at = 0;
                int common = Math.Min(original.Data.Length, second.Data.Length);
                while (at < common && original.Data[at] == second.Data[at])
                    at++;
                Fail(rule, $"resumed into {where}, but the re-saved stream differs from byte {at} on ({original.Length} B vs {second.Length} B; {digests})");
            }
            return;
        }

        // Opaque streams may legitimately differ: the re-saved stream must itself resume.
        (stop, after, note, setup) = await ResumeAsync(target, second.Data, ct).ConfigureAwait(false);
        await LeaveAsync(target, ct).ConfigureAwait(false);
        if (setup.Error is null && note is null && stop.Ok && after == Stop)
            Pass(rule, $"resumed {original.Length} B into {where}; its re-saved stream ({second.Length} B) resumed again ({digests})");
        else
            Fail(rule, $"the re-saved stream ({second.Length} B) did not resume into {where}: {setup.Error ?? note ?? (stop.Ok ? $"GET shows {Name(after)}" : "RESUMING→STOP failed with " + stop.Describe())}");
    }
}
