// The tuning presets of AltMount's operator guide (performance and streaming pages),
// as dotted config keys. "Home" is the guide's default set ("works for most setups").
const MiB = 1024 * 1024;

export const PRESETS = [
  { name: "Home", values: {
    "streaming.max_range_size": 32 * MiB, "streaming.streaming_chunk_size": 8 * MiB, "streaming.max_download_workers": 15,
    "import.max_processor_workers": 2, "import.queue_processing_interval_seconds": 5 } },
  { name: "High-Performance", values: {
    "streaming.max_range_size": 128 * MiB, "streaming.streaming_chunk_size": 32 * MiB, "streaming.max_download_workers": 35,
    "import.max_processor_workers": 4, "import.queue_processing_interval_seconds": 2 } },
  { name: "Balanced", values: {
    "streaming.max_range_size": 64 * MiB, "streaming.streaming_chunk_size": 16 * MiB, "streaming.max_download_workers": 25,
    "import.max_processor_workers": 2, "import.queue_processing_interval_seconds": 5 } },
  { name: "Constrained", values: {
    "streaming.max_range_size": 16 * MiB, "streaming.streaming_chunk_size": 4 * MiB, "streaming.max_download_workers": 12,
    "import.max_processor_workers": 1, "import.queue_processing_interval_seconds": 10 } },
  { name: "4K", values: {
    "streaming.max_range_size": 256 * MiB, "streaming.streaming_chunk_size": 64 * MiB, "streaming.max_download_workers": 40,
    "log.level": "warn", "webdav.debug": false } },
  { name: "Multi-user", values: {
    "streaming.max_range_size": 64 * MiB, "streaming.streaming_chunk_size": 16 * MiB, "streaming.max_download_workers": 60 } },
];

/** Every key some preset sets, in a stable order. */
export const PRESET_KEYS = [...new Set(PRESETS.flatMap((p) => Object.keys(p.values)))];
