using System.Numerics;

namespace Vfio.Sample;

// A set of page indices with a population count and a rotating search for the next set bit.
internal sealed class PageBitmap(long pageCount)
{
    private readonly ulong[] _words = new ulong[(pageCount + 63) / 64];
    private long _scanWord;

    public long Count { get; private set; }

    public bool Set(long page)
    {
        ref ulong w = ref _words[page >> 6];
        ulong bit = 1UL << (int)(page & 63);
        if ((w & bit) != 0)
            return false;
        w |= bit;
        Count++;
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
    }

    public void ClearAll()
    {
        Array.Clear(_words);
        Count = 0;
    }

    /// <summary>Removes and returns some set page, or −1 when empty.</summary>
    public long TakeAny()
    {
        if (Count == 0)
            return -1;
        for (long i = 0; i < _words.Length; i++)
        {
            long wi = (_scanWord + i) % _words.Length;
            ulong w = _words[wi];
            if (w != 0)
            {
                _scanWord = wi;
                long page = (wi << 6) + BitOperations.TrailingZeroCount(w);
                Clear(page);
                return page;
            }
        }
        return -1;
    }
}
