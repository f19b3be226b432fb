using System.Numerics;

namespace Vfio.Sample;

// A set of page indices with a population count; runs of consecutive pages are taken lowest first.
internal sealed class PageBitmap(long pageCount)
{
    private readonly ulong[] _words = new ulong[(pageCount + 63) / 64];
    private long _scanWord; // every word below it is zero

    public long Count { get; private set; }

    public bool Set(long page)
    {
        ref ulong w = ref _words[page >> 6];
        ulong bit = 1UL << (int)(page & 63);
        if ((w & bit) != 0)
            return false;
        w |= bit;
        Count++;
        _scanWord = Math.Min(_scanWord, page >> 6);
        return true;
    }

    public bool Clear(long page)
    {
        ref ulong w = ref _words[page >> 6];
        ulong bit = 1UL << (int)(page & 63);
        if ((w & bit) == 0)
            return false;
        w &= ~bit;
        Count--;
        return true;
    }

    public bool IsSet(long page) => (_words[page >> 6] & (1UL << (int)(page & 63))) != 0;

    public void SetAll()
    {
        Array.Fill(_words, ulong.MaxValue);
        long tail = pageCount & 63;
        if (tail != 0)
            _words[^1] = (1UL << (int)tail) - 1;
        Count = pageCount;
        _scanWord = 0;
    }

    public void ClearAll()
    {
        Array.Clear(_words);
        Count = 0;
        _scanWord = 0;
    }

    /// <summary>
    /// Removes the lowest set page and the set pages right after it, at most <paramref name="maxRun"/> in all; false
    /// when empty.
    /// </summary>
    public bool TakeRun(int maxRun, out long first, out int count)
    {
        first = -1;
        count = 0;
        if (Count == 0)
            return false;
        while (_words[_scanWord] == 0)
            _scanWord++;
        first = (_scanWord << 6) + BitOperations.TrailingZeroCount(_words[_scanWord]);
        while (count < maxRun && first + count < pageCount && IsSet(first + count))
        {
            Clear(first + count);
            count++;
        }
        return true;
    }

    /// <summary>How many runs <see cref="TakeRun"/> would take until empty (each run cut at <paramref name="maxRun"/> pages).</summary>
    public long CountRuns(int maxRun)
    {
        long runs = 0, length = 0;
        for (long wi = _scanWord; wi < _words.Length; wi++)
        {
            ulong w = _words[wi];
            if (w == 0)
            {
                length = 0;
                continue;
            }
            for (int b = 0; b < 64; b++)
            {
                if ((w & (1UL << b)) == 0)
                {
                    length = 0;
                }
                else
                {
                    if (length == 0 || length == maxRun)
                    {
                        runs++;
                        length = 0;
                    }
                    length++;
                }
            }
        }
        return runs;
    }
}
