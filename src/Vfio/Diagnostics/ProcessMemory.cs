using System.Globalization;

namespace Vfio.Diagnostics;

/// <summary>Memory figures of a process from Linux's /proc, for the benches and the memory-bound tests.</summary>
internal static class ProcessMemory
{
    /// <summary>The peak resident set size (VmHWM of /proc/PID/status) in bytes; 0 once the process is gone.</summary>
    public static long PeakRssBytes(int pid)
    {
        try
        {
            foreach (var line in File.ReadLines(string.Create(CultureInfo.InvariantCulture, $"/proc/{pid}/status")))
            {
                if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                    return long.Parse(line["VmHWM:".Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) * 1024;
            }
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
        return 0;
    }
}
