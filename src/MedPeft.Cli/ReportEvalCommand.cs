using System.CommandLine;
using System.Text.Json;
using MedPeft.Evaluation;
using MedPeft.Experiments;
using MedPeft.Models;

namespace MedPeft.Cli;

/// <summary>`medpeft eval-reports`: report generation with a LLaVA model folder on IU-Xray / MIMIC-CXR, scored with
/// BLEU-1..4, ROUGE-L and CIDEr-D.</summary>
static class ReportEvalCommand
{
    public static Command Create()
    {
        var rt = new RuntimeOptions();
        var model = new Option<string>("--model") { Description = "LLaVA model folder", Required = true };
        var data = new Option<string>("--data") { Description = "dataset folder", Required = true };
        var format = new Option<string>("--format") { Description = "iu-xray or mimic-cxr", DefaultValueFactory = _ => "iu-xray" };
        var split = new Option<string>("--split") { DefaultValueFactory = _ => "test" };
        var beams = new Option<int?>("--num-beams") { Description = "default: generation_config.json, else 1" };
        var maxNew = new Option<int?>("--max-new-tokens") { Description = $"default: generation_config.json, else {LlavaJobs.ReportTokens}" };
        var prompt = new Option<string?>("--prompt") { Description = $"the instruction (default: \"{LlavaJobs.DefaultReportPrompt}\")" };
        var template = new Option<string?>("--template") { Description = $"conversation template ({string.Join(", ", MedPeft.Data.ConversationTemplates.Named.Keys)}; default: the model's)" };
        var adapter = new Option<string?>("--adapter") { Description = "a PEFT adapter folder applied to the model first" };
        var pairsOut = new Option<string?>("--pairs") { Description = "write {\"pairs\": [...]} (the `score report` format)" };
        var json = new Option<bool>("--json") { Description = "print the scores as JSON" };
        var norm = new Option<string>("--normalization") { DefaultValueFactory = _ => "clip" };
        var c = new Command("eval-reports", "Generate a report per study with a LLaVA model (image + instruction → report) and score them (BLEU, ROUGE-L, CIDEr-D on R2Gen-cleaned text).");
        rt.AddTo(c); foreach (var o in new Option[] { model, data, format, split, beams, maxNew, prompt, template, adapter, pairsOut, json, norm }) c.Add(o);
        c.SetAction(r =>
        {
            var device = rt.Apply(r);
            var (scores, pairs) = LlavaJobs.EvaluateReports(r.GetValue(model)!, r.GetValue(data)!, r.GetValue(format)!, r.GetValue(split)!,
                new DecodingOverrides(r.GetValue(beams), r.GetValue(maxNew)), device, r.GetValue(norm)!, r.GetValue(adapter), r.GetValue(template),
                r.GetValue(prompt), line => Console.Error.WriteLine(line));
            if (r.GetValue(pairsOut) is string path) ReportPairsFile.Save(path, pairs);
            var dict = scores.ToDictionary();
            if (r.GetValue(json)) Console.WriteLine(JsonSerializer.Serialize(dict, new JsonSerializerOptions { WriteIndented = true }));
            else foreach (var (k, v) in dict) Console.WriteLine($"{k,-8} {v:F4}");
            return 0;
        });
        return c;
    }
}
