// Package otlpexport delivers OTLP metrics (already converted from scrapes) to an
// OTLP receiver over gRPC or HTTP/protobuf without losing samples across receiver
// outages and process restarts.
//
// # Flow
//
// Enqueue splits a scrape batch into records of at most Config.MaxBatchBytes, writes
// them to a bounded queue and returns; it never waits for the network. Run sends the
// queue in order, one request at a time, merging consecutive records up to
// MaxBatchBytes (a marshalled ExportMetricsServiceRequest is a sequence of
// resource_metrics fields, so concatenating records is a valid, merged request). A
// record leaves the queue only when the receiver acknowledged it (at-least-once), or
// when the receiver rejected it permanently, or when the queue is full and it is the
// oldest.
//
// # Queue format (QueueDir set)
//
// The queue directory holds append-only segment files named "<20-digit id>.seg", an
// "ack" file and a "lock" file (flock: one exporter per directory). A segment starts
// with the 8-byte header "TOTQSEG1" followed by records:
//
//	offset size field
//	0      4    magic "OTQR"
//	4      4    CRC-32C (Castagnoli) of bytes [8, 28+length)
//	8      4    payload length, uint32 little endian
//	12     8    data points in the payload, uint64 little endian
//	20     8    enqueue time, Unix nanoseconds, int64 little endian
//	28     n    payload: a marshalled ExportMetricsServiceRequest
//
// The ack file (20 bytes: segment id, offset, both uint64 little endian, and a CRC-32C
// of the two) says that every record before that position has been consumed (sent,
// rejected or dropped). Segments wholly before it are deleted.
//
// Recovery on New reads every segment, checks each record's magic, length and CRC,
// skips records before the ack position, and on a bad record counts it
// (queue_corrupt_records_total, and its data points in
// queue_dropped_data_points_total{reason="corrupt"} when its header is plausible) and
// resynchronises at the next valid record magic, so a torn tail or a damaged record in
// the middle costs only that record. Writes always go to a new segment after a
// restart, so nothing is ever appended behind a torn record.
//
// # Durability
//
// Enqueue writes all records of a batch with one write and one fsync before it
// returns (segment creation also fsyncs the directory): once Enqueue returned nil,
// neither a process crash nor a power loss loses the batch. At a 15 s scrape interval
// one fsync per batch costs nothing worth saving with group commit. The ack file is
// rewritten after every acknowledged request without fsync (Close syncs it): a process
// crash loses nothing and resends nothing, a power loss may resend batches acknowledged
// shortly before it (duplicates, never loss). A record that is being sent when the full
// queue drops it is counted as dropped even if that send then succeeds.
//
// Disk use stays below QueueMaxBytes plus one segment (consumed records in a partly
// consumed segment) plus one segment header per segment. Without QueueDir the same
// bound applies to memory and a restart loses the queue.
//
// # Metrics
//
// With namespace ns (series names "<ns>_<name>"; without namespace just "<name>"):
//
//	export_requests_total{result=success|retryable_error|permanent_error}
//	export_duration_seconds                   histogram of export request durations
//	export_data_points_total                  data points acknowledged by the receiver
//	queue_entries                             records in the queue
//	queue_bytes                               bytes of those records (headers included)
//	queue_oldest_age_seconds                  age of the oldest queued record
//	queue_dropped_data_points_total{reason=full|permanent_error|corrupt}
//	queue_corrupt_records_total               damaged records skipped
//	partial_success_rejected_data_points_total data points a receiver rejected in a partial success
package otlpexport
