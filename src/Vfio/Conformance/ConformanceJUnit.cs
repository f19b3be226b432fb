using System.Globalization;
using System.Xml.Linq;

namespace Vfio.Conformance;

/// <summary>
/// A <see cref="ConformanceReport"/> as JUnit XML (<c>vfio-mig check --junit FILE</c>), in the shape GitLab, GitHub
/// test reporters and Jenkins render: one <c>testsuite</c> per group, one <c>testcase</c> per rule. FAIL is a
/// <c>failure</c>; SKIP and BLOCKED are <c>skipped</c> (a blocked rule is not a failure of its own; its message
/// names the rule that blocked it).
/// </summary>
public static class ConformanceJUnit
{
    /// <summary>The XML document.</summary>
    public static XDocument ToXml(ConformanceReport report)
    {
        ArgumentNullException.ThrowIfNull(report);
        string suiteName = $"vfio-mig check {report.Device}";
        var suites = new XElement("testsuites",
            new XAttribute("name", suiteName),
            Counts(report.Results));
        foreach (var group in report.Results.GroupBy(r => r.Group))
        {
            var suite = new XElement("testsuite", new XAttribute("name", group.Key), Counts([.. group]));
            if (report.Capabilities.Length > 0)
                suite.Add(new XElement("properties", new XElement("property", new XAttribute("name", "capabilities"), new XAttribute("value", report.Capabilities))));
            foreach (var r in group)
                suite.Add(TestCase(r, $"vfio-mig check.{group.Key}"));
            suites.Add(suite);
        }
        return new XDocument(new XDeclaration("1.0", "utf-8", null), suites);
    }

    /// <summary>The XML text, UTF-8 declaration first.</summary>
    public static string Format(ConformanceReport report)
    {
        var doc = ToXml(report);
        using var writer = new Utf8StringWriter();
        doc.Save(writer);
        return writer.ToString();
    }

    private static XElement TestCase(ConformanceResult r, string className)
    {
        var testCase = new XElement("testcase",
            new XAttribute("classname", className),
            new XAttribute("name", $"{r.Rule} ({r.Spec})"),
            new XAttribute("time", "0"));
        switch (r.Verdict)
        {
            case ConformanceVerdict.Fail:
                testCase.Add(new XElement("failure", new XAttribute("message", r.Detail), new XAttribute("type", "FAIL"), r.Detail));
                break;
            case ConformanceVerdict.Skip:
                testCase.Add(new XElement("skipped", new XAttribute("message", $"SKIP: {r.Detail}")));
                break;
            case ConformanceVerdict.Blocked:
                testCase.Add(new XElement("skipped", new XAttribute("message", $"BLOCKED by {r.BlockedBy}: {r.Detail}")));
                break;
            default:
                if (r.Warning is not null)
                    testCase.Add(new XElement("system-out", $"warning: {r.Warning}"));
                break;
        }
        return testCase;
    }

    private static XAttribute[] Counts(IReadOnlyCollection<ConformanceResult> results) =>
    [
        new("tests", results.Count.ToString(CultureInfo.InvariantCulture)),
        new("failures", results.Count(r => r.Verdict == ConformanceVerdict.Fail).ToString(CultureInfo.InvariantCulture)),
        new("errors", "0"),
        new("skipped", results.Count(r => r.Verdict is ConformanceVerdict.Skip or ConformanceVerdict.Blocked).ToString(CultureInfo.InvariantCulture)),
    ];

    private sealed class Utf8StringWriter : StringWriter
    {
        public Utf8StringWriter()
            : base(CultureInfo.InvariantCulture)
        {
        }

        public override System.Text.Encoding Encoding => System.Text.Encoding.UTF8;
    }
}
