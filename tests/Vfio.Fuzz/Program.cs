using SharpFuzz;
using Vfio.Fuzz.Targets;

// Usage:
//   Vfio.Fuzz                     libFuzzer mode (run under libfuzzer-dotnet after `sharpfuzz Vfio.dll`)
//   Vfio.Fuzz replay DIR|FILE...  run the target over corpus files (no instrumentation needed)
if (args.Length > 0 && args[0] == "replay")
{
    int n = 0;
    foreach (var arg in args.Skip(1))
    {
        var files = Directory.Exists(arg) ? Directory.GetFiles(arg) : [arg];
        foreach (var file in files)
        {
            MessageDecoderTarget.Fuzz(File.ReadAllBytes(file));
            n++;
        }
    }
    Console.WriteLine($"replayed {n} input(s) without a crash");
    return 0;
}

Fuzzer.LibFuzzer.Run(span => MessageDecoderTarget.Fuzz(span));
return 0;
