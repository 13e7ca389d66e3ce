//! Ethernet ports: configuration of N rx + N tx queues (RSS with the
//! symmetric Toeplitz key when the device offers it), start/stop/close,
//! promiscuous mode, MAC filters, link status and statistics.

use super::{check, DpdkError, Mempool};
use std::ffi::{CStr, CString};

/// A DPDK port id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortId(pub u16);

/// A queue index on a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct QueueId(pub u16);

/// How to set a port up.
#[derive(Clone, Copy, Debug)]
pub struct PortConfig {
    /// Receive queues (one per worker).
    pub rx_queues: u16,
    /// Transmit queues (one per worker, plus one for the control thread).
    pub tx_queues: u16,
    /// Descriptors per rx queue.
    pub rx_desc: u16,
    /// Descriptors per tx queue.
    pub tx_desc: u16,
    /// Put the port in promiscuous mode.
    pub promiscuous: bool,
}

/// Link state as `rte_eth_link_get_nowait` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LinkStatus {
    /// Link is up.
    pub up: bool,
    /// Speed in Mbit/s.
    pub speed_mbps: u32,
}

/// Basic port counters (`rte_eth_stats`).
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct PortStats {
    /// Packets received.
    pub ipackets: u64,
    /// Packets transmitted.
    pub opackets: u64,
    /// Bytes received.
    pub ibytes: u64,
    /// Bytes transmitted.
    pub obytes: u64,
    /// Packets dropped by the device because no rx descriptor was free.
    pub imissed: u64,
    /// Receive errors.
    pub ierrors: u64,
    /// Transmit errors.
    pub oerrors: u64,
    /// Mbuf allocation failures on receive.
    pub rx_nombuf: u64,
}

/// A configured port. Stopped and closed on drop.
#[derive(Debug)]
pub struct Port {
    id: PortId,
    name: String,
    rss: bool,
    /// The device's redirection table size (0: none).
    reta_size: u16,
    started: bool,
    rx_queues: u16,
    tx_queues: u16,
}

impl Port {
    /// Creates a virtual device from devargs (`net_pcap0,rx_pcap=...`) and
    /// returns its port id.
    pub fn create_vdev(devargs: &str) -> Result<PortId, DpdkError> {
        let (name, args) = devargs.split_once(',').unwrap_or((devargs, ""));
        let cname = CString::new(name).map_err(|_| DpdkError::new("device name", 22))?;
        let cargs = CString::new(args).map_err(|_| DpdkError::new("device arguments", 22))?;
        // SAFETY: both are valid C strings; EAL is initialised (callers hold Eal).
        let rc = unsafe { dpdk_sys::rte_vdev_init(cname.as_ptr(), cargs.as_ptr()) };
        check(&format!("creating device '{devargs}'"), rc)?;
        Port::find(name)
    }

    /// Finds a probed device by name (a vdev name or a PCI address).
    pub fn find(name: &str) -> Result<PortId, DpdkError> {
        let cname = CString::new(name).map_err(|_| DpdkError::new("device name", 22))?;
        let mut id = 0u16;
        // SAFETY: valid C string and a valid out pointer.
        let rc = unsafe { dpdk_sys::rte_eth_dev_get_port_by_name(cname.as_ptr(), &mut id) };
        check(&format!("finding port '{name}'"), rc)?;
        Ok(PortId(id))
    }

    /// The most rx and tx queues the device offers.
    pub fn max_queues(id: PortId) -> Result<(u16, u16), DpdkError> {
        let mut info = dpdk_sys::rte_eth_dev_info::default();
        // SAFETY: info is a valid out pointer; DPDK checks the port id.
        check("rte_eth_dev_info_get", unsafe {
            dpdk_sys::rte_eth_dev_info_get(id.0, &mut info)
        })?;
        Ok((info.max_rx_queues, info.max_tx_queues))
    }

