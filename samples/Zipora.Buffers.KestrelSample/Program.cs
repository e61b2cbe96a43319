using Zipora.Buffers.KestrelSample;

await KestrelSampleApp.Build(args).RunAsync();
