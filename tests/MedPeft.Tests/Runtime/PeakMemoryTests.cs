namespace MedPeft.Tests.Runtime;

public class PeakMemoryTests
{
    [Theory]
    [InlineData("VmHWM:\t  414000 kB", 414000L * 1024)]
    [InlineData("VmHWM:\t14230240 kB", 14230240L * 1024)]
    public void Parses_proc_status_lines_whatever_the_padding(string line, long bytes) =>
        Assert.Equal(bytes, PeakMemory.ParseStatusKilobytes(line));

    [Fact]
    public void Reports_a_positive_peak_for_this_process() => Assert.True(PeakMemory.Bytes() > 1_000_000);
}
