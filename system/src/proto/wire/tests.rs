//! The whole datagram: one of every kind byte for byte (the format's golden copy), the
//! preamble's checks, and decoding of arbitrary bytes.

use std::net::{IpAddr, SocketAddr};

use proptest::prelude::*;

use super::*;

/// One of every message kind (and every command) and its bytes as wire version 4 writes them:
/// the format's golden copy. A change here is a new wire version.
fn one_of_each() -> Vec<(Message<'static>, &'static str)> {
    let v4 = SocketAddr::from(([10, 1, 2, 3], 4567));
    let v6 = SocketAddr::new(
        IpAddr::from([0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9]),
        80,
    );
    const SIG: [u8; SIGNATURE_LEN] = [0x5a; SIGNATURE_LEN];
    vec![
        (
            Message::Segment(Segment {
                session: 0x0102_0304,
                frame: 7,
                index: 1,
                count: 3,
                offset: 4,
                frame_len: 12,
                payload: b"abcd",
                repair: false,
            }),
            "4c430401010203040000000700010003000000040000000c000461626364be8082ba",
        ),
        (
            Message::Segment(Segment {
                session: 9,
                frame: 8,
                index: 0,
                count: 1,
                offset: 0,
                frame_len: 3,
                payload: b"xyz",
                repair: true,
            }),
            "4c4304050000000900000008000000010000000000000003000378797a8cd0423e",
        ),
        (
            Message::Parity(Parity {
                session: 9,
                frame: 8,
                index: 2,
                first_count: 1,
                count: 3,
                frame_len: 10,
                repair: true,
                payload: b"pqrs",
            }),
            "4c43040600000009000000080002000100030000000a010004707172739f68177a",
        ),
        (
            Message::Nack(Nack {
                session: 5,
                frame: 6,
                next_segment_size: 700,
                next_parity: 2,
                missing: vec![1, 2, 300],
            }),
            "4c430402000000050000000602bc02000300010002012cb6a8b500",
        ),
        (
            Message::FrameAck(FrameAck {
                session: 5,
                frame: 6,
                next_segment_size: 1442,
                next_parity: 2,
            }),
            "4c430403000000050000000605a202993cb8c2",
        ),
        (
            Message::Stored(Stored {
                session: 5,
                frames: vec![1, u64::MAX, 1 << 40],
            }),
            "4c4304040000000500030000000000000001ffffffffffffffff0000010000000000b0637b7f",
        ),
        (
            Message::KeepAlive(KeepAlive {
                session: 5,
                seq: 77,
            }),
            "4c430407000000050000004d09b884a9",
        ),
        (
            Message::PathChallenge(PathProbe {
                session: 5,
                token: 0x0102_0304_0506_0708,
            }),
            "4c43040a0000000501020304050607083d150d7a",
        ),
        (
            Message::PathResponse(PathProbe {
                session: 5,
                token: 0x0102_0304_0506_0708,
            }),
            "4c43040b0000000501020304050607080dc7351f",
        ),
        (
            Message::PathPing(PathReport {
                session: 5,
                token: 0x0102_0304_0506_0708,
                bytes: 48_000,
            }),
            "4c43040c000000050102030405060708000000000000bb80e616295f",
        ),
        (
            Message::PathEcho(PathReport {
                session: 5,
                token: 0x0102_0304_0506_0708,
                bytes: 45_600,
            }),
            "4c43040d000000050102030405060708000000000000b220c7e1badb",
        ),
        (
            Message::PathMark(PathMark {
                session: 5,
                frame: 9,
                passed: 12,
            }),
            "4c43040e00000005000000090000000c84c9ea08",
        ),
        (
            Message::ConnectRequest(ConnectRequest {
                client: 11,
                attempt: 2,
                boot_seq: 1 << 50,
                hello: b"hello",
                padding: 3,
            }),
            "4c4304100000000b000000020004000000000000000568656c6c6f00030000008a7dc166",
        ),
        (
            Message::ConnectForward(ConnectForward {
                client: 11,
                attempt: 2,
                boot_seq: 99,
                client_addr: v4,
                hello: b"hi",
            }),
            "4c4304110000000b000000020000000000000063040a01020311d70002686965659ec8",
        ),
        (
            Message::ConnectOffer(ConnectOffer {
                client: 11,
                attempt: 2,
                tier2: 3,
                load: 40,
                reply: b"re",
            }),
            "4c4304120000000b00000002000000030000002800027265bc615475",
        ),
        (
            Message::ConnectAccept(ConnectReply {
                client: 11,
                attempt: 2,
                tier2: 3,
            }),
            "4c4304130000000b0000000200000003af53f6e7",
        ),
        (
            Message::ConnectRelease(ConnectReply {
                client: 11,
                attempt: 2,
                tier2: 4,
            }),
            "4c4304140000000b0000000200000004e9a73b37",
        ),
        (
            Message::Heartbeat(Heartbeat {
                tier2: 3,
                epoch: 1 << 33,
                sessions: 12,
                capacity: 100,
            }),
            "4c4304150000000300000002000000000000000c00000064acf21845",
        ),
        (
            Message::HeartbeatAck(HeartbeatAck {
                tier1: 1,
                tier2: 3,
                epoch: 5,
            }),
            "4c4304160000000100000003000000000000000535828cb2",
        ),
        (
            Message::HandoverRequest(Handover {
                tier1: 1,
                tier2: 3,
                tier2_addr: v4,
                epoch: 6,
            }),
            "4c4304170000000100000003040a01020311d7000000000000000676926f7f",
        ),
        (
            Message::HandoverAccept(Handover {
                tier1: 2,
                tier2: 3,
                tier2_addr: v6,
                epoch: 6,
            }),
            "4c43041800000002000000030620010db8000000000000000000000009005000000000000000060352bed7",
        ),
        (
            Message::ManagerChange(ManagerChange {
                tier2: 3,
                manager: 2,
                manager_addr: v4,
                epoch: 7,
            }),
            "4c4304190000000300000002040a01020311d700000000000000074bc5a38a",
        ),
        (
            Message::Tier1List(vec![v4, v6]),
            "4c43041a02040a01020311d70620010db80000000000000000000000090050cf159db5",
        ),
        (
            Message::SessionTier1s(SessionTier1s {
                session: 5,
                tier1s: vec![v6, v4],
            }),
            "4c43040900000005020620010db80000000000000000000000090050040a01020311d7451f8c5b",
        ),
        (
            Message::PeerStatus(PeerStatus {
                tier1: 1,
                tier2s: 4,
                sessions: 30,
                capacity: 400,
                draining: true,
            }),
            "4c43041b00000001000000040000001e000001900134ef1b9e",
        ),
        (
            Message::CommandResult(CommandResult {
                id: 1 << 60,
                client: 11,
                ok: false,
                reason: "no café".into(),
            }),
            "4c43043110000000000000000000000b00086e6f20636166c3a91468be4c",
        ),
        (
            Message::Sealed(Sealed {
                session: 5,
                nonce: 1 << 35,
                body: &[0xee; AEAD_TAG_LEN + 3],
            }),
            "4c430408000000050000000800000000eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee841dc03b",
        ),
        (
            Message::Signed(Signed {
                role: 2,
                id: 3,
                counter: 1 << 45,
                inner: b"inner",
                signature: &SIG,
            }),
            "4c43042002000000030000200000000000696e6e65725a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a7d3c1ab0",
        ),
        (
            Message::Command(CommandMsg { id: 0, client: 11, command: Command::SetFps { milli_fps: 12_500 } }),
            "4c43043000000000000000000000000b01000030d4a3496225",
        ),
        (
            Message::Command(CommandMsg { id: 1, client: 11, command: Command::SetResolution { width: 1280, height: 720 } }),
            "4c43043000000000000000010000000b02050002d026da874d",
        ),
        (
            Message::Command(CommandMsg { id: 2, client: 11, command: Command::SetQuality { quality: 85 } }),
            "4c43043000000000000000020000000b03553c20de24",
        ),
        (
            Message::Command(CommandMsg { id: 3, client: 11, command: Command::Snapshot }),
            "4c43043000000000000000030000000b049602ef98",
        ),
        (
            Message::Command(CommandMsg { id: 4, client: 11, command: Command::SwitchTier1 { addr: v6 } }),
            "4c43043000000000000000040000000b050620010db80000000000000000000000090050b629d10c",
        ),
        (
            Message::Command(CommandMsg { id: 5, client: 11, command: Command::Start }),
            "4c43043000000000000000050000000b061e4008db",
        ),
        (
            Message::Command(CommandMsg { id: 6, client: 11, command: Command::Stop }),
            "4c43043000000000000000060000000b07d8974002",
        ),
    ]
}

