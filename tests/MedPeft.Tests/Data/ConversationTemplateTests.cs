using MedPeft.Data;

namespace MedPeft.Tests.Data;

public class ConversationTemplateTests
{
    [Fact]
    public void LlavaMed_v15_is_mistral_instruct_with_the_image_first()
    {
        Assert.Equal("[INST] <image>\nIs there a nodule? [/INST]", ConversationTemplates.Get("llava-med-v1.5").Prompt("Is there a nodule?"));
        Assert.Equal("yes", ConversationTemplates.LlavaMedV15.CleanOutput(" yes </s> more"));
    }

    [Fact]
    public void LlavaMed_v1_is_the_simple_conv_with_the_image_after_the_question()
    {
        Assert.Equal(
            "A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the human's questions." +
            "###Human: Hi!###Assistant: Hi there!  How can I help you today?\n###Human: Is there a nodule?\n<image>###Assistant:",
            ConversationTemplates.Get("llava-med-v1").Prompt("<image> Is there a nodule?"));
        Assert.Equal("no", ConversationTemplates.LlavaMedV1.CleanOutput(" no\n###Human: why"));
    }

    [Fact]
    public void Llava_v1_is_vicuna_v1()
    {
        Assert.Equal(
            "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions. " +
            "USER: <image>\nWhat organ? ASSISTANT:", ConversationTemplates.LlavaV1.Prompt("What organ?"));
    }

    [Fact]
    public void Defaults_follow_the_model_and_unknown_names_fail()
    {
        Assert.Same(ConversationTemplates.LlavaMedV15, ConversationTemplates.DefaultFor(mistral: true, originalLayout: true));
        Assert.Same(ConversationTemplates.LlavaMedV1, ConversationTemplates.DefaultFor(mistral: false, originalLayout: true));
        Assert.Same(ConversationTemplates.LlavaV1, ConversationTemplates.DefaultFor(mistral: false, originalLayout: false));
        Assert.Contains("unknown", Assert.Throws<MedPeftException>(() => ConversationTemplates.Get("chatml")).Message);
    }
}
