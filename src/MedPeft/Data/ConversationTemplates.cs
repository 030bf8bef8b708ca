namespace MedPeft.Data;

/// <summary>LLaVA's conversation separator styles (llava/conversation.py) that MedPeft's templates use.</summary>
public enum SeparatorStyle { Single, Two, Llama2 }

/// <summary>Where the &lt;image&gt; placeholder goes in the first user message: before the question ("&lt;image&gt;\nQ",
/// LLaVA 1.5 / LLaVA-Med v1.5 model_vqa.py) or after it ("Q\n&lt;image&gt;", LLaVA-Med v1 model_vqa_med.py, where the
/// image patches follow the question).</summary>
public enum ImagePlacement { BeforeQuestion, AfterQuestion }

/// <summary>One LLaVA conversation template, rendered as get_prompt() renders it after append_message(user, question
/// with image) and append_message(assistant, None): the text the model continues. <see cref="Stop"/> is the string
/// the repos cut generated text at (conv.sep for SINGLE, sep2 otherwise).</summary>
public sealed record ConversationTemplate(
    string Name,
    string Description,
    string System,
    string UserRole,
    string AssistantRole,
    SeparatorStyle Style,
    string Sep,
    string Sep2,
    IReadOnlyList<(string Role, string Message)> FewShot,
    ImagePlacement Image)
{
    public string Stop => Style == SeparatorStyle.Single ? Sep : Sep2;

    /// <summary>The user message with the image placeholder where the template's repo puts it.</summary>
    public string UserMessage(string question)
    {
        var q = question.Replace(TextTokenizers.ImageToken, "").Trim();
        return Image == ImagePlacement.BeforeQuestion ? $"{TextTokenizers.ImageToken}\n{q}" : $"{q}\n{TextTokenizers.ImageToken}";
    }

    /// <summary>The generation prompt for one question about one image.</summary>
    public string Prompt(string question)
    {
        var messages = FewShot.Append((UserRole, UserMessage(question))).Append((AssistantRole, (string?)null)).ToList();
        switch (Style)
        {
            case SeparatorStyle.Single:
            {
                var ret = System + Sep;
                foreach (var (role, message) in messages)
                    ret += message is null ? role + ":" : role + ": " + message + Sep;
                return ret;
            }
            case SeparatorStyle.Two:
            {
                string[] seps = [Sep, Sep2];
                var ret = System + seps[0];
                for (int i = 0; i < messages.Count; i++)
                    ret += messages[i].Item2 is string m ? messages[i].Item1 + ": " + m + seps[i % 2] : messages[i].Item1 + ":";
                return ret;
            }
            default:
            {
                // LLAMA_2: [INST] (<<SYS>> block when the system prompt is non-empty) user [/INST] answer sep2 …
                var ret = "";
                for (int i = 0; i < messages.Count; i++)
                {
                    if (messages[i].Item2 is not string m) continue;
                    if (i == 0 && System.Length > 0) m = $"<<SYS>>\n{System}\n<</SYS>>\n\n" + m;
                    ret += i % 2 == 0 ? Sep + $"[INST] {m} [/INST]" : " " + m + " " + Sep2;
                }
                return Sep.Length > 0 ? ret.TrimStart(Sep.ToCharArray()) : ret;
            }
        }
    }

    /// <summary>Generated text cut at the template's stop string and trimmed (model_vqa*.py's post-processing).</summary>
    public string CleanOutput(string generated)
    {
        var i = Stop.Length > 0 ? generated.IndexOf(Stop, StringComparison.Ordinal) : -1;
        return (i >= 0 ? generated[..i] : generated).Trim();
    }
}

/// <summary>The named templates (<c>--template</c>) and the default for a model folder.</summary>
public static class ConversationTemplates
{
    /// <summary>LLaVA-Med v1 (microsoft/LLaVA-Med, v1 code): conv_templates["simple"], the default conv-mode of
    /// llava/eval/model_vqa_med.py — SINGLE style with "###", roles Human/Assistant, a one-turn greeting as few-shot
    /// context, the image after the question.</summary>
    public static readonly ConversationTemplate LlavaMedV1 = new(
        "llava-med-v1", "LLaVA-Med v1 (conv \"simple\", ###-separated, image after the question)",
        "A chat between a curious human and an artificial intelligence assistant. " +
        "The assistant gives helpful, detailed, and polite answers to the human's questions.",
        "Human", "Assistant", SeparatorStyle.Single, "###", "###",
        [("Human", "Hi!"), ("Assistant", "Hi there!  How can I help you today?\n")],
        ImagePlacement.AfterQuestion);

    /// <summary>LLaVA-Med v1.5 (microsoft/LLaVA-Med main): conv_mistral_instruct, LLAMA_2 style with an empty system
    /// prompt and sep "" — "[INST] &lt;image&gt;\nQ [/INST]"; README's eval uses --conv-mode mistral_instruct.</summary>
    public static readonly ConversationTemplate LlavaMedV15 = new(
        "llava-med-v1.5", "LLaVA-Med v1.5 / Mistral-instruct ([INST] <image>\\nQ [/INST])",
        "", "USER", "ASSISTANT", SeparatorStyle.Llama2, "", "</s>", [], ImagePlacement.BeforeQuestion);

    /// <summary>LLaVA 1.5 (haotian-liu/LLaVA): conv_vicuna_v1, TWO style — "SYSTEM USER: &lt;image&gt;\nQ ASSISTANT:".</summary>
    public static readonly ConversationTemplate LlavaV1 = new(
        "llava-v1", "LLaVA 1.5 / Vicuna v1 (USER: <image>\\nQ ASSISTANT:)",
        "A chat between a curious user and an artificial intelligence assistant. " +
        "The assistant gives helpful, detailed, and polite answers to the user's questions.",
        "USER", "ASSISTANT", SeparatorStyle.Two, " ", "</s>", [], ImagePlacement.BeforeQuestion);

    public static readonly IReadOnlyDictionary<string, ConversationTemplate> Named =
        new[] { LlavaMedV1, LlavaMedV15, LlavaV1 }.ToDictionary(t => t.Name);

    public static ConversationTemplate Get(string name) => Named.TryGetValue(name, out var t) ? t
        : throw new MedPeftException($"--template {name}: unknown (known: {string.Join(", ", Named.Keys)})");

    /// <summary>The template a model folder was trained with: Mistral language model ⇒ llava-med-v1.5; an original
    /// LLaVA / LLaVA-Med v1 layout with a LLaMA model ⇒ llava-med-v1; otherwise (HF llava-hf checkpoints) llava-v1.</summary>
    public static ConversationTemplate DefaultFor(bool mistral, bool originalLayout) =>
        mistral ? LlavaMedV15 : originalLayout ? LlavaMedV1 : LlavaV1;
}
