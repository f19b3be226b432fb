using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Vfio.Migration;

namespace Vfio.Kernel;

// Source-generated log messages of the kernel backend; event ids are stable (400–499; docs/architecture.md lists
// every area's range).
internal static partial class KernelLog
{
    [LoggerMessage(EventId = 400, EventName = "KernelDeviceOpened", Level = LogLevel.Information, Message = "vfio:{Name}: opened through IOMMU group {Group} (type {IommuType} IOMMU, driver {Driver})")]
    public static partial void Opened(ILogger logger, string name, int group, int iommuType, string driver);

    [LoggerMessage(EventId = 401, EventName = "KernelStateSet", Level = LogLevel.Debug, Message = "{Device}: SET device_state {Target} in {Milliseconds:0.000} ms{DataFd}")]
    private static partial void StateSet(ILogger logger, string device, string target, double milliseconds, string dataFd);

    public static void StateSet(ILogger logger, string device, VfioMigrationState target, long startedTimestamp, int dataFd)
    {
        if (!logger.IsEnabled(LogLevel.Debug))
            return;
        string name = MigrationStateMachine.Name(target);
        double milliseconds = Stopwatch.GetElapsedTime(startedTimestamp).TotalMilliseconds;
        string fd = dataFd < 0 ? "" : $", data fd {dataFd}";
        StateSet(logger, device, name, milliseconds, fd);
    }

    [LoggerMessage(EventId = 402, EventName = "KernelStateSetFailed", Level = LogLevel.Warning, Message = "{Device}: SET device_state {Target} failed")]
    private static partial void StateSetFailed(ILogger logger, string device, string target, Exception exception);

    public static void StateSetFailed(ILogger logger, string device, VfioMigrationState target, Exception exception)
    {
        if (!logger.IsEnabled(LogLevel.Warning))
            return;
        string name = MigrationStateMachine.Name(target);
        StateSetFailed(logger, device, name, exception);
    }

    [LoggerMessage(EventId = 403, EventName = "KernelDeviceReset", Level = LogLevel.Information, Message = "{Device}: VFIO_DEVICE_RESET")]
    public static partial void Reset(ILogger logger, string device);
}
