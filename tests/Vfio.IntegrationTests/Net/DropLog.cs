using System.Diagnostics;
using Vfio.Net;

namespace Vfio.IntegrationTests.Net;

/// <summary>Collects the listener's "dropped …" lines so a test can wait (bounded) for one.</summary>
internal sealed class DropLog
{
    private readonly List<string> _lines = [];
    private readonly Lock _lock = new();

    public NetAcceptOptions Options(NetAcceptOptions? basis = null) => (basis ?? NetAcceptOptions.Default) with { OnDropped = Add };

    public IReadOnlyList<string> Lines
    {
        get
        {
            lock (_lock)
                return [.. _lines];
        }
    }

    private void Add(string line)
    {
        lock (_lock)
            _lines.Add(line);
    }

    /// <summary>Waits until <paramref name="count"/> lines contain <paramref name="text"/>; returns the first.</summary>
    public async Task<string> WaitForAsync(string text, TimeSpan timeout, int count = 1)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            var hits = Lines.Where(l => l.Contains(text, StringComparison.Ordinal)).ToList();
            if (hits.Count >= count)
                return hits[0];
            if (clock.Elapsed > timeout)
                throw new TimeoutException($"no {count} dropped line(s) with '{text}' within {timeout.TotalSeconds} s; lines:\n{string.Join('\n', Lines)}");
            await Task.Delay(20);
        }
    }
}