    /// Configures `id` with `conf`, its rx queues drawing from `pool`.
    pub fn configure(id: PortId, conf: &PortConfig, pool: &Mempool) -> Result<Port, DpdkError> {
        let p = id.0;
        let mut info = dpdk_sys::rte_eth_dev_info::default();
        // SAFETY: valid port id checked by DPDK; info is a valid out pointer.
        check("rte_eth_dev_info_get", unsafe {
            dpdk_sys::rte_eth_dev_info_get(p, &mut info)
        })?;
        // SAFETY: info.device is set by info_get; rte_dev_name returns a
        // NUL-terminated string owned by the device.
        let name = unsafe {
            if info.driver_name.is_null() {
                format!("port{p}")
            } else {
                CStr::from_ptr(info.driver_name)
                    .to_string_lossy()
                    .into_owned()
            }
        };
        if conf.rx_queues > info.max_rx_queues || conf.tx_queues > info.max_tx_queues {
            return Err(DpdkError {
                op: format!("configuring port {p} ({name})"),
                code: 22,
                msg: format!(
                    "needs {} rx / {} tx queues, device has {} / {}",
                    conf.rx_queues, conf.tx_queues, info.max_rx_queues, info.max_tx_queues
                ),
            });
        }
        let mut eth_conf = dpdk_sys::rte_eth_conf::default();
        // RSS only when the device offers it and there is more than one
        // queue (virtio_user refuses RTE_ETH_MQ_RX_RSS).
        // SAFETY: a pure function of constants.
        let wanted_hf = unsafe { dpdk_sys::dpf_rss_hf_ip_tcp_udp() };
        let rss_hf = wanted_hf & info.flow_type_rss_offloads;
        let mut key = crate::rss::SYMMETRIC_KEY;
        let rss = conf.rx_queues > 1 && rss_hf != 0;
        if rss {
            eth_conf.rxmode.mq_mode = dpdk_sys::rte_eth_rx_mq_mode_RTE_ETH_MQ_RX_RSS;
            eth_conf.rx_adv_conf.rss_conf.rss_hf = rss_hf;
            let key_len = if info.hash_key_size == 0 {
                40
            } else {
                info.hash_key_size.min(52)
            };
            eth_conf.rx_adv_conf.rss_conf.rss_key = key.as_mut_ptr();
            eth_conf.rx_adv_conf.rss_conf.rss_key_len = key_len;
        }
        // SAFETY: eth_conf is fully initialised; the key buffer outlives the
        // call (DPDK copies it).
        check(&format!("configuring port {p} ({name})"), unsafe {
            dpdk_sys::rte_eth_dev_configure(p, conf.rx_queues, conf.tx_queues, &eth_conf)
        })?;
        let mut rx_desc = conf.rx_desc;
        let mut tx_desc = conf.tx_desc;
        // SAFETY: valid pointers to our locals.
        check("rte_eth_dev_adjust_nb_rx_tx_desc", unsafe {
            dpdk_sys::rte_eth_dev_adjust_nb_rx_tx_desc(p, &mut rx_desc, &mut tx_desc)
        })?;
        // SAFETY: plain query.
        let socket = unsafe { dpdk_sys::rte_eth_dev_socket_id(p) };
        let socket = if socket < 0 { 0 } else { socket as u32 };
        for q in 0..conf.rx_queues {
            // SAFETY: queue index < configured count; a null rxconf means
            // the driver default; the pool outlives the port (callers drop
            // ports first).
            check(&format!("setting up rx queue {q} of port {p}"), unsafe {
                dpdk_sys::rte_eth_rx_queue_setup(
                    p,
                    q,
                    rx_desc,
                    socket,
                    std::ptr::null(),
                    pool.as_ptr(),
                )
            })?;
        }
        for q in 0..conf.tx_queues {
            // SAFETY: queue index < configured count; default txconf.
            check(&format!("setting up tx queue {q} of port {p}"), unsafe {
                dpdk_sys::rte_eth_tx_queue_setup(p, q, tx_desc, socket, std::ptr::null())
            })?;
        }
        if conf.promiscuous {
            // SAFETY: plain call on a configured port. Some vdevs do not
            // support it; that is not an error for dpf.
            unsafe {
                dpdk_sys::rte_eth_promiscuous_enable(p);
            }
        }
        Ok(Port {
            id,
            name,
            rss,
            reta_size: if rss { info.reta_size } else { 0 },
            started: false,
            rx_queues: conf.rx_queues,
            tx_queues: conf.tx_queues,
        })
    }

