using Vfio.Migration;

namespace Vfio.Conformance;

// Group sessions: stream lifetime, end of stream, same-state requests, size estimate, broken resumes.
internal sealed partial class CheckRun
{
    private async Task RunSessionsAsync(CancellationToken ct)
    {
        await StaleStreamAsync(ct).ConfigureAwait(false);
        await StaleAfterResetAsync(ct).ConfigureAwait(false);
        await EofAndSizeAsync(ct).ConfigureAwait(false);
        await SameStateNoStreamAsync(ct).ConfigureAwait(false);
        await BrokenResumesAsync(ct).ConfigureAwait(false);
    }

    private async Task StaleStreamAsync(CancellationToken ct)
    {
        const string rule = "sessions.stale-stream";
        var problems = new List<string>();
        var buffer = new byte[_options.ChunkSize];
        var (error, _) = await DriveAsync(_device, Stop, ct).ConfigureAwait(false);
        if (error is not null)
        {
            Fail(rule, error);
            await LeaveAsync(_device, ct).ConfigureAwait(false);
            return;
        }
        var first = await SetAsync(_device, StopCopy, ct).ConfigureAwait(false);
        if (!first.Ok || first.Stream is null)
        {
            Fail(rule, $"STOP→STOP_COPY {(first.Ok ? "returned no stream" : "failed with " + first.Result.Describe())}");
            await LeaveAsync(_device, ct).ConfigureAwait(false);
            return;
        }
        var a = first.Stream;
        var r = await ReadAsync(a, buffer, ct).ConfigureAwait(false);
        if (!r.Ok || r.Count == 0)
            problems.Add($"the first read of a fresh STOP_COPY stream gave {r.Describe()}");
        if (!(await SetAsync(_device, Stop, ct).ConfigureAwait(false)).Ok)
            problems.Add("STOP_COPY→STOP failed");
        r = await ReadAsync(a, buffer, ct).ConfigureAwait(false);
        if (r.Result.Errno != Errno.ENODEV)
            problems.Add($"after STOP_COPY→STOP a read on its stream {DescribeStale(r)}");

        var second = await SetAsync(_device, StopCopy, ct).ConfigureAwait(false);
        if (!second.Ok || second.Stream is null)
        {
            problems.Add($"the second STOP→STOP_COPY {(second.Ok ? "returned no stream" : "failed with " + second.Result.Describe())}");
        }
        else
        {
            if (ReferenceEquals(second.Stream, a))
                problems.Add("the second session returned the first session's stream object");
            r = await ReadAsync(a, buffer, ct).ConfigureAwait(false);
            if (r.Result.Errno != Errno.ENODEV)
                problems.Add($"while a later session is open, a read on the earlier stream {DescribeStale(r)}");
            r = await ReadAsync(second.Stream, buffer, ct).ConfigureAwait(false);
            if (!r.Ok || r.Count == 0)
                problems.Add($"the new session's stream gave {r.Describe()} on its first read");
        }
        await LeaveAsync(_device, ct).ConfigureAwait(false);

        int cases = 3;
        if ((Caps & VfioMigrationFlags.PreCopy) != 0)
        {
            cases++;
            var pre = await SetAsync(_device, PreCopy, ct).ConfigureAwait(false);
            if (pre.Ok && pre.Stream is not null)
            {
                var back = await SetAsync(_device, Running, ct).ConfigureAwait(false);
                r = await ReadAsync(pre.Stream, buffer, ct).ConfigureAwait(false);
                if (back.Ok && r.Result.Errno != Errno.ENODEV)
                    problems.Add($"after PRE_COPY→RUNNING a read on its stream {DescribeStale(r)}");
            }
            else
            {
                problems.Add($"RUNNING→PRE_COPY {(pre.Ok ? "returned no stream" : "failed with " + pre.Result.Describe())}");
            }
            await LeaveAsync(_device, ct).ConfigureAwait(false);
        }
        if (problems.Count == 0)
            Pass(rule, $"{cases} ended streams answered ENODEV; each session had its own stream");
        else
            Fail(rule, string.Join("; ", problems));
    }

