/*
 * The differential-test oracle: Xen's own ring.h and netif.h macros, compiled as they
 * are, behind a few functions that the Rust tests call. Nothing here re-implements the
 * protocol; every function is one macro (or a field read), so the test compares the
 * Rust ring with the original C, byte for byte.
 */
#include <stdint.h>
#include <stddef.h>
#include <string.h>

/* The current interface: ring.h then leaves the barriers to the includer. */
#define __XEN_INTERFACE_VERSION__ 0x00040e00
#define xen_mb()  __sync_synchronize()
#define xen_rmb() __asm__ __volatile__("" ::: "memory")
#define xen_wmb() __asm__ __volatile__("" ::: "memory")

#include <xen/io/netif.h>

#define PAGE 4096

/* ---- layout ---------------------------------------------------------------------- */

#define L(name, expr) size_t oracle_##name(void) { return (expr); }
L(tx_req_size, sizeof(struct netif_tx_request))
L(tx_req_gref, offsetof(struct netif_tx_request, gref))
L(tx_req_offset, offsetof(struct netif_tx_request, offset))
L(tx_req_flags, offsetof(struct netif_tx_request, flags))
L(tx_req_id, offsetof(struct netif_tx_request, id))
L(tx_req_size_field, offsetof(struct netif_tx_request, size))
L(tx_rsp_size, sizeof(struct netif_tx_response))
L(tx_rsp_id, offsetof(struct netif_tx_response, id))
L(tx_rsp_status, offsetof(struct netif_tx_response, status))
L(rx_req_size, sizeof(struct netif_rx_request))
L(rx_req_id, offsetof(struct netif_rx_request, id))
L(rx_req_pad, offsetof(struct netif_rx_request, pad))
L(rx_req_gref, offsetof(struct netif_rx_request, gref))
L(rx_rsp_size, sizeof(struct netif_rx_response))
L(rx_rsp_id, offsetof(struct netif_rx_response, id))
L(rx_rsp_offset, offsetof(struct netif_rx_response, offset))
L(rx_rsp_flags, offsetof(struct netif_rx_response, flags))
L(rx_rsp_status, offsetof(struct netif_rx_response, status))
L(extra_size, sizeof(struct netif_extra_info))
L(extra_align, _Alignof(struct netif_extra_info))
L(extra_type, offsetof(struct netif_extra_info, type))
L(extra_flags, offsetof(struct netif_extra_info, flags))
L(extra_u, offsetof(struct netif_extra_info, u))
L(extra_gso_size, offsetof(struct netif_extra_info, u.gso.size))
L(extra_gso_type, offsetof(struct netif_extra_info, u.gso.type))
L(extra_gso_features, offsetof(struct netif_extra_info, u.gso.features))
L(extra_mcast_addr, offsetof(struct netif_extra_info, u.mcast.addr))
L(extra_hash_type, offsetof(struct netif_extra_info, u.hash.type))
L(extra_hash_algorithm, offsetof(struct netif_extra_info, u.hash.algorithm))
L(extra_hash_value, offsetof(struct netif_extra_info, u.hash.value))
L(ctrl_req_size, sizeof(struct xen_netif_ctrl_request))
L(ctrl_req_data, offsetof(struct xen_netif_ctrl_request, data))
L(ctrl_rsp_size, sizeof(struct xen_netif_ctrl_response))
L(ctrl_rsp_status, offsetof(struct xen_netif_ctrl_response, status))
L(ctrl_rsp_data, offsetof(struct xen_netif_ctrl_response, data))
L(sring_req_prod, offsetof(struct netif_tx_sring, req_prod))
L(sring_req_event, offsetof(struct netif_tx_sring, req_event))
L(sring_rsp_prod, offsetof(struct netif_tx_sring, rsp_prod))
L(sring_rsp_event, offsetof(struct netif_tx_sring, rsp_event))
L(sring_pvt, offsetof(struct netif_tx_sring, pvt))
L(sring_pad, offsetof(struct netif_tx_sring, __pad))
L(sring_ring, offsetof(struct netif_tx_sring, ring))
L(tx_slot_size, sizeof(union netif_tx_sring_entry))
L(rx_slot_size, sizeof(union netif_rx_sring_entry))
L(tx_ring_size, __CONST_RING_SIZE(netif_tx, PAGE))
L(rx_ring_size, __CONST_RING_SIZE(netif_rx, PAGE))
L(front_ring_size, sizeof(struct netif_tx_front_ring))
L(back_ring_size, sizeof(struct netif_tx_back_ring))

