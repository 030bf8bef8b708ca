using System.Text;
using MedPeft.Experiments;

namespace MedPeft.Tests.Experiments;

public class TensorBoardTests
{
    [Fact]
    public void Crc32c_matches_the_standard_check_values()
    {
        Assert.Equal(0xE3069283u, Crc32C.Compute("123456789"u8));              // the CRC-32C check value
        Assert.Equal(0x8A9136AAu, Crc32C.Compute(new byte[32]));                // RFC 3720 B.4: 32 bytes of zeros
        Assert.Equal(0x62A8AB43u, Crc32C.Compute(Enumerable.Repeat((byte)0xFF, 32).ToArray()));   // 32 bytes of 0xFF
        Assert.Equal(0x46DD794Eu, Crc32C.Compute(Enumerable.Range(0, 32).Select(i => (byte)i).ToArray()));   // ascending
        Assert.Equal(0xA282EAD8u, Crc32C.Mask(0));
        Assert.Equal(((0xE3069283u >> 15) | (0xE3069283u << 17)) + 0xA282EAD8u, Crc32C.Mask(0xE3069283u));
    }

    [Fact]
    public void A_record_is_framed_as_length_masked_crc_data_masked_crc()
    {
        var data = Encoding.ASCII.GetBytes("hello");
        var frame = TensorBoardWriter.Frame(data);
        Assert.Equal(8 + 4 + 5 + 4, frame.Length);
        Assert.Equal(5UL, BitConverter.ToUInt64(frame, 0));
        Assert.Equal(Crc32C.Mask(Crc32C.Compute(frame.AsSpan(0, 8))), BitConverter.ToUInt32(frame, 8));
        Assert.Equal(data, frame[12..17]);
        Assert.Equal(Crc32C.Mask(Crc32C.Compute(data)), BitConverter.ToUInt32(frame, 17));
    }

    [Fact]
    public void The_first_event_is_file_version_brain_event_2_encoded_as_protobuf()
    {
        var dir = Directory.CreateTempSubdirectory("medpeft-tb-").FullName;
        using (new TensorBoardWriter(dir, wallTime: 1.5)) { }
        var bytes = File.ReadAllBytes(Path.Combine(dir, "events.out.tfevents.0.medpeft"));
        // Event { wall_time (1, fixed64) = 1.5, file_version (3, bytes) = "brain.Event:2" }
        var expected = new byte[] { 0x09 }.Concat(BitConverter.GetBytes(1.5)).Concat(new byte[] { 0x1A, 13 }).Concat(Encoding.ASCII.GetBytes("brain.Event:2")).ToArray();
        Assert.Equal((ulong)expected.Length, BitConverter.ToUInt64(bytes, 0));
        Assert.Equal(expected, bytes[12..(12 + expected.Length)]);
    }

    [Fact]
    public void Scalars_written_are_read_back_and_corruption_is_detected()
    {
        var dir = Directory.CreateTempSubdirectory("medpeft-tb-").FullName;
        string path;
        using (var w = new TensorBoardWriter(dir, 100))
        {
            w.Scalar("train/loss", 10, 2.5f, 101);
            w.Scalar("train/loss", 20, 1.25f, 102);
            w.Scalar("test/overall_acc", 20, 71.9f, 103);
            path = w.FilePath;
        }
        var file = TensorBoardReader.Read(path);
        Assert.Equal("brain.Event:2", file.FileVersion);
        Assert.Equal([("train/loss", 10L, 2.5f), ("train/loss", 20L, 1.25f), ("test/overall_acc", 20L, 71.9f)], file.Scalars.Select(s => (s.Tag, s.Step, s.Value)));
        Assert.Equal(102, file.Scalars[1].WallTime);

        var bytes = File.ReadAllBytes(path);
        bytes[^6] ^= 0x40;   // inside the last record's data
        File.WriteAllBytes(path, bytes);
        Assert.Contains("data CRC mismatch", Assert.Throws<MedPeftException>(() => TensorBoardReader.Read(path)).Message);
    }
}
