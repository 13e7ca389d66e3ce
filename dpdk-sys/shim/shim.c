/* See shim.h. Each function forwards to the DPDK inline of the same name. */
#include "shim.h"
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_cycles.h>

uint16_t dpf_eth_rx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **rx_pkts, uint16_t nb_pkts)
{ return rte_eth_rx_burst(port_id, queue_id, rx_pkts, nb_pkts); }

uint16_t dpf_eth_tx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **tx_pkts, uint16_t nb_pkts)
{ return rte_eth_tx_burst(port_id, queue_id, tx_pkts, nb_pkts); }

struct rte_mbuf *dpf_pktmbuf_alloc(struct rte_mempool *mp)
{ return rte_pktmbuf_alloc(mp); }

int dpf_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs, unsigned count)
{ return rte_pktmbuf_alloc_bulk(mp, mbufs, count); }

void dpf_pktmbuf_free(struct rte_mbuf *m)
{ rte_pktmbuf_free(m); }

char *dpf_pktmbuf_append(struct rte_mbuf *m, uint16_t len)
{ return rte_pktmbuf_append(m, len); }

int dpf_pktmbuf_trim(struct rte_mbuf *m, uint16_t len)
{ return rte_pktmbuf_trim(m, len); }

unsigned dpf_ring_mp_enqueue_burst(struct rte_ring *r, void *const *obj_table, unsigned n, unsigned *free_space)
{ return rte_ring_mp_enqueue_burst(r, obj_table, n, free_space); }

unsigned dpf_ring_sc_dequeue_burst(struct rte_ring *r, void **obj_table, unsigned n, unsigned *available)
{ return rte_ring_sc_dequeue_burst(r, obj_table, n, available); }

unsigned dpf_ring_count(const struct rte_ring *r)
{ return rte_ring_count(r); }

unsigned dpf_lcore_id(void)
{ return rte_lcore_id(); }

int dpf_errno(void)
{ return rte_errno; }

uint64_t dpf_rdtsc(void)
{ return rte_rdtsc(); }

unsigned dpf_mempool_avail_count(const struct rte_mempool *mp)
{ return rte_mempool_avail_count(mp); }

uint64_t dpf_rss_hf_ip_tcp_udp(void)
{ return RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP; }
