//! The protobuf codec of every RPC: tonic's prost codec with smaller buffers.
//!
//! tonic allocates its encode and decode buffers up front for each RPC (8 KiB each by
//! default) and keeps them for the RPC's life. A session is one RPC that lives as long as the
//! agent is connected, and its messages (heartbeats, commands, results) are a few hundred
//! bytes, so a controller holding 50,000 sessions would keep 800 MiB of mostly empty buffers.
//! A larger message still goes through: the buffer grows to fit it.

use std::marker::PhantomData;

use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstDecoder, ProstEncoder};

/// Initial encode and decode buffer of an RPC, in bytes.
const BUFFER: usize = 1024;
/// Encoded bytes after which a streaming response yields to the transport (tonic's default).
const YIELD_THRESHOLD: usize = 32 * 1024;

/// [`tonic_prost::ProstCodec`] with [`BUFFER`]-byte buffers; the generated client and server
/// use it (`codec_path` in `build.rs`).
#[derive(Debug, Clone, Copy)]
pub struct SessionCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for SessionCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for SessionCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(BufferSettings::new(BUFFER, YIELD_THRESHOLD))
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(BufferSettings::new(BUFFER, YIELD_THRESHOLD))
    }
}
