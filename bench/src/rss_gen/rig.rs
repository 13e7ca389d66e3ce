//! The rig's plan, pure: which transport links the generator to the DUT
//! and the devargs of both ends, and where the generator and dpf's lcores
//! run. No DPDK, no I/O; `bench rss-gen`, the rig sweep and the tests of
//! this module use it.
//!
//! Transports: memif (the DUT is the server, the generator the client)
//! and vhost-user (the DUT owns `net_vhost` ports and creates the socket,
//! the generator is a `virtio_user` front end that connects to it). Both
//! are created with N queue pairs; neither hashes, so dpf is told the
//! frames arrive already placed (`rx_placement = "toeplitz"`). Under
//! `--no-huge` EAL backs its memory with a memfd, which is what vhost-user
//! shares with the back end.

use std::path::Path;

use serde::Serialize;

/// How the generator's links reach the DUT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// memif: DUT server, generator client.
    Memif,
    /// vhost-user: DUT `net_vhost` (socket owner), generator `virtio_user`.
    Vhost,
}

impl Transport {
    /// Name in reports and file names.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Memif => "memif",
            Transport::Vhost => "vhost",
        }
    }

    /// The devargs of the DUT's end of link `index` (0 LAN, 1 WAN) with
    /// `queues` queue pairs, listening on `socket`.
    pub fn dut_device(self, index: usize, socket: &Path, queues: u16) -> String {
        match self {
            // memif takes its queue counts from the ports' configuration.
            Transport::Memif => format!(
                "net_memif{index},role=server,socket={},id=0,socket-abstract=no,rsize=10",
                socket.display()
            ),
            Transport::Vhost => format!(
                "net_vhost{index},iface={},queues={queues}",
                socket.display()
            ),
        }
    }

    /// The devargs of the generator's end of link `index`, connecting to
    /// `socket`.
    pub fn generator_device(self, index: usize, socket: &Path, queues: u16) -> String {
        match self {
            Transport::Memif => format!(
                "net_memif{index},role=client,socket={},id=0,socket-abstract=no,rsize=10",
                socket.display()
            ),
            // 1024 descriptors per queue: a 32-frame burst of every queue
            // fits many times over while the generator is sending.
            Transport::Vhost => format!(
                "virtio_user{index},path={},queues={queues},queue_size=1024",
                socket.display()
            ),
        }
    }

    /// The name DPDK gives the device of `devargs` (what comes before the
    /// first comma).
    pub fn device_name(devargs: &str) -> &str {
        devargs.split(',').next().unwrap_or(devargs)
    }
}

/// Mbufs and EAL memory of one end of the rig with `queues` queue pairs
/// on each of its two ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct RigMemory {
    /// Mbufs in the pool.
    pub mbufs: u32,
    /// EAL `-m`, MB.
    pub eal_mb: u32,
}

impl RigMemory {
    /// Enough mbufs to fill every rx and tx ring of both ports (1024
    /// descriptors each) plus 8191 in flight, and the EAL memory for them
    /// (2.5 KiB per mbuf with its 2 KiB data room) plus 256 MB for the
    /// rest.
    pub fn for_queues(queues: u16) -> RigMemory {
        let mbufs = 2 * 2 * 1024 * u32::from(queues) + 8191;
        RigMemory {
            mbufs,
            eal_mb: 256 + (mbufs * 5).div_ceil(2 * 1024),
        }
    }
}

/// Where the rig's processes run, as CPU ids.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CpuPlan {
    /// The generator's single lcore.
    pub generator: usize,
    /// dpf's main lcore (the control thread, which sleeps between its
    /// ~1 ms rounds): beside the generator, off the workers' CPUs.
    pub dpf_main: usize,
    /// dpf's worker lcores, in worker order.
    pub workers: Vec<usize>,
    /// Workers share CPUs (more workers than CPUs left for them): the
    /// figures are functional, not a scaling measurement.
    pub shared: bool,
}

