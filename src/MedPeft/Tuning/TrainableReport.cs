using System.Text.Json.Nodes;
using TorchSharp;
using static TorchSharp.torch;
using MedPeft.Models;

namespace MedPeft.Tuning;

public sealed record TowerCount(string Tower, long Trainable, long Total);

/// <summary>What a strategy trains: unique parameters (tied tensors once), overall and per tower.</summary>
public sealed record TrainableReport(long Trainable, long Total, IReadOnlyList<TowerCount> Towers, IReadOnlyList<string> TrainableNames)
{
    public double Share => Total == 0 ? 0 : (double)Trainable / Total;

    public static TrainableReport Of(nn.Module model, TowerLayout layout)
    {
        long trainable = 0, total = 0;
        var perTower = layout.Towers.Keys.ToDictionary(t => t, _ => (Trainable: 0L, Total: 0L));
        var names = new List<string>();
        foreach (var (name, p) in ModelUtils.UniqueParameters(model))
        {
            long n = p.numel();
            total += n;
            var tower = layout.TowerOf(name) ?? "other";
            perTower.TryAdd(tower, (0, 0));
            var cur = perTower[tower];
            if (p.requires_grad) { trainable += n; names.Add(name); cur.Trainable += n; }
            cur.Total += n;
            perTower[tower] = cur;
        }
        return new TrainableReport(trainable, total,
            perTower.Select(kv => new TowerCount(kv.Key, kv.Value.Trainable, kv.Value.Total)).ToList(), names);
    }

    public JsonObject ToJson()
    {
        var towers = new JsonObject();
        foreach (var t in Towers) towers[t.Tower] = new JsonObject { ["trainable"] = t.Trainable, ["total"] = t.Total };
        return new JsonObject { ["total"] = Total, ["trainable"] = Trainable, ["towers"] = towers };
    }
}