    /// Starts the port.
    pub fn start(&mut self) -> Result<(), DpdkError> {
        // SAFETY: the port is configured with all its queues.
        check(&format!("starting port {}", self.id.0), unsafe {
            dpdk_sys::rte_eth_dev_start(self.id.0)
        })?;
        self.started = true;
        Ok(())
    }

    /// Stops the port (idempotent).
    pub fn stop(&mut self) {
        if self.started {
            // SAFETY: the port was started; stopping is allowed from the
            // main thread once workers have left their loops.
            unsafe {
                dpdk_sys::rte_eth_dev_stop(self.id.0);
            }
            self.started = false;
        }
    }

    /// The port id.
    pub fn id(&self) -> PortId {
        self.id
    }

    /// The driver's name.
    pub fn driver(&self) -> &str {
        &self.name
    }

    /// Receive and transmit queues configured.
    pub fn queues(&self) -> (u16, u16) {
        (self.rx_queues, self.tx_queues)
    }

    /// Whether the port is started.
    pub fn is_started(&self) -> bool {
        self.started
    }

    /// Whether RSS is configured.
    pub fn rss(&self) -> bool {
        self.rss
    }

    /// Programs the redirection table so that entry `i` is `common[i %
    /// common.len()]` (`common`'s length a power of two that divides the
    /// device's table): every port then sends a hash to the same queue.
    /// Call after [`Port::start`]. Fails when RSS is off, the device's
    /// table is smaller or not a multiple, or the driver refuses.
    pub fn program_reta(&self, common: &[u16]) -> Result<(), DpdkError> {
        let size = usize::from(self.reta_size);
        let refuse = |msg: String| DpdkError {
            op: format!("redirection table of port {}", self.id.0),
            code: 95,
            msg,
        };
        if !self.rss || common.is_empty() {
            return Err(refuse("RSS is not configured".into()));
        }
        if size < common.len() || size % common.len() != 0 || size % 64 != 0 {
            return Err(refuse(format!(
                "a table of {size} entries cannot repeat one of {}",
                common.len()
            )));
        }
        let mut conf = vec![dpdk_sys::rte_eth_rss_reta_entry64::default(); size / 64];
        for (g, group) in conf.iter_mut().enumerate() {
            group.mask = u64::MAX;
            for (j, e) in group.reta.iter_mut().enumerate() {
                *e = common[(g * 64 + j) % common.len()];
            }
        }
        // SAFETY: `conf` holds reta_size entries in groups of 64, as the
        // call expects; DPDK checks the port and copies the table.
        check(
            &format!("programming the redirection table of port {}", self.id.0),
            unsafe {
                dpdk_sys::rte_eth_dev_rss_reta_update(self.id.0, conf.as_mut_ptr(), self.reta_size)
            },
        )
        .map(drop)
    }

    /// The port's own MAC address.
    pub fn mac(&self) -> [u8; 6] {
        mac_of(self.id)
    }

    /// Adds a unicast MAC to the port's receive filter (a CARP virtual MAC).
    pub fn add_mac(&self, mac: [u8; 6]) -> Result<(), DpdkError> {
        let mut addr = dpdk_sys::rte_ether_addr { addr_bytes: mac };
        // SAFETY: valid port and address pointer.
        check("rte_eth_dev_mac_addr_add", unsafe {
            dpdk_sys::rte_eth_dev_mac_addr_add(self.id.0, &mut addr, 0)
        })
        .map(|_| ())
    }

