//! The one checked reader and writer of every binary layout in the workspace: the wire's
//! datagrams (see the family modules), the ring log's records, the backfill envelope, the
//! captured frame, the hello payload, the simulator's link envelope and the emulator's baseline
//! streams. All integers are big-endian.
//!
//! [`Reader`] walks a byte slice front to back; every read is bounds-checked and a short input
//! is a [`WireError::Length`], never a panic or an index out of range. Borrowed fields
//! ([`Reader::take`], [`Reader::rest`]) keep the input's lifetime, so decoded messages point
//! into the datagram without copying. [`Writer`] is the matching append side, implemented for
//! `Vec<u8>`.
//!
//! Why hand-written (about a hundred lines): `bytes`' `Buf::get_*` panics on a short read;
//! its `try_get_*` (bytes 1.10 on) does not, but `bytes` is not in the sans-IO build
//! (`--no-default-features` links no tokio) and its reads copy out of the buffer where ours
//! lend the input's slices. `nom`, `binrw` or `deku` would describe the same few fixed
//! layouts with parser combinators, derive macros and their error types: more to build and to
//! read than these checked reads.

use std::net::{IpAddr, SocketAddr};

use super::WireError;

/// A bounds-checked big-endian reader over a byte slice.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.bytes.len()
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let (head, tail) = self
            .bytes
            .split_at_checked(n)
            .ok_or(WireError::Length("field runs past the end"))?;
        self.bytes = tail;
        Ok(head)
    }

    /// Everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }

    /// The next `N` bytes, copied.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let (head, tail) = self
            .bytes
            .split_first_chunk::<N>()
            .ok_or(WireError::Length("field runs past the end"))?;
        self.bytes = tail;
        Ok(*head)
    }

    pub fn u8(&mut self) -> Result<u8, WireError> {
        self.array::<1>().map(|[b]| b)
    }

    pub fn u16(&mut self) -> Result<u16, WireError> {
        self.array().map(u16::from_be_bytes)
    }

    pub fn u32(&mut self) -> Result<u32, WireError> {
        self.array().map(u32::from_be_bytes)
    }

    pub fn u64(&mut self) -> Result<u64, WireError> {
        self.array().map(u64::from_be_bytes)
    }

    pub fn f32(&mut self) -> Result<f32, WireError> {
        self.array().map(f32::from_be_bytes)
    }

    pub fn f64(&mut self) -> Result<f64, WireError> {
        self.array().map(f64::from_be_bytes)
    }

    /// A flag byte: 0 or 1, anything else is [`WireError::Invalid`]`(what)`.
    pub fn flag(&mut self, what: &'static str) -> Result<bool, WireError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(WireError::Invalid(what)),
        }
    }

    /// An address: a family byte (4 or 6), the address, the port.
    pub fn addr(&mut self) -> Result<SocketAddr, WireError> {
        let ip = match self.u8()? {
            4 => IpAddr::from(self.array::<4>()?),
            6 => IpAddr::from(self.array::<16>()?),
            _ => return Err(WireError::Invalid("unknown address family")),
        };
        Ok(SocketAddr::new(ip, self.u16()?))
    }

    /// Ends the read: every byte must have been read.
    pub fn finish(self) -> Result<(), WireError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(WireError::Length("trailing bytes after the message"))
        }
    }
}

/// Appends big-endian fields: the writing side of [`Reader`].
pub trait Writer {
    fn put_bytes(&mut self, bytes: &[u8]);

    fn put_u8(&mut self, v: u8) {
        self.put_bytes(&[v]);
    }

    fn put_u16(&mut self, v: u16) {
        self.put_bytes(&v.to_be_bytes());
    }

    fn put_u32(&mut self, v: u32) {
        self.put_bytes(&v.to_be_bytes());
    }

    fn put_u64(&mut self, v: u64) {
        self.put_bytes(&v.to_be_bytes());
    }

    fn put_f32(&mut self, v: f32) {
        self.put_bytes(&v.to_be_bytes());
    }

    fn put_f64(&mut self, v: f64) {
        self.put_bytes(&v.to_be_bytes());
    }

