//! Ethernet frames as the bridge sees them: which emulated host a frame comes from and goes to,
//! how big it is to the link model, where its bits may be flipped, and its UDP checksum.
//!
//! Pure functions over byte slices; anything malformed gives `None` and the bridge counts and
//! drops the frame. Every emulated host `i` has the MAC address `02:4c:63:00:HI:LO` with
//! `HI:LO = i + 1` (locally administered, unicast) and the IPv4 address
//! `10.200.HI.LO` in `10.200.0.0/16`, so the bridge never has to learn anything.
//!
//! The few header fields it needs are read with the wire codec's checked
//! [`Reader`]: no packet-parsing crate is in the lock file (pnet's `pnet_packet` is not; only
//! `pnet_datalink` and its base are), and these are a handful of fixed offsets.

use std::net::Ipv4Addr;

use livecam_system::proto::wire::codec::Reader;
use livecam_system::proto::wire::WireError;

/// Bytes of Ethernet header (no VLAN tag: the emulated hosts use none).
pub const ETHERNET_HEADER_LEN: usize = 14;
/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;
/// The most hosts an emulation can have (the /16's host numbers, less network and broadcast).
pub const MAX_HOSTS: usize = 65_534;

const MAC_PREFIX: [u8; 4] = [0x02, 0x4c, 0x63, 0x00];
/// The link model's header allowance (IPv4 + UDP) at the front of every packet.
const MODEL_HEADER_LEN: usize = 28;

/// The MAC address of emulated host `index` (`index < MAX_HOSTS`).
pub fn host_mac(index: usize) -> [u8; 6] {
    let n = (index + 1) as u16;
    let [hi, lo] = n.to_be_bytes();
    [
        MAC_PREFIX[0],
        MAC_PREFIX[1],
        MAC_PREFIX[2],
        MAC_PREFIX[3],
        hi,
        lo,
    ]
}

/// `aa:bb:..` text of a MAC address, as `ip` takes it.
pub fn mac_text(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The IPv4 address of emulated host `index` (`index < MAX_HOSTS`).
pub fn host_ip(index: usize) -> Ipv4Addr {
    let [hi, lo] = ((index + 1) as u16).to_be_bytes();
    Ipv4Addr::new(10, 200, hi, lo)
}

/// The host a MAC address belongs to, if it is one of ours (`hosts` of them).
pub fn host_of_mac(mac: &[u8], hosts: usize) -> Option<usize> {
    let mut r = Reader::new(mac);
    let (prefix, n) = (r.array::<4>().ok()?, r.u16().ok()?);
    if prefix != MAC_PREFIX || r.finish().is_err() {
        return None;
    }
    let index = usize::from(n).checked_sub(1)?;
    (index < hosts).then_some(index)
}

/// Where an IPv4 frame goes: the destination host, by its MAC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// The host that sent it (by source MAC).
    pub from: usize,
    /// The host it is for (by destination MAC).
    pub to: usize,
}

/// The route of an IPv4 unicast frame between two of the `hosts` emulated hosts; `None` for
/// anything else (broadcast, other EtherTypes, truncated, strangers, a host to itself).
pub fn route(frame: &[u8], hosts: usize) -> Option<Route> {
    if frame.len() < ETHERNET_HEADER_LEN + IPV4_HEADER_LEN {
        return None;
    }
    let mut r = Reader::new(frame);
    let (to, from) = (r.take(6).ok()?, r.take(6).ok()?);
    if r.u16().ok()? != ETHERTYPE_IPV4 {
        return None;
    }
    let to = host_of_mac(to, hosts)?;
    let from = host_of_mac(from, hosts)?;
    (from != to).then_some(Route { from, to })
}

/// The IPv4 packet's length as the link model counts it: the UDP payload of a one-packet
/// datagram of the same size on the wire (`total length - 28`, at least 0). With the model's
/// MTU at its maximum, [`wire_bytes`](livecam_system::link::wire_bytes) of it is the packet's
/// real size, so rate and queue see exactly the bytes the frame carries.
pub fn model_len(frame: &[u8]) -> usize {
    ip_total_len(frame).saturating_sub(MODEL_HEADER_LEN)
}

/// Where, in the frame, the bit positions the link model reports start: just past the 28 bytes
/// of headers the model allows for, behind the Ethernet header. IP headers are never hit, so a
/// damaged packet still reaches its host, whose checksums then judge it.
pub const FLIP_OFFSET: usize = ETHERNET_HEADER_LEN + MODEL_HEADER_LEN;

/// Bytes of an IPv4 header without options.
const IPV4_HEADER_LEN: usize = 20;

/// The fields of an IPv4 header the bridge reads.
struct Ipv4Header {
    version: u8,
    /// Header length in bytes (IHL x 4).
    header_len: usize,
    total_len: u16,
    fragment_offset: u16,
    protocol: u8,
}

impl Ipv4Header {
    /// The header at the start of `ip`; `None` when `ip` is shorter than 20 bytes.
    fn read(ip: &[u8]) -> Option<Self> {
        Self::read_fields(&mut Reader::new(ip.get(..IPV4_HEADER_LEN)?)).ok()
    }

    fn read_fields(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let version_ihl = r.u8()?;
        let _dscp_ecn = r.u8()?;
        let total_len = r.u16()?;
        let _identification = r.u16()?;
        let fragment_offset = r.u16()? & 0x1fff;
        let _ttl = r.u8()?;
        let protocol = r.u8()?;
        Ok(Ipv4Header {
            version: version_ihl >> 4,
            header_len: usize::from(version_ihl & 0x0f) * 4,
            total_len,
            fragment_offset,
            protocol,
        })
    }
}

