/*
 * The DBA-VM credit area as a C programmer would declare it from docs/protocol.md §2.2
 * (the tables of versions 1 and 2), independently of the Rust crate: the differential
 * ABI test (tests/credit_layout.rs) compares every offset and size below with
 * shared_ring::credit::offsets and with the tables themselves.
 *
 * Little-endian; u64 fields are naturally aligned here (the area starts 8-aligned at
 * byte 3136 of the TX ring page), which is what the "two words, low word first" rule
 * means on a little-endian machine.
 */
#ifndef DBA_CREDIT_H
#define DBA_CREDIT_H

#include <stdint.h>

#define DBA_CREDIT_AREA_OFFSET 3136
#define DBA_CREDIT_MAGIC 0x56414244u /* "DBAV" */
#define DBA_CREDIT_RATE_UNLIMITED UINT64_MAX

/* Version 1: 128 bytes. */
struct dba_credit_area_v1 {
    /* backend block */
    uint32_t magic;
    uint16_t version;
    uint16_t area_bytes;
    uint32_t seq;
    uint32_t flags;
    uint64_t bytes_per_sec;
    uint64_t bytes_burst;
    uint64_t packets_per_sec;
    uint64_t packets_burst;
    uint32_t period_us;
    uint8_t reserved0[12];
    /* frontend block */
    uint32_t front_version;
    uint32_t front_seq;
    uint32_t applied_generation;
    uint32_t reserved1;
    uint64_t tx_packets;
    uint64_t tx_bytes;
    uint64_t dropped_packets;
    uint64_t dropped_bytes;
    uint64_t held;
    uint64_t reserved2;
};

/* Version 2: the version-1 area unchanged, then 128 more bytes. */
struct dba_credit_area_v2 {
    struct dba_credit_area_v1 v1;
    /* backend RX block (under v1.seq) */
    uint64_t rx_bytes_per_sec;
    uint64_t rx_bytes_burst;
    uint64_t rx_packets_per_sec;
    uint64_t rx_packets_burst;
    uint8_t reserved3[32];
    /* backend counters block */
    uint32_t back_seq;
    uint32_t reserved4;
    uint64_t tx_shaped_bps_frames;
    uint64_t tx_shaped_bps_bytes;
    uint64_t tx_shaped_pps_frames;
    uint64_t rx_shaped_bps_frames;
    uint64_t rx_shaped_bps_bytes;
    uint64_t rx_shaped_pps_frames;
    uint64_t reserved5;
};

#endif