#[test]
fn golden_bytes_of_every_message() {
    // Every message that differs is listed, so a new wire version is one pass over them.
    let mut differ = Vec::new();
    for (m, want) in one_of_each() {
        let mut buf = Vec::new();
        m.encode(&mut buf);
        let hex: String = buf.iter().map(|b| format!("{b:02x}")).collect();
        if hex != want {
            differ.push(format!("{}: {want} is now {hex}", m.name()));
        }
        assert_eq!(decode(&buf), Ok(m));
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));
}

#[test]
fn segment_of_reads_what_decode_reads() {
    for (msg, _) in one_of_each() {
        let mut buf = Vec::new();
        msg.encode(&mut buf);
        let want = match msg {
            Message::Segment(s) => Some((s.frame, s.index)),
            _ => None,
        };
        assert_eq!(segment_of(&buf), want, "{}", msg.name());
    }
    assert_eq!(segment_of(&[]), None);
}

#[test]
fn unknown_and_reserved_types_are_rejected() {
    let mut buf = Vec::new();
    FrameAck {
        session: 1,
        frame: 2,
        next_segment_size: 500,
        next_parity: 0,
    }
    .encode(&mut buf);
    buf[3] = 0x2f;
    let n = buf.len() - CRC_LEN;
    let crc = crc32c::crc32c(&buf[..n]);
    buf[n..].copy_from_slice(&crc.to_be_bytes());
    assert_eq!(decode(&buf), Err(WireError::UnknownType(0x2f)));
}

proptest! {
    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn decoding_garbage_after_a_valid_preamble_never_panics(
        kind in 0u8..=0x40,
        body in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut buf = vec![b'L', b'C', VERSION, kind];
        buf.extend_from_slice(&body);
        let crc = crc32c::crc32c(&buf);
        buf.extend_from_slice(&crc.to_be_bytes());
        let _ = decode(&buf);
    }

}
