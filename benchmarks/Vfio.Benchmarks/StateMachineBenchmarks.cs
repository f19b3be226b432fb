using BenchmarkDotNet.Attributes;
using Vfio.Migration;

namespace Vfio.Benchmarks;

/// <summary>The kernel's path table: every (from, to) pair of the eight states, caps 0x7.</summary>
[MemoryDiagnoser]
public class StateMachineBenchmarks
{
    private const int Pairs = 64;
    private static readonly VfioMigrationFlags Caps = VfioMigrationFlags.StopCopy | VfioMigrationFlags.P2P | VfioMigrationFlags.PreCopy;
    private VfioMigrationState[] _states = [];

    [GlobalSetup]
    public void Setup() => _states = [.. Enumerable.Range(0, 8).Select(i => (VfioMigrationState)i)];

    /// <summary>One operation is one GetPath call; each invocation walks all 64 pairs.</summary>
    [Benchmark(OperationsPerInvoke = Pairs)]
    public int GetPathAllPairs()
    {
        int arcs = 0;
        foreach (var from in _states)
        {
            foreach (var to in _states)
                arcs += MigrationStateMachine.GetPath(from, to, Caps).States.Count;
        }
        return arcs;
    }
}
