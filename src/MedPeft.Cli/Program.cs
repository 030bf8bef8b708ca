using System.CommandLine;
using MedPeft;
using MedPeft.Cli;

// `medpeft`: a thin shell over the MedPeft library. Every command is in Commands.cs; errors the user can fix are
// MedPeftException (one line, exit 1); bad arguments are one line too (exit 2).
ConsoleUi.Configure();
var root = new RootCommand("MedPeft — parameter-efficient fine-tuning of medical vision-language models (LayerNorm tuning and friends).");
foreach (var command in Commands.All()) root.Add(command);

var parse = root.Parse(args);
if (parse.Errors.Count > 0)
{
    var where = parse.CommandResult.Command == root ? "medpeft" : $"medpeft {parse.CommandResult.Command.Name}";
    Console.Error.WriteLine($"medpeft: {parse.Errors[0].Message} (see '{where} --help')");
    return 2;
}
// --reproducible: its environment must be in place before libtorch, MKL and glibc read it, i.e. before this process
// started; restart with it (the child runs the command).
if (parse.CommandResult.Command.Options.FirstOrDefault(o => o.Name == RuntimeOptions.ReproducibleName) is Option<bool> reproducible
    && parse.GetValue(reproducible) && MedPeft.Reproducibility.MissingVariables().Count > 0)
    return MedPeft.Reproducibility.Reexec(args);
try
{
    // Our handler below prints MedPeftException as one line; System.CommandLine's would print a stack trace.
    return parse.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
}
catch (MedPeftException e)
{
    Console.Error.WriteLine($"medpeft: error: {e.Message}");
    return 1;
}
