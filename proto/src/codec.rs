//! The protobuf codec of every generated Vakt client and server: tonic's
//! prost codec with a smaller initial buffer per call.
//!
//! tonic gives every call (every stream) an encode and a decode buffer of
//! 8 KiB each up front. A collector holds one long-lived Report stream per
//! agent, so at fleet scale those two buffers are 16 KiB of every agent
//! connection's ~42 KiB (measured with heaptrack, docs/BENCHMARKS.md "Fleet
//! scale"), while a report is ~1.5 KiB and an acknowledgement a few bytes.
//! The buffers grow on demand, so a large batch or inventory still fits.

use std::marker::PhantomData;
use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstDecoder, ProstEncoder};

/// Initial size of a call's encode and decode buffers.
pub const INITIAL_BUFFER_BYTES: usize = 1024;
/// tonic's default: how much a streaming encoder buffers before yielding.
const YIELD_THRESHOLD_BYTES: usize = 32 * 1024;

fn settings() -> BufferSettings {
    BufferSettings::new(INITIAL_BUFFER_BYTES, YIELD_THRESHOLD_BYTES)
}

/// `tonic_prost::ProstCodec` with `INITIAL_BUFFER_BYTES` buffers.
#[derive(Debug, Clone)]
pub struct SmallBufferCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for SmallBufferCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for SmallBufferCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(settings())
    }
}
