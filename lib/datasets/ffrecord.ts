// ffrecord (HFAiLab/ffrecord), the sample format of High-Flyer's training jobs on 3FS, read and
// written byte for byte as the original does: the format (ffrecord-format.ts), the reader
// (ffrecord-reader.ts), the writer of one file (ffrecord-writer.ts) and of a directory of shards
// (ffrecord-sharded.ts).
export { encodeHeader } from './ffrecord-format';
export { datasetFiles, FFRecordDataset, openDataset, SampleBatch } from './ffrecord-reader';
export type { DatasetFile, OpenDatasetOptions, ReadSamplesOptions } from './ffrecord-reader';
export { createDatasetWriter, FFRecordWriter } from './ffrecord-writer';
export type { DatasetWriterOptions } from './ffrecord-writer';
export { createShardedWriter, ShardedDatasetWriter } from './ffrecord-sharded';
export type { ShardedWriterOptions } from './ffrecord-sharded';