    /// Removes a MAC added with [`Port::add_mac`].
    pub fn remove_mac(&self, mac: [u8; 6]) -> Result<(), DpdkError> {
        let mut addr = dpdk_sys::rte_ether_addr { addr_bytes: mac };
        // SAFETY: valid port and address pointer.
        check("rte_eth_dev_mac_addr_remove", unsafe {
            dpdk_sys::rte_eth_dev_mac_addr_remove(self.id.0, &mut addr)
        })
        .map(|_| ())
    }

    /// Link status without waiting.
    pub fn link(&self) -> LinkStatus {
        link_of(self.id)
    }

    /// Basic statistics.
    pub fn stats(&self) -> PortStats {
        stats_of(self.id)
    }

    /// Extended statistics as (name, value) pairs.
    pub fn xstats(&self) -> Vec<(String, u64)> {
        xstats_of(self.id)
    }
}

/// MAC address of a port.
pub(crate) fn mac_of(id: PortId) -> [u8; 6] {
    let mut addr = dpdk_sys::rte_ether_addr::default();
    // SAFETY: valid out pointer; an invalid port leaves it zeroed.
    unsafe {
        dpdk_sys::rte_eth_macaddr_get(id.0, &mut addr);
    }
    addr.addr_bytes
}

fn link_of(id: PortId) -> LinkStatus {
    let mut link = dpdk_sys::rte_eth_link::default();
    // SAFETY: valid out pointer.
    unsafe {
        dpdk_sys::rte_eth_link_get_nowait(id.0, &mut link);
    }
    LinkStatus {
        up: link.link_status() != 0,
        speed_mbps: link.link_speed,
    }
}

fn stats_of(id: PortId) -> PortStats {
    let mut s = dpdk_sys::rte_eth_stats::default();
    // SAFETY: valid out pointer.
    unsafe {
        dpdk_sys::rte_eth_stats_get(id.0, &mut s);
    }
    PortStats {
        ipackets: s.ipackets,
        opackets: s.opackets,
        ibytes: s.ibytes,
        obytes: s.obytes,
        imissed: s.imissed,
        ierrors: s.ierrors,
        oerrors: s.oerrors,
        rx_nombuf: s.rx_nombuf,
    }
}

fn xstats_of(id: PortId) -> Vec<(String, u64)> {
    // SAFETY: null buffers ask for the count.
    let n = unsafe { dpdk_sys::rte_eth_xstats_get(id.0, std::ptr::null_mut(), 0) };
    if n <= 0 {
        return Vec::new();
    }
    let n = n as usize;
    let mut names = vec![dpdk_sys::rte_eth_xstat_name::default(); n];
    let mut values = vec![dpdk_sys::rte_eth_xstat::default(); n];
    // SAFETY: both buffers hold n elements.
    let got_names =
        unsafe { dpdk_sys::rte_eth_xstats_get_names(id.0, names.as_mut_ptr(), n as u32) };
    // SAFETY: as above.
    let got = unsafe { dpdk_sys::rte_eth_xstats_get(id.0, values.as_mut_ptr(), n as u32) };
    if got_names < 0 || got < 0 {
        return Vec::new();
    }
    values
        .iter()
        .take(got as usize)
        .filter_map(|v| {
            let name = names.get(v.id as usize)?;
            // SAFETY: DPDK NUL-terminates names within the fixed array.
            let s = unsafe { CStr::from_ptr(name.name.as_ptr()) };
            Some((s.to_string_lossy().into_owned(), v.value))
        })
        .collect()
}

impl Drop for Port {
    fn drop(&mut self) {
        self.stop();
        // SAFETY: the port is stopped; closing releases its queues. No
        // worker uses it any more (workers are joined before ports drop).
        unsafe {
            dpdk_sys::rte_eth_dev_close(self.id.0);
        }
    }
}
