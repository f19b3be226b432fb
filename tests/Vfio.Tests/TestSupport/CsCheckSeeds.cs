namespace Vfio.Tests.TestSupport;

/// <summary>Fixed CsCheck seeds, so every property run samples the same inputs (deterministic tests).</summary>
internal static class CsCheckSeeds
{
    public const string Fsm = "6Ldn3ewKMHy2";
    public const string Device = "6Ldn3ewKMHy2";
    public const string Stream = "6Ldn3ewKMHy2";
}
