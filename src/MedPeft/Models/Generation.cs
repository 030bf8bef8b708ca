using TorchSharp;
using static TorchSharp.torch;

namespace MedPeft.Models;

/// <summary>Decoding settings, named as in HF's GenerationConfig. Lengths count new tokens (HF's max_new_tokens /
/// min_new_tokens): BLIP's VQA recipe "max_length 10, min_length 1" with a one-token prompt is max 9 / min 0 new.</summary>
public sealed record GenerationOptions(
    int MaxNewTokens = 9,
    int MinNewTokens = 0,
    int NumBeams = 1,
    double LengthPenalty = 1.0,
    int EosTokenId = 102,
    int PadTokenId = 0);

/// <summary>Generated ids per row (prompt included, right-padded with pad after EOS, as HF returns them) and, for
/// greedy search, the raw next-token logits of every step ([steps][B, V]).</summary>
public sealed record GenerationResult(long[][] Sequences, Tensor[]? Scores);

/// <summary>Maps the running ids [N, L] to next-token logits [N, V] for the last position.</summary>
public delegate Tensor NextTokenLogits(Tensor inputIds);

/// <summary>Greedy and beam search for any decoder, following HF's GenerationMixin (no sampling). The caller expands
/// encoder states to B·num_beams rows (repeat_interleave) for beam search.</summary>
public static class Generation
{
    public static GenerationResult Generate(NextTokenLogits step, Tensor prompt, GenerationOptions o) =>
        o.NumBeams <= 1 ? Greedy(step, prompt, o) : BeamSearch(step, prompt, o);

    public static GenerationResult Greedy(NextTokenLogits step, Tensor prompt, GenerationOptions o, bool keepScores = false)
    {
        using var scope = torch.NewDisposeScope();
        long b = prompt.shape[0];
        var ids = prompt.to(ScalarType.Int64);
        var unfinished = torch.ones(b, dtype: ScalarType.Int64, device: ids.device);
        var scores = new List<Tensor>();
        for (int t = 0; t < o.MaxNewTokens; t++)
        {
            var logits = step(ids);
            if (keepScores) scores.Add(logits.detach().clone().MoveToOuterDisposeScope());
            if (t < o.MinNewTokens) logits = logits.index_fill(1, torch.tensor(new long[] { o.EosTokenId }, device: logits.device), double.NegativeInfinity);
            var next = logits.argmax(-1);
            next = next * unfinished + o.PadTokenId * (1 - unfinished);
            ids = torch.cat([ids, next.unsqueeze(1)], 1);
            unfinished = unfinished * next.ne(o.EosTokenId).to(ScalarType.Int64);
            if (unfinished.max().item<long>() == 0) break;
        }
        return new GenerationResult(ToRows(ids), keepScores ? scores.ToArray() : null);
    }

