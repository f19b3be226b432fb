using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;
using Vfio.Diagnostics;
using Vfio.Engine;
using Vfio.Migration;
using Vfio.Sample;

// Live-migrates an in-process sample device and exports what the engine measured (docs/observability.md): to the
// console, and over OTLP as well when OTEL_EXPORTER_OTLP_ENDPOINT names a collector (e.g. http://localhost:4317).
bool otlp = !string.IsNullOrEmpty(Environment.GetEnvironmentVariable("OTEL_EXPORTER_OTLP_ENDPOINT"));
var resource = ResourceBuilder.CreateDefault().AddService("vfio-migration-example");
var tracing = Sdk.CreateTracerProviderBuilder().SetResourceBuilder(resource).AddSource(MigrationTelemetry.Name).AddConsoleExporter();
var metering = Sdk.CreateMeterProviderBuilder().SetResourceBuilder(resource).AddMeter(MigrationTelemetry.Name).AddConsoleExporter();
if (otlp)
{
    tracing.AddOtlpExporter();
    metering.AddOtlpExporter();
}

using (tracing.Build())
using (metering.Build())
{
    var source = new InProcessMigrationDevice(new SampleDevice(new SampleDeviceOptions { SizeBytes = 16 << 20, DirtyRateBytesPerSecond = 4 << 20, Seed = 1 }), "sample:src", ownsDevice: true);
    var destination = new InProcessMigrationDevice(new SampleDevice(new SampleDeviceOptions { SizeBytes = 16 << 20, Seed = 2 }), "sample:dst", ownsDevice: true);
    try
    {
        var statistics = await MigrationEngine.MigrateAsync([source], [destination]).ConfigureAwait(false);
        Console.WriteLine($"migrated {statistics.TotalBytes} bytes in {statistics.Rounds} round(s), downtime {statistics.Downtime.TotalMilliseconds:0.0} ms");
    }
    finally
    {
        await destination.DisposeAsync().ConfigureAwait(false);
        await source.DisposeAsync().ConfigureAwait(false);
    }
}
// Disposing the providers above flushed the last spans and metric points to the exporters.
