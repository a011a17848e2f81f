//! `null`: discards records (the exporter still encodes them, as upstream does).

use super::{EncodedBatch, Transport, TransportError};

/// Discards everything.
#[derive(Debug, Default)]
pub struct NullTransport;

impl Transport for NullTransport {
    fn name(&self) -> &'static str {
        "null"
    }

    fn export(&mut self, _batch: &EncodedBatch) -> Result<(), TransportError> {
        Ok(())
    }

    fn flush(&mut self) -> Result<(), TransportError> {
        Ok(())
    }

    fn close(&mut self) -> Result<(), TransportError> {
        Ok(())
    }
}
