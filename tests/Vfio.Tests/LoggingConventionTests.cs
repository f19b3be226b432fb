using System.Reflection;
using Microsoft.Extensions.Logging;

namespace Vfio.Tests;

/// <summary>
/// The logging convention: every log message of the library has a stable event id inside its area's range, a
/// unique id and a unique EventName (docs/architecture.md, "Logging").
/// </summary>
public sealed class LoggingConventionTests
{
    // Area → the one id range it owns. A new log class must be given a range here and in the docs.
    private static readonly Dictionary<string, (int First, int Last)> Ranges = new()
    {
        ["Vfio.Engine.EngineLog"] = (100, 199),
        ["Vfio.User.VfioUserLog"] = (200, 299),
        ["Vfio.Net.NetLog"] = (300, 399),
        ["Vfio.Kernel.KernelLog"] = (400, 499),
    };

    private static IEnumerable<(MethodInfo Method, LoggerMessageAttribute Attribute)> Messages()
        => typeof(VfioException).Assembly.GetTypes()
            .SelectMany(t => t.GetMethods(BindingFlags.Static | BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.DeclaredOnly))
            .Select(m => (m, m.GetCustomAttribute<LoggerMessageAttribute>()))
            .Where(p => p.Item2 is not null)
            .Select(p => (p.m, p.Item2!));

    [Fact]
    public void Every_message_has_a_unique_id_in_its_areas_range_and_a_unique_event_name()
    {
        var messages = Messages().ToList();
        Assert.NotEmpty(messages);
        foreach (var (method, attribute) in messages)
        {
            string area = method.DeclaringType!.FullName!;
            Assert.True(Ranges.TryGetValue(area, out var range), $"{area} logs but owns no event-id range");
            Assert.InRange(attribute.EventId, range.First, range.Last);
            Assert.False(string.IsNullOrEmpty(attribute.EventName), $"{area}.{method.Name} has no EventName");
        }
        Assert.Equal(messages.Count, messages.Select(m => m.Attribute.EventId).Distinct().Count());
        Assert.Equal(messages.Count, messages.Select(m => m.Attribute.EventName).Distinct(StringComparer.Ordinal).Count());
    }
}