    private async Task StaleAfterResetAsync(CancellationToken ct)
    {
        const string rule = "sessions.stale-after-reset";
        var problems = new List<string>();
        var buffer = new byte[_options.ChunkSize];

        var (error, saving) = await DriveAsync(_device, StopCopy, ct).ConfigureAwait(false);
        if (error is not null || saving is null)
        {
            Fail(rule, error ?? "STOP→STOP_COPY returned no stream");
            await LeaveAsync(_device, ct).ConfigureAwait(false);
            return;
        }
        var reset = await TryAsync(() => _device.ResetAsync(ct)).ConfigureAwait(false);
        var after = await GetAsync(_device, ct).ConfigureAwait(false);
        if (!reset.Ok)
        {
            // libvfio-user refuses a reset in STOP/STOP_COPY (spec §11); the kernel resets from any state.
            problems.Add($"reset in STOP_COPY failed ({reset.Describe()}); GET shows {Name(after)} — VFIO_DEVICE_RESET must work in every state (§3.4; refusing it is a libvfio-user deviation, §11)");
        }
        else
        {
            if (after != Running)
                problems.Add($"after a reset in STOP_COPY GET shows {Name(after)} (expected RUNNING)");
            var r = await ReadAsync(saving, buffer, ct).ConfigureAwait(false);
            if (r.Result.Errno != Errno.ENODEV)
                problems.Add($"after a reset a read on the saving stream {DescribeStale(r)}");
        }
        await LeaveAsync(_device, ct).ConfigureAwait(false);

        (error, var resuming) = await DriveAsync(_device, Resuming, ct).ConfigureAwait(false);
        if (error is not null || resuming is null)
        {
            problems.Add(error ?? "STOP→RESUMING returned no stream");
        }
        else
        {
            reset = await TryAsync(() => _device.ResetAsync(ct)).ConfigureAwait(false);
            after = await GetAsync(_device, ct).ConfigureAwait(false);
            if (!reset.Ok)
            {
                problems.Add($"reset in RESUMING failed ({reset.Describe()}); GET shows {Name(after)}");
            }
            else
            {
                if (after != Running)
                    problems.Add($"after a reset in RESUMING GET shows {Name(after)} (expected RUNNING)");
                var w = await TryAsync(() => resuming.WriteAsync(new byte[1], ct)).ConfigureAwait(false);
                if (w.Errno != Errno.ENODEV)
                    problems.Add($"after a reset a write on the resuming stream {(w.Ok ? "succeeded" : "failed with " + w.Describe())} instead of ENODEV");
            }
        }
        await LeaveAsync(_device, ct).ConfigureAwait(false);
        if (problems.Count == 0)
            Pass(rule, "saving and resuming streams answered ENODEV after a reset; the device was RUNNING");
        else
            Fail(rule, string.Join("; ", problems));
    }

    private async Task EofAndSizeAsync(CancellationToken ct)
    {
        const string eofRule = "sessions.stop-copy-eof", sizeRule = "sessions.stop-copy-size";
        var (error, _) = await DriveAsync(_device, Stop, ct).ConfigureAwait(false);
        if (error is not null)
        {
            Fail(eofRule, error);
            Skip(sizeRule, "no STOP_COPY stream to compare with");
            await LeaveAsync(_device, ct).ConfigureAwait(false);
            return;
        }
        var (estimate, estimateResult) = await TryStopCopySizeAsync(_device, ct).ConfigureAwait(false);
        var o = await SetAsync(_device, StopCopy, ct).ConfigureAwait(false);
        if (!o.Ok || o.Stream is null)
        {
            Fail(eofRule, $"STOP→STOP_COPY {(o.Ok ? "returned no stream" : "failed with " + o.Result.Describe())}");
            Skip(sizeRule, "no STOP_COPY stream to compare with");
            await LeaveAsync(_device, ct).ConfigureAwait(false);
            return;
        }
        var saved = await ReadToEndAsync(o.Stream, ReadLimit(estimate), ct).ConfigureAwait(false);
        var problems = new List<string>();
        if (saved.Error is not null)
            problems.Add(saved.Error);
        else
        {
            var buffer = new byte[_options.ChunkSize];
            for (int i = 0; i < 3; i++)
            {
                var r = await ReadAsync(o.Stream, buffer, ct).ConfigureAwait(false);
                if (!r.Ok || r.Count != 0)
                {
                    problems.Add($"read {i + 2} after the end gave {r.Describe()} instead of 0");
                    break;
                }
            }
        }
        await LeaveAsync(_device, ct).ConfigureAwait(false);

        if (problems.Count == 0)
        {
            Pass(eofRule, $"{saved.Length} bytes then 0, 0, 0, 0 (sha256 {saved.Sha256[..16]}…)");
            _savedStream = saved.Data;
        }
        else
        {
            Fail(eofRule, string.Join("; ", problems));
        }

        if (!estimateResult.Ok)
        {
            if (estimateResult.Errno is Errno.ENOTTY or Errno.EINVAL or Errno.EOPNOTSUPP)
                Skip(sizeRule, $"the device does not report MIG_DATA_SIZE ({estimateResult.Describe()})");
            else
                Fail(sizeRule, $"MIG_DATA_SIZE failed with {estimateResult.Describe()}");
        }
        else if (saved.Error is not null)
        {
            Skip(sizeRule, $"estimate {estimate} B, but the STOP_COPY stream did not end cleanly");
        }
        else if (estimate == 0)
        {
            Fail(sizeRule, $"the estimate is 0 B; the STOP_COPY stream delivered {saved.Length} B");
        }
        else if ((double)estimate!.Value * 2 < saved.Length)
        {
            Fail(sizeRule, $"the estimate {estimate} B is below half of the {saved.Length} B the STOP_COPY stream delivered");
        }
        else
        {
            string ratio = saved.Length == 0 ? "n/a" : ((double)estimate.Value / saved.Length).ToString("0.00", System.Globalization.CultureInfo.InvariantCulture);
            Pass(sizeRule, $"estimate {estimate} B, stream {saved.Length} B (ratio {ratio}; tolerance: at least 0.5)");
        }
    }

