namespace Vfio.Conformance;

/// <summary>One rule the checker evaluates: its id, group, spec section and a one-line statement.</summary>
public sealed record ConformanceRule(string Group, string Id, string Spec, string Statement);