    /// A flag byte, 0 or 1 (see [`Reader::flag`]).
    fn put_flag(&mut self, v: bool) {
        self.put_u8(u8::from(v));
    }

    /// An address as [`Reader::addr`] reads it.
    fn put_addr(&mut self, addr: &SocketAddr) {
        match addr.ip() {
            IpAddr::V4(ip) => {
                self.put_u8(4);
                self.put_bytes(&ip.octets());
            }
            IpAddr::V6(ip) => {
                self.put_u8(6);
                self.put_bytes(&ip.octets());
            }
        }
        self.put_u16(addr.port());
    }
}

impl Writer for Vec<u8> {
    fn put_bytes(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// A value of a fixed layout: how [`Reader`] reads it and [`Writer`] writes it. A message whose
/// body is just such fields in order declares them once, with `fields_body!` (see the wire
/// module), and gets its encoder and decoder from them.
pub trait Field: Sized {
    fn write(&self, w: &mut Vec<u8>);
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError>;
}

macro_rules! int_field {
    ($($t:ty: $put:ident, $get:ident;)*) => {$(
        impl Field for $t {
            fn write(&self, w: &mut Vec<u8>) {
                w.$put(*self);
            }
            fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
                r.$get()
            }
        }
    )*};
}

int_field! {
    u8: put_u8, u8;
    u16: put_u16, u16;
    u32: put_u32, u32;
    u64: put_u64, u64;
}

impl Field for SocketAddr {
    fn write(&self, w: &mut Vec<u8>) {
        w.put_addr(self);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        r.addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fields_round_trip_and_short_reads_are_errors() {
        let a6 = SocketAddr::from(([1, 2, 3, 4, 5, 6, 7, 8], 9));
        let a4 = SocketAddr::from(([10, 0, 0, 1], 443));
        let mut b = Vec::new();
        b.put_u8(1);
        b.put_u16(0x0203);
        b.put_u32(0x0405_0607);
        b.put_u64(0x0809_0a0b_0c0d_0e0f);
        b.put_f32(1.5);
        b.put_f64(-2.25);
        b.put_flag(true);
        b.put_addr(&a6);
        b.put_addr(&a4);
        b.put_bytes(b"xy");
        let mut r = Reader::new(&b);
        assert_eq!(r.u8(), Ok(1));
        assert_eq!(r.u16(), Ok(0x0203));
        assert_eq!(r.u32(), Ok(0x0405_0607));
        assert_eq!(r.u64(), Ok(0x0809_0a0b_0c0d_0e0f));
        assert_eq!(r.f32(), Ok(1.5));
        assert_eq!(r.f64(), Ok(-2.25));
        assert_eq!(r.flag("flag"), Ok(true));
        assert_eq!(r.addr(), Ok(a6));
        assert_eq!(r.addr(), Ok(a4));
        assert_eq!(
            r.clone().finish(),
            Err(WireError::Length("trailing bytes after the message"))
        );
        assert_eq!(r.take(3), Err(WireError::Length("field runs past the end")));
        assert_eq!(r.remaining(), 2, "a failed read consumes nothing");
        assert_eq!(r.rest(), b"xy");
        assert_eq!(r.u8(), Err(WireError::Length("field runs past the end")));
        assert_eq!(r.finish(), Ok(()));
        assert_eq!(Reader::new(&[2]).flag("f"), Err(WireError::Invalid("f")));
        assert_eq!(
            Reader::new(&[5, 0]).addr(),
            Err(WireError::Invalid("unknown address family"))
        );
    }

    proptest! {
        #[test]
        fn reading_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64), ops in proptest::collection::vec(0u8..9, 0..24)) {
            let mut r = Reader::new(&bytes);
            for op in ops {
                let _ = match op {
                    0 => r.u8().map(drop),
                    1 => r.u16().map(drop),
                    2 => r.u32().map(drop),
                    3 => r.u64().map(drop),
                    4 => r.f64().map(drop),
                    5 => r.addr().map(drop),
                    6 => r.flag("f").map(drop),
                    7 => r.take(usize::from(op) * 3).map(drop),
                    _ => r.array::<5>().map(drop),
                };
            }
            let _ = r.finish();
        }
    }
}
