using Vfio.Uapi;

namespace Vfio.Device;

/// <summary>The kernel core's validation of DMA logging requests (spec §5.1, §5.3), in the kernel's order.</summary>
public static class DmaLoggingValidator
{
    /// <summary>PAGE_SIZE / sizeof(range) on 4 KiB-page x86_64: the most ranges one START may carry.</summary>
    public const int MaxRanges = 4096 / VfioDmaLoggingRange.Size;

    /// <summary>The smallest report page size.</summary>
    public const ulong MinReportPageSize = 4096;

    /// <summary>Validates a START request and returns the ranges sorted by iova.</summary>
    /// <exception cref="VfioException">EINVAL, E2BIG or EOVERFLOW as the kernel would return.</exception>
    public static VfioDmaLoggingRange[] ValidateStart(ulong pageSize, IReadOnlyList<VfioDmaLoggingRange> ranges)
    {
        ArgumentNullException.ThrowIfNull(ranges);
        const string op = "DMA_LOGGING_START";
        if (ranges.Count == 0)
            VfioException.Throw(Errno.EINVAL, op, "num_ranges is 0");
        if (ranges.Count > MaxRanges)
            VfioException.Throw(Errno.E2BIG, op, $"{ranges.Count} ranges exceed the limit of {MaxRanges}");

        // Mask test as the kernel does it: with a zero or non-power-of-two page size it degenerates.
        ulong mask = pageSize - 1;
        var accepted = new List<VfioDmaLoggingRange>(ranges.Count);
        foreach (var r in ranges)
        {
            if ((r.Iova & mask) != 0 || (r.Length & mask) != 0)
                VfioException.Throw(Errno.EINVAL, op, $"range 0x{r.Iova:x}+0x{r.Length:x} is not aligned to page size 0x{pageSize:x}");
            if (r.Iova + r.Length < r.Iova)
                VfioException.Throw(Errno.EOVERFLOW, op, $"range 0x{r.Iova:x}+0x{r.Length:x} overflows 64 bits");
            // The kernel keeps closed intervals [iova, iova + length − 1] in an interval tree and refuses a
            // range that intersects an earlier one. The "last" wraps for a zero-length range exactly as the
            // kernel's does (iova 0, length 0 becomes [0, 2^64 − 1] and collides with every other range).
            ulong last = r.Iova + r.Length - 1;
            foreach (var earlier in accepted)
            {
                ulong earlierLast = earlier.Iova + earlier.Length - 1;
                if (earlier.Iova <= last && r.Iova <= earlierLast)
                    VfioException.Throw(Errno.EINVAL, op, $"range 0x{r.Iova:x}+0x{r.Length:x} overlaps 0x{earlier.Iova:x}+0x{earlier.Length:x}");
            }
            accepted.Add(r);
        }
        accepted.Sort((a, b) => a.Iova.CompareTo(b.Iova));
        return [.. accepted];
    }

    /// <summary>Validates a REPORT request and the bitmap's size.</summary>
    /// <exception cref="VfioException">EINVAL or EOVERFLOW as the kernel would return; EFAULT for a bitmap that is too small.</exception>
    public static void ValidateReport(ulong iova, ulong length, ulong pageSize, int bitmapWords)
    {
        const string op = "DMA_LOGGING_REPORT";
        if (pageSize < MinReportPageSize || (pageSize & (pageSize - 1)) != 0)
            VfioException.Throw(Errno.EINVAL, op, $"page size 0x{pageSize:x} is below 4096 or not a power of two");
        if (iova + length < iova)
            VfioException.Throw(Errno.EOVERFLOW, op, $"range 0x{iova:x}+0x{length:x} overflows 64 bits");
        ulong need = VfioDmaLoggingReport.BitmapWords(length, pageSize);
        if ((ulong)bitmapWords < need)
            VfioException.Throw(Errno.EFAULT, op, $"bitmap holds {bitmapWords} words, {need} needed");
    }
}
