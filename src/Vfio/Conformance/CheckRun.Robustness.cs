namespace Vfio.Conformance;

// Group robustness: delegated to the transport through IRawMessageProbe.
internal sealed partial class CheckRun
{
    private async Task RunRobustnessAsync(CancellationToken ct)
    {
        const string rule = "robustness.raw-messages";
        Current(rule);
        if (_device is not IRawMessageProbe probe)
        {
            Skip(rule, "the device's transport has no raw-message probe (IRawMessageProbe; vfio-user only)");
            return;
        }
        // The probe expects a RUNNING device; one that cannot be brought there is blocked by the rule that explains it.
        if (!await EnsureRunningAsync(_device, ct).ConfigureAwait(false))
        {
            Unmet(rule, new Driven($"could not bring the device to RUNNING (GET shows {Name(await GetAsync(_device, ct).ConfigureAwait(false))})", RecoveryCause(), null));
            return;
        }
        var results = await probe.RunRawMessageChecksAsync(ct).ConfigureAwait(false);
        foreach (var r in results)
        {
            var result = r with { Group = ConformanceGroups.Robustness };
            if (result.Warning is not null && result.Verdict == ConformanceVerdict.Pass && _options.Strict)
                result = result with { Verdict = ConformanceVerdict.Fail, Detail = $"{result.Detail} (strict: {result.Warning})", Warning = null };
            _results.Add(result);
        }
        if (results.Count == 0)
            Skip(rule, "the raw-message probe returned no results");
        if (!await EnsureRunningAsync(_device, ct).ConfigureAwait(false))
            _results.Add(new ConformanceResult(ConformanceGroups.Robustness, rule, ConformanceCatalog.Get(rule).Spec, ConformanceVerdict.Fail, "the device is not RUNNING after the raw-message probe"));
    }
}
