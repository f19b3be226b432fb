using Microsoft.Extensions.Logging;

namespace Vfio.Tests.Engine;

/// <summary>Collects every log entry (event id, level, message) of every logger it creates.</summary>
internal sealed class RecordingLoggerFactory : ILoggerFactory
{
    public List<(int EventId, LogLevel Level, string Message)> Entries { get; } = [];

    public ILogger CreateLogger(string categoryName) => new Logger(this);

    public void AddProvider(ILoggerProvider provider)
    {
    }

    public void Dispose()
    {
    }

    private sealed class Logger(RecordingLoggerFactory owner) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            lock (owner.Entries)
                owner.Entries.Add((eventId.Id, logLevel, formatter(state, exception)));
        }
    }
}
