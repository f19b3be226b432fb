namespace Vfio.Tests.Uapi;

// spec §1.6: the Linux x86_64 errno values the protocol uses, and the one exception type that carries them.
public class ErrnoTests
{
    [Theory]
    [InlineData(Errno.EINTR, 4)]
    [InlineData(Errno.EIO, 5)]
    [InlineData(Errno.E2BIG, 7)]
    [InlineData(Errno.EBADF, 9)]
    [InlineData(Errno.EAGAIN, 11)]
    [InlineData(Errno.ENOMEM, 12)]
    [InlineData(Errno.EFAULT, 14)]
    [InlineData(Errno.EBUSY, 16)]
    [InlineData(Errno.ENODEV, 19)]
    [InlineData(Errno.EINVAL, 22)]
    [InlineData(Errno.ENFILE, 23)]
    [InlineData(Errno.EMFILE, 24)]
    [InlineData(Errno.ENOTTY, 25)]
    [InlineData(Errno.ESPIPE, 29)]
    [InlineData(Errno.ENOMSG, 42)]
    [InlineData(Errno.EOVERFLOW, 75)]
    [InlineData(Errno.EOPNOTSUPP, 95)]
    [InlineData(Errno.ENOTCONN, 107)]
    public void ErrnoValues_MatchLinuxX86_64_spec_1_6(Errno errno, int value)
        => Assert.Equal(value, (int)errno);

    [Fact]
    public void VfioException_CarriesErrnoAndOperation_AndNamesTheErrnoFirst()
    {
        var e = new VfioException(Errno.ENODEV, "read migration data", "stream 3 was terminated");
        Assert.Equal(Errno.ENODEV, e.Errno);
        Assert.Equal("read migration data", e.Operation);
        Assert.Equal("stream 3 was terminated", e.Detail);
        Assert.Equal("ENODEV: read migration data: stream 3 was terminated", e.Message);
        Assert.Equal(19, e.HResult);
        Assert.IsAssignableFrom<IOException>(e);

        var plain = new VfioException(Errno.EINVAL, "SET device_state");
        Assert.Equal("EINVAL: SET device_state: invalid argument", plain.Message);
        Assert.Equal("E200", VfioException.NameOf((Errno)200));
        Assert.Equal("error 200", VfioException.Describe((Errno)200));
        Assert.Equal(Errno.E2BIG, Assert.Throws<VfioException>(() => VfioException.Throw(Errno.E2BIG, "op")).Errno);
    }

    [Fact]
    public void EveryNamedErrno_HasItsOwnDescription()
    {
        foreach (var errno in Enum.GetValues<Errno>().Where(e => e != Errno.None))
            Assert.False(VfioException.Describe(errno).StartsWith("error ", StringComparison.Ordinal), $"{errno} has no description");
    }
}