long oracle_nr_slots_min(void) { return XEN_NETIF_NR_SLOTS_MIN; }
long oracle_max_tx_size(void) { return XEN_NETIF_MAX_TX_SIZE; }
long oracle_rsp_dropped(void) { return NETIF_RSP_DROPPED; }
long oracle_rsp_error(void) { return NETIF_RSP_ERROR; }
long oracle_rsp_okay(void) { return NETIF_RSP_OKAY; }
long oracle_rsp_null(void) { return NETIF_RSP_NULL; }
long oracle_nettxf(int bit) {
    static const long v[] = { NETTXF_csum_blank, NETTXF_data_validated, NETTXF_more_data,
                              NETTXF_extra_info };
    return v[bit];
}
long oracle_netrxf(int bit) {
    static const long v[] = { NETRXF_data_validated, NETRXF_csum_blank, NETRXF_more_data,
                              NETRXF_extra_info, NETRXF_gso_prefix };
    return v[bit];
}
long oracle_extra_const(int i) {
    static const long v[] = { XEN_NETIF_EXTRA_TYPE_NONE, XEN_NETIF_EXTRA_TYPE_GSO,
                              XEN_NETIF_EXTRA_TYPE_MCAST_ADD, XEN_NETIF_EXTRA_TYPE_MCAST_DEL,
                              XEN_NETIF_EXTRA_TYPE_HASH, XEN_NETIF_EXTRA_TYPE_MAX,
                              XEN_NETIF_EXTRA_FLAG_MORE, XEN_NETIF_GSO_TYPE_TCPV4,
                              XEN_NETIF_GSO_TYPE_TCPV6 };
    return v[i];
}

/* ---- ring operations, one macro each, for both netif rings ------------------------- */

#define RING_OPS(K, REQ, RSP)                                                           \
void K##_front_init(struct K##_front_ring *r, void *page)                               \
{ XEN_FRONT_RING_INIT(r, (struct K##_sring *)page, PAGE); }                             \
void K##_front_attach(struct K##_front_ring *r, void *page, RING_IDX i)                 \
{ FRONT_RING_ATTACH(r, (struct K##_sring *)page, i, PAGE); }                            \
void K##_back_attach(struct K##_back_ring *r, void *page, RING_IDX i)                   \
{ BACK_RING_ATTACH(r, (struct K##_sring *)page, i, PAGE); }                             \
unsigned K##_free_requests(struct K##_front_ring *r) { return RING_FREE_REQUESTS(r); }  \
int K##_full(struct K##_front_ring *r) { return RING_FULL(r); }                         \
void K##_put_request(struct K##_front_ring *r, const REQ *q)                            \
{ *RING_GET_REQUEST(r, r->req_prod_pvt) = *q; r->req_prod_pvt++; }                      \
void K##_push_requests(struct K##_front_ring *r) { RING_PUSH_REQUESTS(r); }             \
int K##_push_requests_and_check_notify(struct K##_front_ring *r)                        \
{ int n; RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(r, n); return n; }                         \
unsigned K##_unconsumed_requests(struct K##_back_ring *r)                               \
{ return RING_HAS_UNCONSUMED_REQUESTS(r); }                                             \
int K##_request_prod_overflow(struct K##_back_ring *r, RING_IDX prod)                   \
{ return RING_REQUEST_PROD_OVERFLOW(r, prod); }                                         \
int K##_request_cons_overflow(struct K##_back_ring *r, RING_IDX cons)                   \
{ return RING_REQUEST_CONS_OVERFLOW(r, cons); }                                         \
void K##_take_request(struct K##_back_ring *r, REQ *out)                                \
{ RING_COPY_REQUEST(r, r->req_cons, out); r->req_cons++; }                              \
void K##_put_response(struct K##_back_ring *r, const RSP *p)                            \
{ *RING_GET_RESPONSE(r, r->rsp_prod_pvt) = *p; r->rsp_prod_pvt++; }                     \
void K##_push_responses(struct K##_back_ring *r) { RING_PUSH_RESPONSES(r); }            \
int K##_push_responses_and_check_notify(struct K##_back_ring *r)                        \
{ int n; RING_PUSH_RESPONSES_AND_CHECK_NOTIFY(r, n); return n; }                        \
int K##_final_check_for_requests(struct K##_back_ring *r)                               \
{ int w; RING_FINAL_CHECK_FOR_REQUESTS(r, w); return w; }                               \
unsigned K##_unconsumed_responses(struct K##_front_ring *r)                             \
{ return RING_HAS_UNCONSUMED_RESPONSES(r); }                                            \
int K##_response_prod_overflow(struct K##_front_ring *r, RING_IDX prod)                 \
{ return RING_RESPONSE_PROD_OVERFLOW(r, prod); }                                        \
void K##_take_response(struct K##_front_ring *r, RSP *out)                              \
{ RING_COPY_RESPONSE(r, r->rsp_cons, out); r->rsp_cons++; }                             \
int K##_final_check_for_responses(struct K##_front_ring *r)                             \
{ int w; RING_FINAL_CHECK_FOR_RESPONSES(r, w); return w; }

RING_OPS(netif_tx, struct netif_tx_request, struct netif_tx_response)
RING_OPS(netif_rx, struct netif_rx_request, struct netif_rx_response)
