// The bench's one entry: the benches the CLI runs, their options and documents, and the parsers of
// the units their options are written in. Nothing outside bench/ imports a module below this one.
export { runBench, type BenchOptions, type FullBenchDocument } from './run';
export { runKvBench, formatKvTable, type KvBenchOptions, type KvBenchDocument } from './sections/kvcache/kvcache';
export { runDatasetBench, formatDatasetTable, type DatasetBenchOptions, type DatasetBenchDocument } from './sections/datasets';
export { runEngineBench, formatEngineTable, type EngineBenchOptions, type EngineRun } from './sections/engines';
export { runFallbackBench, formatFallbackTable, type FallbackBenchOptions, type FallbackRun } from './sections/fallback';
export { WORKLOAD_NAMES, TOOL_NAMES } from './sections/matrix';
export type { BenchDocument } from './output/report';
export type { Tool } from './support/records';
export { parseDuration, parseSize } from './support/units';
export { runHttpBench, formatHttpTable, type HttpBenchOptions, type HttpRun } from './sections/http';
