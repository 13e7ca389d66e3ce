/* dpdk-sys shim: exported wrappers for DPDK's static-inline functions and
 * thread-locals, so Rust can call them. One wrapper per inline; nothing else. */
#ifndef DPF_SHIM_H
#define DPF_SHIM_H
#include <stdint.h>
#include <rte_mbuf.h>
#include <rte_ring.h>
#include <rte_ethdev.h>

uint16_t dpf_eth_rx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **rx_pkts, uint16_t nb_pkts);
uint16_t dpf_eth_tx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **tx_pkts, uint16_t nb_pkts);
struct rte_mbuf *dpf_pktmbuf_alloc(struct rte_mempool *mp);
int dpf_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs, unsigned count);
void dpf_pktmbuf_free(struct rte_mbuf *m);
char *dpf_pktmbuf_append(struct rte_mbuf *m, uint16_t len);
int dpf_pktmbuf_trim(struct rte_mbuf *m, uint16_t len);
unsigned dpf_ring_mp_enqueue_burst(struct rte_ring *r, void *const *obj_table, unsigned n, unsigned *free_space);
unsigned dpf_ring_sc_dequeue_burst(struct rte_ring *r, void **obj_table, unsigned n, unsigned *available);
unsigned dpf_ring_count(const struct rte_ring *r);
unsigned dpf_lcore_id(void);
int dpf_errno(void);
uint64_t dpf_rdtsc(void);
unsigned dpf_mempool_avail_count(const struct rte_mempool *mp);
/* RSS hash types DPF asks for (RTE_BIT64 macros bindgen cannot expand). */
uint64_t dpf_rss_hf_ip_tcp_udp(void);
#endif
