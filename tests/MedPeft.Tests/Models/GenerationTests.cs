using MedPeft.Models;
using MedPeft.Models.Blip;
using TorchSharp;
using static TorchSharp.torch;

namespace MedPeft.Tests.Models;

public class GenerationTests
{
    /// <summary>A fixed next-token table: logits depend only on the last token, so the best sequence is known.</summary>
    static NextTokenLogits Table(float[,] logits) => ids =>
    {
        var last = ids[.., -1].data<long>().ToArray();
        int v = logits.GetLength(1);
        var rows = last.Select(t => Enumerable.Range(0, v).Select(j => logits[t, j]).ToArray()).ToArray();
        return torch.tensor(rows.SelectMany(r => r).ToArray(), [rows.Length, v]);
    };

    [Fact]
    public void Beam_search_finds_a_better_sequence_than_greedy()
    {
        // vocab: 0 pad, 1 start, 2 eos, 3 a, 4 b. Greedy takes 'a' (p .55) then is forced into a weak branch;
        // beam search finds 'b' followed by a near-certain eos.
        var l = new float[5, 5];
        void Row(int t, params double[] p) { for (int j = 0; j < 5; j++) l[t, j] = (float)Math.Log(p[j] + 1e-9); }
        Row(1, 0, 0, 0, 0.55, 0.45);
        Row(3, 0, 0, 0.4, 0.3, 0.3);
        Row(4, 0, 0, 0.99, 0.005, 0.005);
        var start = torch.full(1, 1, 1L);
        var greedy = Generation.Greedy(Table(l), start, new GenerationOptions(MaxNewTokens: 4, EosTokenId: 2, PadTokenId: 0));
        var beam = Generation.BeamSearch(Table(l), start.repeat_interleave(3, 0), new GenerationOptions(MaxNewTokens: 4, NumBeams: 3, EosTokenId: 2, PadTokenId: 0));
        Assert.Equal([1L, 3, 2], greedy.Sequences[0]);   // like HF, decoding stops once every row has hit EOS
        Assert.Equal([1L, 4, 2], beam.Sequences[0]);
    }

    [Fact]
    public void Min_new_tokens_blocks_an_early_eos()
    {
        var l = new float[5, 5];
        for (int t = 0; t < 5; t++) { l[t, 2] = 5; l[t, 3] = 1; }
        var start = torch.full(1, 1, 1L);
        var g = Generation.Greedy(Table(l), start, new GenerationOptions(MaxNewTokens: 3, MinNewTokens: 1, EosTokenId: 2, PadTokenId: 0));
        Assert.Equal([1L, 3, 2], g.Sequences[0]);
    }

    [Fact]
    public void Blip_beam_search_returns_one_sequence_per_row_starting_with_bos()
    {
        var config = BlipConfig.Load(Fixtures.Path("hf", "blip_vqa", "config.json"));
        using var model = new BlipForQuestionAnswering(config);
        Checkpoint.LoadSafetensors(model, Fixtures.Path("hf", "blip_vqa", "model.safetensors"));
        model.eval();
        var x = Fixtures.Load("hf", "blip_vqa", "inputs.safetensors");
        var greedy = model.Generate(x["pixel_values"], x["input_ids"], x["attention_mask"], new GenerationOptions(MaxNewTokens: 5));
        var beams = model.Generate(x["pixel_values"], x["input_ids"], x["attention_mask"], new GenerationOptions(MaxNewTokens: 5, NumBeams: 3));
        Assert.Equal(2, beams.Sequences.Length);
        Assert.All(beams.Sequences, s => Assert.Equal(config.TextConfig.BosTokenId, s[0]));
        Assert.Equal(greedy.Sequences.Length, beams.Sequences.Length);
    }
}
