using Google.Protobuf;

namespace MedPeft.Experiments;

/// <summary>CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) and TFRecord's masked form.</summary>
public static class Crc32C
{
    static readonly uint[] Table = Enumerable.Range(0, 256).Select(i =>
    {
        uint c = (uint)i;
        for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0x82F63B78u ^ (c >> 1) : c >> 1;
        return c;
    }).ToArray();

    public static uint Compute(ReadOnlySpan<byte> data)
    {
        uint c = 0xFFFFFFFFu;
        foreach (var b in data) c = Table[(c ^ b) & 0xFF] ^ (c >> 8);
        return c ^ 0xFFFFFFFFu;
    }

    /// <summary>TFRecord stores CRCs masked (rotate right by 15, add a constant) so a CRC of data that itself holds
    /// CRCs stays well distributed.</summary>
    public static uint Mask(uint crc) => ((crc >> 15) | (crc << 17)) + 0xA282EAD8u;
}

/// <summary>One scalar of an event file.</summary>
public sealed record TbScalar(string Tag, long Step, float Value, double WallTime);

/// <summary>Writes TensorBoard event files: TFRecord framing (uint64 length, masked CRC-32C of the length, data,
/// masked CRC-32C of the data; little-endian) around tensorflow.Event protobufs — the first carries
/// file_version "brain.Event:2", the rest a Summary with simple_value scalars. Encoded field by field with
/// Google.Protobuf's CodedOutputStream (Event: wall_time = 1 double, step = 2 int64, file_version = 3 string,
/// summary = 5; Summary.value = 1; Value: tag = 1, simple_value = 2 float), so no generated classes are needed.</summary>
public sealed class TensorBoardWriter : IDisposable
{
    readonly FileStream _file;
    readonly string _tmp, _path;

    /// <summary>A file named events.out.tfevents.* in <paramref name="dir"/> (TensorBoard finds files by that name).
    /// The name is fixed per run folder and the file is written beside it then renamed, so a rerun replaces it.</summary>
    public TensorBoardWriter(string dir, double wallTime)
    {
        Directory.CreateDirectory(dir);
        _path = Path.Combine(dir, "events.out.tfevents.0.medpeft");
        _tmp = _path + $".tmp-{Environment.ProcessId}";
        _file = new FileStream(_tmp, FileMode.Create, FileAccess.Write);
        WriteRecord(Event(wallTime, 0, o => o.WriteString("brain.Event:2"), fileVersion: true));
    }

    public string FilePath => _path;

    public void Scalar(string tag, long step, float value, double wallTime) =>
        WriteRecord(Event(wallTime, step, o =>
        {
            var v = Message(w => { w.WriteTag(1, WireFormat.WireType.LengthDelimited); w.WriteString(tag); w.WriteTag(2, WireFormat.WireType.Fixed32); w.WriteFloat(value); });
            var summary = Message(w => { w.WriteTag(1, WireFormat.WireType.LengthDelimited); w.WriteBytes(ByteString.CopyFrom(v)); });
            o.WriteBytes(ByteString.CopyFrom(summary));
        }, fileVersion: false));

    static byte[] Event(double wallTime, long step, Action<CodedOutputStream> payload, bool fileVersion) => Message(o =>
    {
        o.WriteTag(1, WireFormat.WireType.Fixed64); o.WriteDouble(wallTime);
        if (step != 0) { o.WriteTag(2, WireFormat.WireType.Varint); o.WriteInt64(step); }
        o.WriteTag(fileVersion ? 3 : 5, WireFormat.WireType.LengthDelimited);
        payload(o);
    });

    static byte[] Message(Action<CodedOutputStream> write)
    {
        using var ms = new MemoryStream();
        using (var o = new CodedOutputStream(ms, leaveOpen: true)) write(o);
        return ms.ToArray();
    }

    public static byte[] Frame(byte[] data)
    {
        var record = new byte[8 + 4 + data.Length + 4];
        BitConverter.TryWriteBytes(record.AsSpan(0, 8), (ulong)data.Length);
        BitConverter.TryWriteBytes(record.AsSpan(8, 4), Crc32C.Mask(Crc32C.Compute(record.AsSpan(0, 8))));
        data.CopyTo(record, 12);
        BitConverter.TryWriteBytes(record.AsSpan(12 + data.Length, 4), Crc32C.Mask(Crc32C.Compute(data)));
        return record;
    }

    void WriteRecord(byte[] data) => _file.Write(Frame(data));

    public void Dispose()
    {
        _file.Flush(flushToDisk: true);
        _file.Dispose();
        File.Move(_tmp, _path, overwrite: true);
    }
}

/// <summary>Reads what <see cref="TensorBoardWriter"/> (or TensorFlow) wrote: verifies both CRCs of every record and
/// decodes Event / Summary.Value scalars (simple_value), skipping fields it does not know.</summary>
public static class TensorBoardReader
{
    public sealed record EventFile(string FileVersion, IReadOnlyList<TbScalar> Scalars);

    public static EventFile Read(string path)
    {
        var bytes = File.ReadAllBytes(path);
        string version = "";
        var scalars = new List<TbScalar>();
        int pos = 0;
        while (pos < bytes.Length)
        {
            if (pos + 12 > bytes.Length) throw new MedPeftException($"{path}: truncated record header at byte {pos}");
            ulong len = BitConverter.ToUInt64(bytes, pos);
            if (BitConverter.ToUInt32(bytes, pos + 8) != Crc32C.Mask(Crc32C.Compute(bytes.AsSpan(pos, 8))))
                throw new MedPeftException($"{path}: length CRC mismatch at byte {pos}");
            if ((ulong)(pos + 16) + len > (ulong)bytes.Length) throw new MedPeftException($"{path}: truncated record at byte {pos}");
            var data = bytes.AsSpan(pos + 12, (int)len);
            if (BitConverter.ToUInt32(bytes, pos + 12 + (int)len) != Crc32C.Mask(Crc32C.Compute(data)))
                throw new MedPeftException($"{path}: data CRC mismatch at byte {pos}");
            ParseEvent(data.ToArray(), ref version, scalars);
            pos += 16 + (int)len;
        }
        return new EventFile(version, scalars);
    }

    static void ParseEvent(byte[] data, ref string version, List<TbScalar> scalars)
    {
        var input = new CodedInputStream(data);
        double wall = 0; long step = 0; byte[]? summary = null;
        uint tag;
        while ((tag = input.ReadTag()) != 0)
            switch (WireFormat.GetTagFieldNumber(tag))
            {
                case 1: wall = input.ReadDouble(); break;
                case 2: step = input.ReadInt64(); break;
                case 3: version = input.ReadString(); break;
                case 5: summary = input.ReadBytes().ToByteArray(); break;
                default: input.SkipLastField(); break;
            }
        if (summary is null) return;
        var s = new CodedInputStream(summary);
        while ((tag = s.ReadTag()) != 0)
        {
            if (WireFormat.GetTagFieldNumber(tag) != 1) { s.SkipLastField(); continue; }
            var v = new CodedInputStream(s.ReadBytes().ToByteArray());
            string name = ""; float value = float.NaN;
            uint vt;
            while ((vt = v.ReadTag()) != 0)
                switch (WireFormat.GetTagFieldNumber(vt))
                {
                    case 1: name = v.ReadString(); break;
                    case 2: value = v.ReadFloat(); break;
                    default: v.SkipLastField(); break;
                }
            scalars.Add(new TbScalar(name, step, value, wall));
        }
    }
}
