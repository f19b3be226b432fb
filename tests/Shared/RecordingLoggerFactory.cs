using Microsoft.Extensions.Logging;

namespace Vfio.TestSupport;

/// <summary>
/// Collects every log entry (event id, level, message, exception object) of every logger it creates. Shared by the
/// unit and integration tests (compiled into both).
/// </summary>
internal sealed class RecordingLoggerFactory : ILoggerFactory
{
    public List<(int EventId, LogLevel Level, string Message, Exception? Exception)> Entries { get; } = [];

    public int[] Ids()
    {
        lock (Entries)
            return [.. Entries.Select(e => e.EventId)];
    }

    public string Text(int id)
    {
        lock (Entries)
            return Entries.First(e => e.EventId == id).Message;
    }

    public Exception? Exception(int id)
    {
        lock (Entries)
            return Entries.First(e => e.EventId == id).Exception;
    }

    /// <summary>Waits (bounded) until an entry with <paramref name="id"/> was logged; false when none came in time.</summary>
    public async Task<bool> WaitForAsync(int id, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!Ids().Contains(id))
        {
            if (DateTime.UtcNow >= deadline)
                return false;
            await Task.Delay(20, cancellationToken).ConfigureAwait(false);
        }
        return true;
    }

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
                owner.Entries.Add((eventId.Id, logLevel, formatter(state, exception), exception));
        }
    }
}