/// The IPv4 total length of the frame's packet, bounded by what the frame holds.
fn ip_total_len(frame: &[u8]) -> usize {
    let Some(ip) = frame.get(ETHERNET_HEADER_LEN..) else {
        return 0;
    };
    Ipv4Header::read(ip).map_or(ip.len(), |h| usize::from(h.total_len).min(ip.len()))
}

/// Zeroes the UDP checksum of a frame holding the first fragment of an IPv4 UDP datagram (a
/// zero UDP checksum means "none" over IPv4, so the receiving kernel hands damaged payloads up
/// instead of discarding them). Returns whether it did.
pub fn clear_udp_checksum(frame: &mut [u8]) -> bool {
    let Some(ip) = frame.get_mut(ETHERNET_HEADER_LEN..) else {
        return false;
    };
    let Some(h) = Ipv4Header::read(ip) else {
        return false;
    };
    if h.version != 4 || h.protocol != IPPROTO_UDP || h.fragment_offset != 0 {
        return false;
    }
    let ihl = h.header_len;
    match ip.get_mut(ihl + 6..ihl + 8) {
        Some(sum) if ihl >= IPV4_HEADER_LEN => {
            sum.fill(0);
            true
        }
        _ => false,
    }
}

#[cfg(test)]
pub(crate) use tests::udp_frame;

#[cfg(test)]
mod tests {
    use super::*;

    /// An Ethernet + IPv4 + UDP frame from host `from` to host `to` with `payload` bytes.
    pub(crate) fn udp_frame(from: usize, to: usize, payload: usize, frag_offset: u16) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&host_mac(to));
        f.extend_from_slice(&host_mac(from));
        f.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        let total = (20 + 8 + payload) as u16;
        f.extend_from_slice(&[0x45, 0]);
        f.extend_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(&frag_offset.to_be_bytes());
        f.extend_from_slice(&[64, IPPROTO_UDP, 0, 0]);
        f.extend_from_slice(&host_ip(from).octets());
        f.extend_from_slice(&host_ip(to).octets());
        f.extend_from_slice(&[0x1f, 0x40, 0x1f, 0x40]);
        f.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
        f.extend_from_slice(&[0xab, 0xcd]);
        f.extend(std::iter::repeat_n(0x5a, payload));
        f
    }

    #[test]
    fn addresses_round_trip() {
        for i in [0, 1, 254, 255, 256, 1000, MAX_HOSTS - 1] {
            assert_eq!(host_of_mac(&host_mac(i), MAX_HOSTS), Some(i));
        }
        assert_eq!(host_ip(0), Ipv4Addr::new(10, 200, 0, 1));
        assert_eq!(host_ip(255), Ipv4Addr::new(10, 200, 1, 0));
        assert_eq!(mac_text(host_mac(0)), "02:4c:63:00:00:01");
        assert_eq!(host_of_mac(&host_mac(5), 5), None, "beyond the hosts");
        assert_eq!(host_of_mac(&[0xff; 6], 10), None);
        assert_eq!(host_of_mac(&[2, 0x4c, 0x63, 0, 0, 0], 10), None);
        assert_eq!(host_of_mac(&[1, 2, 3], 10), None);
    }

    #[test]
    fn routes_only_ipv4_unicast_between_hosts() {
        let f = udp_frame(1, 2, 100, 0);
        assert_eq!(route(&f, 3), Some(Route { from: 1, to: 2 }));
        assert_eq!(route(&f, 2), None, "destination not a host");
        assert_eq!(route(&f[..30], 3), None, "truncated");
        let mut arp = f.clone();
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert_eq!(route(&arp, 3), None);
        let mut bcast = f.clone();
        bcast[0..6].copy_from_slice(&[0xff; 6]);
        assert_eq!(route(&bcast, 3), None);
        assert_eq!(route(&udp_frame(1, 1, 10, 0), 3), None, "to itself");
        assert_eq!(route(&[], 3), None);
    }

    #[test]
    fn model_len_is_the_packet_less_28() {
        assert_eq!(model_len(&udp_frame(0, 1, 1000, 0)), 1000);
        assert_eq!(model_len(&udp_frame(0, 1, 0, 0)), 0);
        // A total length larger than the frame is bounded by the frame.
        let mut f = udp_frame(0, 1, 10, 0);
        f[16..18].copy_from_slice(&9000u16.to_be_bytes());
        assert_eq!(model_len(&f), f.len() - 14 - 28);
        assert_eq!(model_len(&f[..20]), 0);
        assert_eq!(model_len(&[]), 0);
        // A 1500-byte packet is 1500 bytes on the model's wire.
        let big = udp_frame(0, 1, 1472, 0);
        assert_eq!(
            livecam_system::link::wire_bytes(model_len(&big), livecam_system::link::MAX_MTU),
            1500
        );
    }

    #[test]
    fn clears_udp_checksum_of_first_fragments_only() {
        let mut f = udp_frame(0, 1, 50, 0x2000); // more-fragments flag, offset 0
        assert!(clear_udp_checksum(&mut f));
        assert_eq!(&f[14 + 26..14 + 28], &[0, 0]);
        let mut later = udp_frame(0, 1, 50, 185);
        let before = later.clone();
        assert!(!clear_udp_checksum(&mut later));
        assert_eq!(later, before);
        let mut tcp = udp_frame(0, 1, 50, 0);
        tcp[14 + 9] = 6;
        assert!(!clear_udp_checksum(&mut tcp));
        assert!(!clear_udp_checksum(&mut []));
        let mut short = udp_frame(0, 1, 0, 0);
        short.truncate(14 + 20 + 4);
        assert!(!clear_udp_checksum(&mut short));
    }
}
