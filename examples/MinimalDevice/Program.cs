return await MinimalDevice.Example.RunAsync(Console.Out).ConfigureAwait(false);