impl CpuPlan {
    /// The plan for `workers` workers on the CPUs `cpus` (the process's
    /// affinity, ascending): the generator on the first, the workers one
    /// per CPU on the others, round robin when there are fewer CPUs than
    /// workers; on a single CPU everything shares it. `None` without CPUs
    /// or workers.
    pub fn new(cpus: &[usize], workers: usize) -> Option<CpuPlan> {
        let (&generator, rest) = cpus.split_first()?;
        if workers == 0 {
            return None;
        }
        let pool = if rest.is_empty() { &cpus[..1] } else { rest };
        Some(CpuPlan {
            generator,
            dpf_main: generator,
            workers: (0..workers).map(|w| pool[w % pool.len()]).collect(),
            shared: workers > rest.len(),
        })
    }

    /// dpf's EAL `--lcores`: lcore 0 (main) on `dpf_main`, lcore w+1 on
    /// worker w's CPU.
    pub fn dpf_lcores(&self) -> String {
        std::iter::once(format!("0@{}", self.dpf_main))
            .chain(
                self.workers
                    .iter()
                    .enumerate()
                    .map(|(w, cpu)| format!("{}@{cpu}", w + 1)),
            )
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devargs_of_both_ends() {
        let s = Path::new("/tmp/r/lan.sock");
        assert_eq!(
            Transport::Vhost.dut_device(0, s, 4),
            "net_vhost0,iface=/tmp/r/lan.sock,queues=4"
        );
        assert_eq!(
            Transport::Vhost.generator_device(1, s, 4),
            "virtio_user1,path=/tmp/r/lan.sock,queues=4,queue_size=1024"
        );
        assert_eq!(
            Transport::Memif.dut_device(1, s, 2),
            "net_memif1,role=server,socket=/tmp/r/lan.sock,id=0,socket-abstract=no,rsize=10"
        );
        assert!(Transport::Memif
            .generator_device(0, s, 2)
            .starts_with("net_memif0,role=client,socket=/tmp/r/lan.sock,"));
        assert_eq!(
            Transport::device_name("virtio_user1,path=/x"),
            "virtio_user1"
        );
        assert_eq!(Transport::device_name("net_null0"), "net_null0");
    }

    #[test]
    fn memory_grows_with_queues() {
        assert_eq!(
            RigMemory::for_queues(1),
            RigMemory {
                mbufs: 12_287,
                eal_mb: 286
            }
        );
        let big = RigMemory::for_queues(64);
        assert_eq!(big.mbufs, 270_335);
        assert_eq!(big.eal_mb, 916);
    }

    #[test]
    fn generator_alone_workers_on_the_others() {
        let many: Vec<usize> = (0..16).collect();
        let p = CpuPlan::new(&many, 4).unwrap();
        assert_eq!((p.generator, p.dpf_main), (0, 0));
        assert_eq!(p.workers, [1, 2, 3, 4]);
        assert!(!p.shared);
        assert_eq!(p.dpf_lcores(), "0@0,1@1,2@2,3@3,4@4");
        // An affinity mask that is not 0..n.
        let p = CpuPlan::new(&[2, 5, 7], 2).unwrap();
        assert_eq!((p.generator, p.workers.clone()), (2, vec![5, 7]));
        assert_eq!(p.dpf_lcores(), "0@2,1@5,2@7");
    }

    #[test]
    fn workers_share_what_is_left() {
        // This two-CPU machine: every worker on CPU 1.
        let p = CpuPlan::new(&[0, 1], 4).unwrap();
        assert_eq!(p.workers, [1, 1, 1, 1]);
        assert!(p.shared);
        let p = CpuPlan::new(&[0, 1, 2], 3).unwrap();
        assert_eq!(p.workers, [1, 2, 1]);
        assert!(p.shared);
        let p = CpuPlan::new(&[0, 1], 1).unwrap();
        assert!(!p.shared);
        // One CPU: all on it.
        let p = CpuPlan::new(&[3], 2).unwrap();
        assert_eq!(
            (p.generator, p.workers.clone(), p.shared),
            (3, vec![3, 3], true)
        );
        assert_eq!(CpuPlan::new(&[], 1), None);
        assert_eq!(CpuPlan::new(&[0, 1], 0), None);
    }
}
