/*
 * Offsets and sizes of the credit area as C lays out dba_credit.h, and a reader that
 * takes fields through the C struct (for the byte-level comparison with the Rust
 * publisher). Needs no Xen header: always compiled.
 */
#include <stddef.h>
#include <stdint.h>
#include "dba_credit.h"

struct credit_field { const char *name; size_t offset; size_t size; };

#define F1(f) { #f, offsetof(struct dba_credit_area_v1, f), \
                sizeof(((struct dba_credit_area_v1 *)0)->f) }
#define F2(f) { #f, offsetof(struct dba_credit_area_v2, f), \
                sizeof(((struct dba_credit_area_v2 *)0)->f) }

static const struct credit_field fields[] = {
    F1(magic), F1(version), F1(area_bytes), F1(seq), F1(flags), F1(bytes_per_sec),
    F1(bytes_burst), F1(packets_per_sec), F1(packets_burst), F1(period_us),
    F1(front_version), F1(front_seq), F1(applied_generation), F1(tx_packets), F1(tx_bytes),
    F1(dropped_packets), F1(dropped_bytes), F1(held),
    F2(rx_bytes_per_sec), F2(rx_bytes_burst), F2(rx_packets_per_sec), F2(rx_packets_burst),
    F2(back_seq), F2(tx_shaped_bps_frames), F2(tx_shaped_bps_bytes),
    F2(tx_shaped_pps_frames), F2(rx_shaped_bps_frames), F2(rx_shaped_bps_bytes),
    F2(rx_shaped_pps_frames),
};

size_t credit_oracle_nfields(void) { return sizeof(fields) / sizeof(fields[0]); }
const char *credit_oracle_field(size_t i, size_t *offset, size_t *size)
{
    if (i >= credit_oracle_nfields())
        return NULL;
    *offset = fields[i].offset;
    *size = fields[i].size;
    return fields[i].name;
}
size_t credit_oracle_v1_size(void) { return sizeof(struct dba_credit_area_v1); }
size_t credit_oracle_v2_size(void) { return sizeof(struct dba_credit_area_v2); }
size_t credit_oracle_area_offset(void) { return DBA_CREDIT_AREA_OFFSET; }
uint32_t credit_oracle_magic(void) { return DBA_CREDIT_MAGIC; }

/* Every value field of a version-2 area read through the C struct, in the order of
 * `fields` (a u16/u32 widened to u64). `page` is the whole 4 KiB TX ring page. */
void credit_oracle_read_v2(const void *page, uint64_t *out)
{
    const struct dba_credit_area_v2 *a =
        (const struct dba_credit_area_v2 *)((const char *)page + DBA_CREDIT_AREA_OFFSET);
    const struct dba_credit_area_v1 *b = &a->v1;
    size_t i = 0;
    out[i++] = b->magic; out[i++] = b->version; out[i++] = b->area_bytes; out[i++] = b->seq;
    out[i++] = b->flags; out[i++] = b->bytes_per_sec; out[i++] = b->bytes_burst;
    out[i++] = b->packets_per_sec; out[i++] = b->packets_burst; out[i++] = b->period_us;
    out[i++] = b->front_version; out[i++] = b->front_seq; out[i++] = b->applied_generation;
    out[i++] = b->tx_packets; out[i++] = b->tx_bytes; out[i++] = b->dropped_packets;
    out[i++] = b->dropped_bytes; out[i++] = b->held;
    out[i++] = a->rx_bytes_per_sec; out[i++] = a->rx_bytes_burst;
    out[i++] = a->rx_packets_per_sec; out[i++] = a->rx_packets_burst; out[i++] = a->back_seq;
    out[i++] = a->tx_shaped_bps_frames; out[i++] = a->tx_shaped_bps_bytes;
    out[i++] = a->tx_shaped_pps_frames; out[i++] = a->rx_shaped_bps_frames;
    out[i++] = a->rx_shaped_bps_bytes; out[i++] = a->rx_shaped_pps_frames;
}
