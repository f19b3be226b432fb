// A signal mask survives exec, so a parent may pass on SIGINT/SIGTERM blocked; serve, send and receive stop on
// them. A precaution: the unanswered SIGTERM seen in tests came from a nohup'ed background run, not from a mask.
_ = Vfio.Interop.Interop.UnblockTerminationSignals();

// Before the runtime starts a worker or a socket operation, which fix both settings (RuntimeTuning says why).
Vfio.Cli.RuntimeTuning.Apply(args);

return await Vfio.Cli.CliApp.RunAsync(args).ConfigureAwait(false);