    private async Task SameStateNoStreamAsync(CancellationToken ct)
    {
        const string rule = "sessions.same-state-no-stream";
        var (error, stream) = await DriveAsync(_device, StopCopy, ct).ConfigureAwait(false);
        if (error is not null || stream is null)
        {
            Fail(rule, error ?? "STOP→STOP_COPY returned no stream");
            await LeaveAsync(_device, ct).ConfigureAwait(false);
            return;
        }
        var buffer = new byte[_options.ChunkSize];
        var problems = new List<string>();
        var r = await ReadAsync(stream, buffer, ct).ConfigureAwait(false);
        var again = await SetAsync(_device, StopCopy, ct).ConfigureAwait(false);
        var after = await GetAsync(_device, ct).ConfigureAwait(false);
        if (!again.Ok)
            problems.Add($"STOP_COPY→STOP_COPY failed with {again.Result.Describe()}");
        if (again.Stream is not null)
            problems.Add("STOP_COPY→STOP_COPY returned a new stream");
        if (after != StopCopy)
            problems.Add($"GET shows {Name(after)} afterwards");
        r = await ReadAsync(stream, buffer, ct).ConfigureAwait(false);
        if (!r.Ok)
            problems.Add($"the open stream failed afterwards with {r.Result.Describe()}");
        await LeaveAsync(_device, ct).ConfigureAwait(false);
        if (problems.Count == 0)
            Pass(rule, "no new stream; the open stream kept reading");
        else
            Fail(rule, string.Join("; ", problems));
    }

    private async Task BrokenResumesAsync(CancellationToken ct)
    {
        const string truncatedRule = "sessions.resume-truncated", reorderedRule = "sessions.resume-reordered";
        var (target, reason) = ResumeTarget();
        if (target is null)
        {
            Skip(truncatedRule, reason!);
            Skip(reorderedRule, reason!);
            return;
        }
        var saved = _savedStream;
        if (saved is null)
        {
            var s = await SaveAsync(_device, ct).ConfigureAwait(false);
            if (s.Error is not null || s.Data is null)
            {
                string why = s.Error is not null ? $"no saved stream to cut: {s.Error}" : $"the saved stream ({s.Length} B) is too large to keep in memory";
                Skip(truncatedRule, why);
                Skip(reorderedRule, why);
                return;
            }
            saved = s.Data;
        }
        if (saved.Length < 2)
        {
            Skip(truncatedRule, $"the saved stream has only {saved.Length} bytes");
            Skip(reorderedRule, $"the saved stream has only {saved.Length} bytes");
            return;
        }

        int half = saved.Length / 2;
        await ExpectRejectedResumeAsync(truncatedRule, target, saved.AsMemory(0, half), $"the first {half} of {saved.Length} bytes", ct).ConfigureAwait(false);

        if (saved.AsSpan(0, half).SequenceEqual(saved.AsSpan(half, half)))
        {
            Skip(reorderedRule, "the two halves of the saved stream are identical, so swapping them changes nothing");
            return;
        }
        var reordered = new byte[saved.Length];
        saved.AsSpan(half, half).CopyTo(reordered);
        saved.AsSpan(0, half).CopyTo(reordered.AsSpan(half));
        saved.AsSpan(2 * half).CopyTo(reordered.AsSpan(2 * half));
        await ExpectRejectedResumeAsync(reorderedRule, target, reordered, $"{saved.Length} bytes with the two {half}-byte halves swapped", ct).ConfigureAwait(false);
    }

    private async Task ExpectRejectedResumeAsync(string rule, IVfioMigrationDevice target, ReadOnlyMemory<byte> data, string what, CancellationToken ct)
    {
        var (stop, after, note, setupError) = await ResumeAsync(target, data, ct).ConfigureAwait(false);
        string where = ReferenceEquals(target, _device) ? "the device" : $"peer {target.Name}";
        if (setupError is not null)
            Fail(rule, $"resuming into {where}: {setupError}");
        else if (stop.Ok)
            Fail(rule, $"RESUMING→STOP accepted {what} (resumed into {where}){(note is null ? "" : "; " + note)}");
        else if (after == Stop)
            Fail(rule, $"RESUMING→STOP failed with {stop.Describe()}, but GET shows STOP");
        else
            Pass(rule, $"{what}: RESUMING→STOP failed with {VfioException.NameOf(stop.Errno)}, GET shows {Name(after)}{(note is null ? "" : "; earlier " + note)} (resumed into {where})");
        await LeaveAsync(target, ct).ConfigureAwait(false);
    }
}
