using Microsoft.Extensions.Logging;
using Vfio.Sample;
using Vfio.User.Client;
using Vfio.User.Server;

namespace Vfio.IntegrationTests;

/// <summary>The vfio-user client and server log their connection's life with their stable event ids.</summary>
public sealed class VfioUserLoggingTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Client_logs_the_negotiation_and_a_lost_server_and_the_server_logs_the_client()
    {
        var serverLog = new Recorder();
        var clientLog = new Recorder();
        var device = new SampleDevice(new SampleDeviceOptions { SizeBytes = 1 << 16 });
        string path = TestSupport.TempSocketPath();
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var server = new VfioUserServer(path, VfioUserDeviceDefinition.ForSample(device), new VfioUserServerOptions { LoggerFactory = serverLog });
        server.Start();
        var run = server.RunAsync(cts.Token);

        await using var client = await VfioUserClient.ConnectAsync(path, new VfioUserClientOptions { LoggerFactory = clientLog }, Ct);
        Assert.Contains(clientLog.Ids(), id => id == 250);
        Assert.Contains("max_data_xfer_size", clientLog.Text(250), StringComparison.Ordinal);

        // The server goes away: the client's reader sees the connection end and logs why (an exception object).
        await cts.CancelAsync();
        await server.DisposeAsync();
        try
        {
            await run.WaitAsync(TimeSpan.FromSeconds(20), Ct);
        }
        catch (OperationCanceledException)
        {
        }
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        while (!clientLog.Ids().Contains(251) && DateTime.UtcNow < deadline)
            await Task.Delay(20, Ct);
        Assert.Contains(251, clientLog.Ids());
        Assert.NotNull(clientLog.Exception(251));
        Assert.Contains(serverLog.Ids(), id => id is 200 or 201);
    }

    private sealed class Recorder : ILoggerFactory
    {
        private readonly List<(int Id, string Text, Exception? Exception)> _entries = [];

        public int[] Ids()
        {
            lock (_entries)
                return [.. _entries.Select(e => e.Id)];
        }

        public string Text(int id)
        {
            lock (_entries)
                return _entries.First(e => e.Id == id).Text;
        }

        public Exception? Exception(int id)
        {
            lock (_entries)
                return _entries.First(e => e.Id == id).Exception;
        }

        public ILogger CreateLogger(string categoryName) => new Logger(this);

        public void AddProvider(ILoggerProvider provider)
        {
        }

        public void Dispose()
        {
        }

        private sealed class Logger(Recorder owner) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

            public bool IsEnabled(LogLevel logLevel) => true;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
            {
                lock (owner._entries)
                    owner._entries.Add((eventId.Id, formatter(state, exception), exception));
            }
        }
    }
}