    /// <summary>HF beam search (length_penalty, early_stopping=False): 2·K candidates per step, a finished hypothesis is
    /// scored by sum log-prob / generated_len^length_penalty, a batch row is done once its worst kept hypothesis beats
    /// the best score still reachable.</summary>
    /// <param name="reorder">Called after each step with the source row of every kept beam [B·K], so a caller's KV
    /// cache can follow the beams (HF's _reorder_cache).</param>
    public static GenerationResult BeamSearch(NextTokenLogits step, Tensor prompt, GenerationOptions o, Action<Tensor>? reorder = null)
    {
        using var scope = torch.NewDisposeScope();
        int k = o.NumBeams;
        long bk = prompt.shape[0];
        if (bk % k != 0) throw new ArgumentException("prompt rows must be batch × num_beams");
        int batch = (int)(bk / k);
        int promptLen = (int)prompt.shape[1];
        var ids = prompt.to(ScalarType.Int64);
        var beamScores = new double[batch * k];
        for (int i = 0; i < beamScores.Length; i++) beamScores[i] = i % k == 0 ? 0 : -1e9;
        var hyps = Enumerable.Range(0, batch).Select(_ => new List<(double Score, long[] Ids)>()).ToArray();
        var done = new bool[batch];

        for (int t = 0; t < o.MaxNewTokens; t++)
        {
            using var stepScope = torch.NewDisposeScope();
            var logp = step(ids).log_softmax(-1);
            if (t < o.MinNewTokens) logp = logp.index_fill(1, torch.tensor(new long[] { o.EosTokenId }, device: logp.device), double.NegativeInfinity);
            long v = logp.shape[1];
            var total = (logp + torch.tensor(beamScores, device: logp.device).to(logp.dtype).unsqueeze(1)).view(batch, k * v);
            var (topScores, topIdx) = total.topk(2 * k, dim: 1);
            var ts = topScores.to(ScalarType.Float64).cpu().data<double>().ToArray();
            var ti = topIdx.cpu().data<long>().ToArray();
            var curIds = ids.cpu().data<long>().ToArray();
            int curLen = (int)ids.shape[1];

            var nextBeamIdx = new long[batch * k];
            var nextTokens = new long[batch * k];
            var nextScores = new double[batch * k];
            for (int bi = 0; bi < batch; bi++)
            {
                if (done[bi]) { for (int j = 0; j < k; j++) { nextBeamIdx[bi * k + j] = bi * k; nextTokens[bi * k + j] = o.PadTokenId; nextScores[bi * k + j] = 0; } continue; }
                int filled = 0;
                for (int r = 0; r < 2 * k && filled < k; r++)
                {
                    double s = ts[bi * 2 * k + r];
                    long flat = ti[bi * 2 * k + r];
                    long beam = bi * k + flat / v, token = flat % v;
                    if (token == o.EosTokenId)
                    {
                        if (r >= k) continue;   // an EOS outside the top K is not a finished hypothesis
                        var seq = curIds.AsSpan((int)(beam * curLen), curLen).ToArray();
                        AddHypothesis(hyps[bi], k, seq, s, curLen + 1 - promptLen, o.LengthPenalty);
                    }
                    else
                    {
                        nextBeamIdx[bi * k + filled] = beam; nextTokens[bi * k + filled] = token; nextScores[bi * k + filled] = s; filled++;
                    }
                }
                double best = ts[bi * 2 * k];
                done[bi] = hyps[bi].Count >= k && hyps[bi].Min(h => h.Score) >= best / Math.Pow(curLen - promptLen + 1, o.LengthPenalty)
                           || done[bi];
            }
            beamScores = nextScores;
            var sel = torch.tensor(nextBeamIdx, device: ids.device);
            reorder?.Invoke(sel);
            ids = torch.cat([ids.index_select(0, sel), torch.tensor(nextTokens, device: ids.device).unsqueeze(1)], 1).MoveToOuterDisposeScope();
            if (done.All(d => d)) break;
        }

        // Finalize: running beams of unfinished rows compete with the finished hypotheses.
        var final = ids.cpu().data<long>().ToArray();
        int len = (int)ids.shape[1];
        var result = new long[batch][];
        for (int bi = 0; bi < batch; bi++)
        {
            if (!done[bi])
                for (int j = 0; j < k; j++)
                    AddHypothesis(hyps[bi], k, final.AsSpan((bi * k + j) * len, len).ToArray(), beamScores[bi * k + j], len - promptLen, o.LengthPenalty);
            var bestHyp = hyps[bi].OrderByDescending(h => h.Score).First().Ids;
            var withEos = bestHyp.Length - promptLen < o.MaxNewTokens ? [.. bestHyp, o.EosTokenId] : bestHyp;
            result[bi] = withEos;
        }
        int width = result.Max(r => r.Length);
        return new GenerationResult(result.Select(r => r.Concat(Enumerable.Repeat((long)o.PadTokenId, width - r.Length)).ToArray()).ToArray(), null);
    }

    static void AddHypothesis(List<(double Score, long[] Ids)> hyps, int k, long[] ids, double sumLogProbs, int generatedLen, double lengthPenalty)
    {
        double score = sumLogProbs / Math.Pow(Math.Max(generatedLen, 1), lengthPenalty);
        if (hyps.Count < k) { hyps.Add((score, ids)); return; }
        int worst = 0;
        for (int i = 1; i < hyps.Count; i++) if (hyps[i].Score < hyps[worst].Score) worst = i;
        if (score > hyps[worst].Score) hyps[worst] = (score, ids);
    }

    static long[][] ToRows(Tensor ids)
    {
        long b = ids.shape[0], l = ids.shape[1];
        var flat = ids.cpu().data<long>().ToArray();
        return Enumerable.Range(0, (int)b).Select(i => flat.AsSpan(i * (int)l, (int)l).ToArray()).ToArray();
    }
}
